"""Least privilege, read from the template as CloudFormation receives it (after the SAM transform).

The table below is the permission design: each role's S3 and SQS grants, by action, resource and prefix condition.
The last test runs the whole pipeline on the local engine, records every S3 call each function makes, and checks
it against that function's rendered role, so the table cannot drift from what the code does.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections import defaultdict
from typing import Any, Iterator

import pytest

from local_runner.engine import LocalEngine
from tests.conftest import engine_parameters
from tests.transformed_template import ACCOUNT, BUCKET, REGION, STACK, Renderer, transformed

BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-ReportsQueue"
MIRROR = f"{BUCKET_ARN}/bls/*"
RUNS = f"{BUCKET_ARN}/pipeline/runs/*"
STAGING = f"{BUCKET_ARN}/pipeline/staging/*"
POPULATION = f"{BUCKET_ARN}/datausa/population.json"

# role -> {(action, resource, s3:prefix condition or None)} for every s3: and sqs: action, default parameters.
EXPECTED_GRANTS = {
    "ListSourceFunctionRole": {
        ("s3:ListBucket", BUCKET_ARN, "bls/*"),
        ("s3:GetObject", MIRROR, None),
        ("s3:PutObject", RUNS, None),
    },
    "CopyFileFunctionRole": {
        ("s3:PutObject", MIRROR, None),
        ("s3:AbortMultipartUpload", MIRROR, None),
        ("s3:PutObject", STAGING, None),
        ("s3:GetObject", STAGING, None),
        ("s3:DeleteObject", STAGING, None),
        ("s3:AbortMultipartUpload", STAGING, None),
    },
    "PruneMirrorFunctionRole": {
        ("s3:ListBucket", BUCKET_ARN, "bls/*"),
        ("s3:DeleteObject", MIRROR, None),
        ("s3:GetObject", RUNS, None),
    },
    "FetchPopulationFunctionRole": {
        ("s3:ListBucket", BUCKET_ARN, None),
        ("s3:GetObject", POPULATION, None),
        ("s3:PutObject", POPULATION, None),
    },
    "AnalyticsFunctionRole": {
        ("s3:ListBucket", BUCKET_ARN, None),
        ("s3:GetObject", MIRROR, None),
        ("s3:GetObject", POPULATION, None),
        ("s3:PutObject", f"{BUCKET_ARN}/reports/*", None),
        ("sqs:ReceiveMessage", QUEUE_ARN, None),
        ("sqs:DeleteMessage", QUEUE_ARN, None),
        ("sqs:GetQueueAttributes", QUEUE_ARN, None),
        ("sqs:ChangeMessageVisibility", QUEUE_ARN, None),
    },
    "PipelineStateMachineRole": {
        ("s3:GetObject", RUNS, None),
    },
}
# Unconditioned s3:ListBucket only where S3 must answer 404 (not 403) for an object that does not exist yet.
LIST_FOR_MISSING_OBJECTS = {"FetchPopulationFunctionRole", "AnalyticsFunctionRole"}
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
FUNCTION_ROLES = {
    "ListSourceFunction": "ListSourceFunctionRole",
    "CopyFileFunction": "CopyFileFunctionRole",
    "PruneMirrorFunction": "PruneMirrorFunctionRole",
    "FetchPopulationFunction": "FetchPopulationFunctionRole",
    "AnalyticsFunction": "AnalyticsFunctionRole",
}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def role_statements(template: dict, renderer: Renderer) -> dict[str, list[dict]]:
    """Every Allow statement of every IAM role's inline policies, intrinsics evaluated."""
    statements: dict[str, list[dict]] = defaultdict(list)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in renderer.render(resource["Properties"].get("Policies", [])):
            for statement in _as_list(policy["PolicyDocument"]["Statement"]):
                if statement["Effect"] == "Allow":
                    statements[logical_id].append(statement)
    return statements


def grants(statement: dict) -> Iterator[tuple[str, str, str | None]]:
    prefix = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
    for action in _as_list(statement["Action"]):
        for resource in _as_list(statement["Resource"]):
            yield action, resource, prefix


