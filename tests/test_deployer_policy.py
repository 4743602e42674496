"""deploy/deployer-policy.json grants what `sam deploy` and `sam delete` of this stack need, scoped to the stack.

The template is transformed as CloudFormation receives it. Every resource it creates gets the ARN CloudFormation
would give it in a stack named `bls-mirror` (explicit names rendered, generated names as `<stack>-<LogicalId>-<id>`),
and the policy must allow the create/update/delete/tag actions of its type on that ARN. A resource type missing
from RESOURCE_TYPE_ACTIONS fails the test: add its actions here and to the policy.

The same holds for another stack name and CatalogDatabase, with the policies deploy/deployer_policies.py renders for
them (DEPLOYMENTS): the committed files are the rendering for the defaults.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from deploy.deployer_policies import (
    DEFAULT_DATABASE, DEFAULT_STACK, MAX_POLICY_CHARACTERS, POLICY_FILES, PolicyError, default_documents, main,
    policy_size, render,
)
from deploy.preflight import stack_named_resources
from local_runner.cloudformation import ACCOUNT, REGION, Renderer, transformed

# Two managed policies: one would be over IAM's 6,144-character limit for a managed policy (IAM User Guide, "IAM and
# AWS STS quotas"); the deployer attaches both.
STACK = DEFAULT_STACK  # samconfig.toml's stack_name; README says how to use another one
DATABASE = DEFAULT_DATABASE  # template.yaml's CatalogDatabase default
ALL_OPTIONS = {"AlarmEmail": "ops@example.com", "PublicMirror": "true", "ResourceGroupTag": "bls"}
# name -> (stack name, CatalogDatabase): the committed files, and what the README's command renders for another stack.
DEPLOYMENTS = {"defaults": (STACK, DATABASE), "another-stack-and-database": ("census-mirror", "census_2026")}

# resource type -> (name property, ARN format, actions CloudFormation calls to create, update, delete and tag it)
RESOURCE_TYPE_ACTIONS: dict[str, tuple[str | None, str, list[str]]] = {
    "AWS::S3::Bucket": ("BucketName", "arn:aws:s3:::{name}", [
        "s3:CreateBucket", "s3:DeleteBucket", "s3:PutEncryptionConfiguration", "s3:PutBucketVersioning",
        "s3:PutBucketPublicAccessBlock", "s3:PutBucketOwnershipControls", "s3:PutBucketNotification",
        "s3:PutLifecycleConfiguration", "s3:PutBucketTagging", "s3:GetBucketTagging", "s3:GetBucketLocation",
        "s3:GetEncryptionConfiguration", "s3:GetLifecycleConfiguration", "s3:ListBucket"]),
    "AWS::S3::BucketPolicy": (None, "arn:aws:s3:::{bucket}", [
        "s3:PutBucketPolicy", "s3:GetBucketPolicy", "s3:DeleteBucketPolicy"]),
    "AWS::SQS::Queue": ("QueueName", "arn:aws:sqs:{region}:{account}:{name}", [
        "sqs:CreateQueue", "sqs:DeleteQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:GetQueueUrl",
        "sqs:TagQueue", "sqs:UntagQueue", "sqs:ListQueueTags"]),
    "AWS::SQS::QueuePolicy": (None, "arn:aws:sqs:{region}:{account}:{queue}", [
        "sqs:SetQueueAttributes", "sqs:GetQueueAttributes"]),
    "AWS::IAM::Role": ("RoleName", "arn:aws:iam::{account}:role/{name}", [
        "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy",
        "iam:GetRolePolicy", "iam:DeleteRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
        "iam:TagRole", "iam:UntagRole", "iam:PassRole"]),
    "AWS::Lambda::Function": ("FunctionName", "arn:aws:lambda:{region}:{account}:function:{name}", [
        "lambda:CreateFunction", "lambda:DeleteFunction", "lambda:GetFunction", "lambda:UpdateFunctionCode",
        "lambda:UpdateFunctionConfiguration", "lambda:TagResource", "lambda:UntagResource", "lambda:ListTags"]),
    "AWS::Lambda::EventSourceMapping": (None, "arn:aws:lambda:{region}:{account}:event-source-mapping:{uuid}", [
        "lambda:CreateEventSourceMapping", "lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping",
        "lambda:DeleteEventSourceMapping", "lambda:TagResource", "lambda:ListEventSourceMappings"]),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", "arn:aws:states:{region}:{account}:stateMachine:{name}", [
        "states:CreateStateMachine", "states:UpdateStateMachine", "states:DeleteStateMachine",
        "states:DescribeStateMachine", "states:TagResource", "states:UntagResource", "states:ListTagsForResource",
        "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups"]),
    "AWS::Scheduler::Schedule": ("Name", "arn:aws:scheduler:{region}:{account}:schedule/default/{name}", [
        "scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule", "scheduler:GetSchedule"]),
    "AWS::Logs::LogGroup": ("LogGroupName", "arn:aws:logs:{region}:{account}:log-group:{name}", [
        "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy",
        "logs:TagResource", "logs:UntagResource", "logs:ListTagsForResource"]),
    "AWS::Logs::MetricFilter": (None, "arn:aws:logs:{region}:{account}:log-group:/aws/vendedlogs/states/{stack}-pipeline", [
        "logs:PutMetricFilter", "logs:DeleteMetricFilter", "logs:DescribeMetricFilters"]),
    "AWS::SNS::Topic": ("TopicName", "arn:aws:sns:{region}:{account}:{name}", [
        "sns:CreateTopic", "sns:DeleteTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes",
        "sns:TagResource", "sns:UntagResource", "sns:ListTagsForResource"]),
    "AWS::SNS::TopicPolicy": (None, "arn:aws:sns:{region}:{account}:{topic}", [
        "sns:SetTopicAttributes", "sns:GetTopicAttributes"]),
    "AWS::SNS::Subscription": (None, "arn:aws:sns:{region}:{account}:{topic}", [
        "sns:Subscribe", "sns:Unsubscribe", "sns:GetSubscriptionAttributes", "sns:ListSubscriptionsByTopic"]),
    # The Glue database's name is the CatalogDatabase parameter: the policy names the default, bls_mirror, and
    # deploy/deployer_policies.py renders it for another.
    "AWS::Glue::Database": ("DatabaseInput.Name", "arn:aws:glue:{region}:{account}:database/{name}", [
        "glue:CreateDatabase", "glue:UpdateDatabase", "glue:DeleteDatabase", "glue:GetDatabase"]),
    "AWS::Athena::WorkGroup": ("Name", "arn:aws:athena:{region}:{account}:workgroup/{name}", [
        "athena:CreateWorkGroup", "athena:GetWorkGroup", "athena:UpdateWorkGroup", "athena:DeleteWorkGroup",
        "athena:TagResource", "athena:UntagResource", "athena:ListTagsForResource",
        "athena:ListNamedQueries", "athena:DeleteNamedQuery"]),  # RecursiveDeleteOption: its named queries go too
    # ListEntitiesForPolicy: a managed policy is deleted only once detached from every user, group and role, which
    # ListEntitiesForPolicy lists (IAM API Reference, DeletePolicy); CloudFormation's update and delete of the policy
    # list its attachments so.
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", "arn:aws:iam::{account}:policy/{name}", [
        "iam:CreatePolicy", "iam:DeletePolicy", "iam:GetPolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion",
        "iam:ListPolicyVersions", "iam:GetPolicyVersion", "iam:ListEntitiesForPolicy"]),
    "AWS::CloudWatch::Alarm": ("AlarmName", "arn:aws:cloudwatch:{region}:{account}:alarm:{name}", [
        "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms",
        "cloudwatch:TagResource", "cloudwatch:UntagResource"]),
}

MANAGED_STACK_ARN = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/aws-sam-cli-managed-default/4e5f"
ARTIFACTS = "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-1x2y3z"


def sam_cli_calls(stack: str) -> list[tuple[str, str]]:
    """What the SAM CLI itself calls around the stack (samcli/lib/deploy, lib/delete, lib/package, managed stack)."""
    stack_arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/0a1b2c3d"
    return [
        *[(a, stack_arn) for a in (
            "cloudformation:CreateChangeSet", "cloudformation:DescribeChangeSet", "cloudformation:ExecuteChangeSet",
            "cloudformation:DeleteChangeSet", "cloudformation:ListChangeSets", "cloudformation:DescribeStacks",
            "cloudformation:DescribeStackEvents", "cloudformation:GetTemplate", "cloudformation:GetTemplateSummary",
            "cloudformation:DeleteStack")],
        ("cloudformation:CreateChangeSet", f"arn:aws:cloudformation:{REGION}:aws:transform/Serverless-2016-10-31"),
        *[(a, MANAGED_STACK_ARN) for a in (
            "cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:DescribeStacks")],
        *[(a, ARTIFACTS) for a in (
            "s3:CreateBucket", "s3:PutBucketPolicy", "s3:PutBucketVersioning", "s3:PutBucketTagging",
            "s3:PutEncryptionConfiguration", "s3:PutBucketPublicAccessBlock", "s3:ListBucket")],
        *[(a, f"{ARTIFACTS}/{stack}/0123abcd.template") for a in (
            "s3:PutObject", "s3:GetObject", "s3:GetObjectTagging", "s3:DeleteObject")],
    ]


UNSCOPED_STATEMENTS = {"UnscopableReads", "StateMachineLogDelivery", "QueueTrigger"}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def union(documents: list[dict]) -> dict:
    """Both documents' statements: what the deployer holds with both attached."""
    return {"Version": documents[0]["Version"], "Statement": [s for d in documents for s in d["Statement"]]}


