"""What a review of the template and the ASL against the AWS documentation found would break a deploy or a run,
each checked where CloudFormation and Step Functions would meet it (the transformed template, the substituted ASL)."""

from __future__ import annotations

import json

import pytest

from local_runner.cloudformation import Renderer, transformed
from local_runner.template_model import PROJECT_ROOT

# Lambda errors a Task state may get from Step Functions' own invoke (Step Functions Developer Guide, "Handling
# errors in Step Functions workflows": retry Lambda service exceptions).
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException", "Lambda.ClientExecutionTimeoutException",
}


@pytest.fixture(scope="module")
def cfn() -> dict:
    return transformed()


def _of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == resource_type}


def test_each_queue_trigger_waits_for_its_functions_log_group(cfn: dict) -> None:
    """S3 sends s3:TestEvent to the queue when the notification is created: a mapping enabled before the function's
    explicit log group lets Lambda create the group, and the stack then fails on "already exists"."""
    mappings = _of_type(cfn, "AWS::Lambda::EventSourceMapping")
    assert mappings
    for logical_id, mapping in mappings.items():
        function = mapping["Properties"]["FunctionName"]["Ref"]
        log_group = next(lid for lid, r in _of_type(cfn, "AWS::Logs::LogGroup").items()
                         if r["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"})
        depends = mapping.get("DependsOn", [])
        assert log_group in ([depends] if isinstance(depends, str) else depends), logical_id


def test_queues_feeding_lambda_follow_the_sqs_event_source_guidance(cfn: dict) -> None:
    """Lambda Developer Guide, "Using Lambda with Amazon SQS": visibility timeout at least six times the function
    timeout; a redrive policy's maxReceiveCount of at least 5."""
    renderer = Renderer(cfn)
    functions = _of_type(cfn, "AWS::Lambda::Function")
    for mapping in _of_type(cfn, "AWS::Lambda::EventSourceMapping").values():
        queue = cfn["Resources"][mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
        timeout = functions[mapping["Properties"]["FunctionName"]["Ref"]]["Properties"]["Timeout"]
        assert int(renderer.render(queue["VisibilityTimeout"])) >= 6 * int(timeout)
        assert int(queue["RedrivePolicy"]["maxReceiveCount"]) >= 5


def _tasks(block: dict):
    for name, state in block.get("States", {}).items():
        if state.get("Type") == "Task":
            yield name, state
        if "ItemProcessor" in state:
            yield from _tasks(state["ItemProcessor"])


def test_every_lambda_task_retries_every_lambda_service_error() -> None:
    definition = json.loads((PROJECT_ROOT / "statemachine" / "pipeline.asl.json").read_text()
                            .replace("${RetryIntervalSeconds}", "1").replace("${RetryMaxAttempts}", "1")
                            .replace("${RetryMaxDelaySeconds}", "1").replace("${CopyConcurrency}", "1"))
    tasks = dict(_tasks(definition))
    # one per function (ListSource, CopyFile, PruneMirror, RecordChanges, FetchPopulation, CatalogSurveys,
    # Analytics), and RecordChanges once more on PruneMirror's failure path
    assert len(tasks) == 8 and "RecordChangesBeforeFailing" in tasks
    for name, state in tasks.items():
        retried = {error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]}
        assert LAMBDA_SERVICE_ERRORS <= retried, f"{name} does not retry {LAMBDA_SERVICE_ERRORS - retried}"