@pytest.fixture(scope="module")
def template() -> dict:
    return transformed()


@pytest.fixture(scope="module")
def statements(template: dict) -> dict[str, list[dict]]:
    return role_statements(template, Renderer(template))


def test_no_role_allows_every_action_or_s3_and_sqs_on_every_resource(statements: dict[str, list[dict]]) -> None:
    for role, role_statements_ in statements.items():
        for statement in role_statements_:
            for action, resource, _ in grants(statement):
                assert action != "*" and not action.endswith(":*"), f"{role} allows {action}"
                if action.startswith(("s3:", "sqs:")):
                    assert "*" not in resource.split(":::")[-1].split("/")[0], f"{role}: {action} on {resource}"
                    assert resource not in ("*", "arn:aws:s3:::*"), f"{role}: {action} on {resource}"


def test_each_role_has_exactly_the_s3_and_sqs_grants_of_the_table(statements: dict[str, list[dict]]) -> None:
    actual = {
        role: {g for s in role_statements_ for g in grants(s) if g[0].startswith(("s3:", "sqs:"))}
        for role, role_statements_ in statements.items()
    }
    actual = {role: g for role, g in actual.items() if g}
    assert actual == EXPECTED_GRANTS


def test_an_overridden_mirror_prefix_moves_every_mirror_grant_with_it() -> None:
    template = transformed({"MirrorPrefix": "data/bls/ce/"})
    statements = role_statements(template, Renderer(template, {"MirrorPrefix": "data/bls/ce/"}))
    copy_grants = {g for s in statements["CopyFileFunctionRole"] for g in grants(s)}
    assert ("s3:PutObject", f"{BUCKET_ARN}/data/*", None) in copy_grants
    list_grants = {g for s in statements["PruneMirrorFunctionRole"] for g in grants(s)}
    assert ("s3:ListBucket", BUCKET_ARN, "data/*") in list_grants


def test_roles_carry_only_the_logging_and_tracing_managed_policies(template: dict) -> None:
    renderer = Renderer(template)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            managed = set(renderer.render(resource["Properties"].get("ManagedPolicyArns", [])))
            assert managed <= ALLOWED_MANAGED_POLICIES, f"{logical_id} attaches {managed - ALLOWED_MANAGED_POLICIES}"


def test_the_state_machine_invokes_only_this_stacks_functions(statements: dict[str, list[dict]]) -> None:
    invoked = {r for s in statements["PipelineStateMachineRole"] for a, r, _ in grants(s) if a == "lambda:InvokeFunction"}
    assert invoked == {f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-{fn}*" for fn in FUNCTION_ROLES}


# -- every S3 call of a real run, checked against the caller's role ------------------------------------------

def _required(operation: str, params: dict) -> list[tuple[str, str, str | None]]:
    """The IAM checks S3 makes for one API call: (action, resource ARN, the request's s3:prefix)."""
    bucket = f"arn:aws:s3:::{params['Bucket']}"
    key = f"{bucket}/{params.get('Key', '')}"
    if operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        return [("s3:PutObject", key, None)]
    if operation in ("GetObject", "HeadObject"):
        return [("s3:GetObject", key, None)]
    if operation in ("CopyObject", "UploadPartCopy"):
        source = params["CopySource"]
        source_key = f"{source['Bucket']}/{source['Key']}" if isinstance(source, dict) else source.lstrip("/")
        return [("s3:PutObject", key, None), ("s3:GetObject", f"arn:aws:s3:::{source_key}", None)]
    if operation == "AbortMultipartUpload":
        return [("s3:AbortMultipartUpload", key, None)]
    if operation == "DeleteObject":
        return [("s3:DeleteObject", key, None)]
    if operation == "DeleteObjects":
        return [("s3:DeleteObject", f"{bucket}/{o['Key']}", None) for o in params["Delete"]["Objects"]]
    if operation in ("ListObjectsV2", "ListObjects"):
        return [("s3:ListBucket", bucket, params.get("Prefix", ""))]
    raise AssertionError(f"S3 operation {operation} has no IAM mapping here: add it, and grant it in template.yaml")


def _allows(statement: dict, action: str, resource: str, prefix: str | None) -> bool:
    if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(statement["Action"])):
        return False
    if not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(statement["Resource"])):
        return False
    patterns = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
    if patterns is None:
        return not statement.get("Condition")
    return prefix is not None and any(fnmatch.fnmatchcase(prefix, p) for p in _as_list(patterns))