def documents_of(deployment: str) -> list[dict]:
    """The committed files for the defaults; for another stack, what deploy/deployer_policies.py renders."""
    return default_documents() if deployment == "defaults" else render(*DEPLOYMENTS[deployment])


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def deployment(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def policy(deployment: str) -> dict:
    return union(documents_of(deployment))


def allows(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether an Allow statement matches (no Deny statements exist in the file; checked below)."""
    context = context or {}
    for statement in policy["Statement"]:
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(statement["Resource"])):
            continue
        if all(
            key in context and any(fnmatch.fnmatchcase(context[key], v) for v in _as_list(values))
            for operator in statement.get("Condition", {}).values()
            for key, values in operator.items()
        ):
            return True
    return False


def _property(properties: dict, path: str) -> Any:
    for step in path.split("."):
        properties = properties[step]
    return properties


def stack_resources(stack: str = STACK, database: str = DATABASE) -> list[tuple[str, str, str]]:
    """(logical id, type, ARN in a stack named `stack` with that CatalogDatabase) of every resource, with every
    optional resource on."""
    parameters = {**ALL_OPTIONS, "CatalogDatabase": database}
    template = transformed(parameters)
    renderer = Renderer(template, parameters, stack=stack)
    resources = []
    for logical_id, resource in template["Resources"].items():
        name_property, arn_format, _ = RESOURCE_TYPE_ACTIONS.get(resource["Type"], (None, "", []))
        properties = resource.get("Properties", {})
        generated = f"{stack}-{logical_id}-1A2B3C4D5E6F"
        named = name_property is not None and name_property.split(".")[0] in properties
        name = renderer.render(_property(properties, name_property)) if named else generated
        if resource["Type"] == "AWS::S3::Bucket":
            name = name.lower()
        arn = arn_format.format(
            name=name, stack=stack, region=REGION, account=ACCOUNT, uuid="a1b2c3d4-0000-4000-8000-000000000000",
            bucket=f"{stack}-mirrorbucket-1a2b3c", queue=f"{stack}-ReportsQueue-1A2B3C4D5E6F",
            topic=f"{stack}-AlarmTopic-1A2B3C4D5E6F",
        )
        resources.append((logical_id, resource["Type"], arn))
    return resources


def test_every_resource_type_of_the_template_is_in_the_table() -> None:
    missing = sorted({t for _, t, _ in stack_resources()} - set(RESOURCE_TYPE_ACTIONS))
    assert not missing, f"template.yaml creates {missing}: add their actions to this table and the deployer policy"


@pytest.mark.parametrize("deployment_name,logical_id,resource_type,arn", [
    (name, *resource)
    for name, (stack, database) in DEPLOYMENTS.items() for resource in stack_resources(stack, database)
], ids=lambda v: str(v).rsplit(":", 1)[-1])
def test_the_policy_lets_cloudformation_manage_each_resource(
    deployment_name: str, logical_id: str, resource_type: str, arn: str,
) -> None:
    stack, _ = DEPLOYMENTS[deployment_name]
    context = {
        "lambda:FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stack}-AnalyticsFunction-1A2B3C4D5E6F",
        "iam:PassedToService": {"AWS::IAM::Role": "lambda.amazonaws.com"}.get(resource_type, ""),
    }
    policy = union(documents_of(deployment_name))
    denied = [a for a in RESOURCE_TYPE_ACTIONS[resource_type][2] if not allows(policy, a, arn, context)]
    assert not denied, f"{logical_id} ({resource_type}, {arn}): the deployer policy does not allow {denied}"


def test_roles_may_be_passed_only_to_this_stacks_services_and_attach_only_its_managed_policies(
    policy: dict, deployment: str,
) -> None:
    stack, _ = DEPLOYMENTS[deployment]
    role = f"arn:aws:iam::{ACCOUNT}:role/{stack}-ListSourceFunctionRole-1A2B3C4D5E6F"
    for service in ("lambda.amazonaws.com", "states.amazonaws.com", "scheduler.amazonaws.com"):
        assert allows(policy, "iam:PassRole", role, {"iam:PassedToService": service})
    assert not allows(policy, "iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not allows(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/Admin", {"iam:PassedToService": "lambda.amazonaws.com"})
    template = transformed(ALL_OPTIONS)
    renderer = Renderer(template, ALL_OPTIONS)
    attached = {arn for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"
                for arn in renderer.render(r["Properties"].get("ManagedPolicyArns", []))}
    for managed in attached:
        assert allows(policy, "iam:AttachRolePolicy", role, {"iam:PolicyARN": managed}), managed
    assert not allows(policy, "iam:AttachRolePolicy", role, {"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"})


# Athena User Guide, "Configure access to databases and tables in the AWS Glue Data Catalog": a delete action needs
# permission on the resource, its ancestors and its descendants; to delete a database, on the catalog, the database,
# all its tables and all its user-defined functions.
def test_deleting_the_database_is_allowed_on_its_catalog_tables_and_functions(policy: dict, deployment: str) -> None:
    _, database = DEPLOYMENTS[deployment]
    base = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    for resource in (f"{base}:catalog", f"{base}:database/{database}", f"{base}:table/{database}/*",
                     f"{base}:userDefinedFunction/{database}/*"):
        assert allows(policy, "glue:DeleteDatabase", resource), resource


def test_the_sam_cli_calls_around_the_stack_are_allowed(policy: dict, deployment: str) -> None:
    denied = [(a, r) for a, r in sam_cli_calls(DEPLOYMENTS[deployment][0]) if not allows(policy, a, r)]
    assert not denied, f"sam deploy / sam delete would fail on {denied}"


def test_nothing_outside_the_stack_is_granted(policy: dict, deployment: str) -> None:
    stack, _ = DEPLOYMENTS[deployment]
    other = "other-app"
    for action, arn in [
        ("s3:DeleteBucket", f"arn:aws:s3:::{other}-data"),
        ("s3:PutObject", f"arn:aws:s3:::{other}-data/key"),
        ("lambda:UpdateFunctionCode", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{other}-fn"),
        ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{other}-role"),
        ("cloudformation:DeleteStack", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{other}/1"),
        ("sqs:DeleteQueue", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{other}-queue"),
        ("states:DeleteStateMachine", f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{other}"),
        ("lambda:DeleteEventSourceMapping", "*"),
        ("iam:CreatePolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/{stack}-deployer"),  # its own policy
        ("iam:ListEntitiesForPolicy", f"arn:aws:iam::{ACCOUNT}:policy/{other}-policy"),
        ("glue:DeleteDatabase", f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{other}"),
        ("athena:DeleteWorkGroup", f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{other}"),
    ]:
        context = {"lambda:FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{other}-fn"}
        assert not allows(policy, action, arn, context), f"{action} on {arn} should not be allowed"


def test_the_policy_is_a_managed_policy_without_wildcard_actions(policy: dict, deployment: str) -> None:
    for path, document in zip(POLICY_FILES, documents_of(deployment)):
        assert policy_size(document) <= MAX_POLICY_CHARACTERS, f"{path.name}: over the managed-policy size limit"
        assert document["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), action
        if "*" in _as_list(statement["Resource"]):
            assert statement["Sid"] in UNSCOPED_STATEMENTS, f"{statement['Sid']} grants on every resource"


# -- the policies for another stack (deploy/deployer_policies.py, README "Deploy as a restricted user") ---------------

def _glue_database_arn(database: str) -> str:
    """The ARN of the template's Glue database when CatalogDatabase is `database`."""
    arns = [arn for _, resource_type, arn in stack_resources(DEPLOYMENTS["another-stack-and-database"][0], database)
            if resource_type == "AWS::Glue::Database"]
    assert len(arns) == 1
    return arns[0]


def test_another_catalog_database_gets_its_glue_rights_and_the_default_keeps_none() -> None:
    stack, database = DEPLOYMENTS["another-stack-and-database"]
    arn = _glue_database_arn(database)
    assert arn.endswith(f":database/{database}")
    rendered, committed = union(render(stack, database)), union(default_documents())
    for action in RESOURCE_TYPE_ACTIONS["AWS::Glue::Database"][2]:
        assert allows(rendered, action, arn), action
        assert not allows(committed, action, arn), f"the committed policy should name only {DATABASE}"
    default_arn = f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{DATABASE}"
    assert not allows(rendered, "glue:DeleteDatabase", default_arn), "another stack's policy must not reach bls_mirror"
    assert not allows(rendered, "glue:DeleteTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{DATABASE}/pr_series")


def test_rendering_for_the_defaults_gives_the_committed_files() -> None:
    assert render() == default_documents()


def test_the_longest_names_the_template_allows_still_fit_iams_size_limit() -> None:
    """A long stack name lengthens the first policy past 6,144 characters; its last statements then move to the
    second, and no statement is lost."""
    stack = "b" * min(named.longest_stack_name for named in stack_named_resources())
    database = "d" * 63  # CatalogDatabase's AllowedPattern: at most 63 characters
    documents = render(stack, database)
    assert [policy_size(d) <= MAX_POLICY_CHARACTERS for d in documents] == [True, True]
    assert len(documents[1]["Statement"]) > len(default_documents()[1]["Statement"]), "nothing moved: not a test"
    sids = sorted(s["Sid"] for d in documents for s in d["Statement"])
    assert sids == sorted(s["Sid"] for d in default_documents() for s in d["Statement"])
    rendered = {s["Sid"]: json.dumps(s) for s in union(documents)["Statement"]}
    for statement in union(default_documents())["Statement"]:
        if DEFAULT_STACK in json.dumps(statement):
            assert stack in rendered[statement["Sid"]] and DEFAULT_STACK not in rendered[statement["Sid"]]


@pytest.mark.parametrize("stack,database,problem", [
    ("Census-Mirror", "census", "must be lowercase"),
    ("census-mirror", "Census", "lowercase letters, digits and underscores"),
    ("census_mirror", "census", "start with a letter"),
    ("c" * 100, "census", "use at most"),
])
def test_names_the_stack_cannot_have_are_refused(stack: str, database: str, problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        render(stack, database)


def test_the_command_writes_both_policies_for_the_stack(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stack, database = DEPLOYMENTS["another-stack-and-database"]
    assert main([stack, database, "--out", str(tmp_path)]) == 0
    written = [json.loads((tmp_path / f"{stack}-{path.name}").read_text()) for path in POLICY_FILES]
    assert written == render(stack, database)
    assert main(["Census", "--out", str(tmp_path)]) == 1
    assert "must be lowercase" in capsys.readouterr().err
