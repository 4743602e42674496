"""One tag finds the whole deployment: every taggable resource carries `resource-group` (ResourceGroupTag, default the
stack name). Stack-level tags (`sam deploy --tags`) are propagated to the same resources by CloudFormation."""

from __future__ import annotations

import pytest

from local_runner.cloudformation import STACK, Renderer, transformed

TAGGABLE = {
    "AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::IAM::Role", "AWS::Lambda::Function",
    "AWS::Lambda::EventSourceMapping", "AWS::StepFunctions::StateMachine", "AWS::Logs::LogGroup", "AWS::SNS::Topic",
    "AWS::CloudWatch::Alarm", "AWS::Athena::WorkGroup",
}
# CloudFormation offers no Tags property for these.
NOT_TAGGABLE = {
    "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription",
    "AWS::Scheduler::Schedule", "AWS::Logs::MetricFilter", "AWS::Glue::Database", "AWS::IAM::ManagedPolicy",
}
ALL_OPTIONS = {"AlarmEmail": "ops@example.com", "PublicMirror": "true"}


def _tags(renderer: Renderer, resource: dict) -> dict[str, str]:
    tags = renderer.render(resource.get("Properties", {}).get("Tags", []))
    return tags if isinstance(tags, dict) else {t["Key"]: t["Value"] for t in tags}


@pytest.mark.parametrize(("parameter", "expected"), [("", STACK), ("bls-data-platform", "bls-data-platform")])
def test_every_taggable_resource_carries_the_resource_group_tag(parameter: str, expected: str) -> None:
    options = {**ALL_OPTIONS, "ResourceGroupTag": parameter}
    template = transformed(options)
    renderer = Renderer(template, options)
    types = {r["Type"] for r in template["Resources"].values()}
    assert types <= TAGGABLE | NOT_TAGGABLE, f"classify {types - TAGGABLE - NOT_TAGGABLE} as taggable or not"
    untagged = [
        logical_id for logical_id, resource in template["Resources"].items()
        if resource["Type"] in TAGGABLE and _tags(renderer, resource).get("resource-group") != expected
    ]
    assert not untagged, f"without resource-group={expected}: {untagged}"