class S3CallRecorder:
    """Gives each function its own S3 client and records (function, operation, params, HTTP status)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict, int]] = []
        self._clients: dict[str, Any] = {}

    def client_for(self, function: str) -> Any:
        if function not in self._clients:
            from bls_pipeline import aws

            client = aws.s3_client.__wrapped__()

            def before(params: dict, model: Any, context: dict, **_: Any) -> None:
                context["recorded"] = (model.name, dict(params))

            def after(http_response: Any, parsed: dict, model: Any, context: dict, **_: Any) -> None:
                name, params = context.get("recorded", (model.name, {}))
                status = parsed.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                self.calls.append((function, name, params, status))

            client.meta.events.register("provide-client-params.s3.*", before)
            client.meta.events.register("after-call.s3.*", after)
            self._clients[function] = client
        return self._clients[function]


@pytest.fixture
def recorded_run(bls, monkeypatch) -> Iterator[tuple[LocalEngine, S3CallRecorder]]:
    """A first run with a multipart file, a run that prunes, and the queue-driven reports, all recorded."""
    recorder = S3CallRecorder()
    engine = LocalEngine(
        engine_parameters(bls.url),
        extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING", "SINGLE_PUT_LIMIT_BYTES": "1048576", "PART_SIZE_BYTES": "5242880"},
    )
    with engine:
        for function, spec in engine._functions.items():
            module = importlib.import_module(spec.handler.rsplit(".", 1)[0])
            monkeypatch.setattr(module, "s3_client", lambda function=function: recorder.client_for(function))
        yield engine, recorder


def test_every_s3_call_of_a_full_run_is_allowed_by_the_calling_functions_role(bls, recorded_run, statements) -> None:
    engine, recorder = recorded_run
    data = b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\nPRS30006032     \t2018\tQ01\t0.5\t\r\n"
    bls.put("pr.data.0.Current", data)
    bls.put("pr.big", bytes(range(256)) * (6 * 4096))  # 6 MiB: multipart to staging, then a server-side copy
    bls.put("pr.old", b"removed by the source next time\r\n")
    first = engine.execute()
    assert first.succeeded, first.cause
    bls.remove("pr.old")
    second = engine.execute({"force_prune": True})
    assert second.succeeded, second.cause
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix="bls/pr/")["Contents"]
    assert {o["Key"] for o in listed} == {"bls/pr/pr.data.0.Current", "bls/pr/pr.big"}

    operations = defaultdict(set)
    for function, operation, params, status in recorder.calls:
        role = FUNCTION_ROLES[function]
        operations[function].add(operation)
        for action, resource, prefix in _required(operation, params):
            resource = resource.replace(f"arn:aws:s3:::{engine.bucket}", BUCKET_ARN)
            assert any(_allows(s, action, resource, prefix) for s in statements[role]), (
                f"{function} calls {operation} ({action} on {resource}, prefix {prefix!r}) but {role} does not allow it"
            )
        if status == 404:
            assert role in LIST_FOR_MISSING_OBJECTS, (
                f"{function} relies on a 404 from {operation} {params.get('Key')}; without s3:ListBucket S3 answers 403"
            )
    # The run exercised every path the table grants: plan, multipart staging, prune, population, reports.
    assert {"CreateMultipartUpload", "DeleteObject"} <= operations["CopyFileFunction"]
    assert {"CopyObject", "UploadPartCopy"} & operations["CopyFileFunction"]
    assert "DeleteObjects" in operations["PruneMirrorFunction"]
    assert {"HeadObject", "PutObject"} <= operations["FetchPopulationFunction"]
    assert {"GetObject", "PutObject"} <= operations["AnalyticsFunction"]
