"""Least privilege, read from the template as CloudFormation receives it (after the SAM transform), and enforced.

EXPECTED_GRANTS below is the permission design: each role's S3 and SQS grants, by action, resource and prefix
condition. The local engine authorizes every S3 call a function makes against that function's rendered role, with
the permission model of local_runner/iam.py (S3_RULES, one rule per operation with its AWS documentation); the
tests below check that model where AWS's documentation adds a permission (conditional writes and deletes, a
missing key without s3:ListBucket), and run the pipeline's every path under it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import defaultdict
from typing import Any, Iterator

import boto3
from botocore.exceptions import ClientError

import pytest

from bls_pipeline.population import normalized_population_key
from local_runner.cloudformation import ACCOUNT, BUCKET, REGION, STACK, Renderer, transformed
from local_runner.engine import LocalEngine
from local_runner.iam import (
    ATHENA_RULES, GLUE_RULES, S3_RULES, Check, UnknownOperation, allows, s3_checks, service_checks,
)
from local_runner.s3_enforcement import FunctionS3Rules
from local_runner.template_model import Template, load_template
from tests.conftest import engine_parameters

BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-ReportsQueue"
MIRROR = f"{BUCKET_ARN}/bls/*"
RUNS = f"{BUCKET_ARN}/pipeline/runs/*"
STAGING = f"{BUCKET_ARN}/pipeline/staging/*"
POPULATION = f"{BUCKET_ARN}/datausa/population.json"
RATE = f"{BUCKET_ARN}/pipeline/rate/*"
INDEX = f"{BUCKET_ARN}/pipeline/index/*"
RESULTS = f"{BUCKET_ARN}/athena-results/*"

# role -> {(action, resource, s3:prefix condition or None)} for every s3: and sqs: action, default parameters.
EXPECTED_GRANTS = {
    "ListSourceFunctionRole": {
        ("s3:ListBucket", BUCKET_ARN, "bls/*"),
        ("s3:GetObject", MIRROR, None),
        ("s3:PutObject", RUNS, None),
        ("s3:GetObject", RATE, None),  # the shared request rate (request_rate.py)
        ("s3:PutObject", RATE, None),
        ("s3:GetObject", INDEX, None),  # the sync index (sync_index.py)
    },
    "CopyFileFunctionRole": {
        ("s3:PutObject", MIRROR, None),
        ("s3:GetObject", MIRROR, None),  # replacing a changed file is a write with If-Match
        ("s3:AbortMultipartUpload", MIRROR, None),
        ("s3:PutObject", STAGING, None),
        ("s3:GetObject", STAGING, None),
        ("s3:DeleteObject", STAGING, None),
        ("s3:AbortMultipartUpload", STAGING, None),
        ("s3:GetObject", RATE, None),
        ("s3:PutObject", RATE, None),
    },
    "PruneMirrorFunctionRole": {
        ("s3:ListBucket", BUCKET_ARN, "bls/*"),
        ("s3:DeleteObject", MIRROR, None),
        ("s3:GetObject", MIRROR, None),  # deletes are conditional on the planned ETag
        ("s3:GetObject", RUNS, None),
        ("s3:PutObject", RUNS, None),  # pruned.json: what it deleted and spared, for the run manifest
        ("s3:PutObject", INDEX, None),  # the sync index, rewritten after the run
        ("s3:GetObject", INDEX, None),  # ... with If-Match on the ETag the run read
    },
    "RecordChangesFunctionRole": {
        ("s3:GetObject", RUNS, None),  # the plan and the copy results
        ("s3:PutObject", RUNS, None),  # the run manifest
        ("s3:GetObject", RATE, None),  # the run's request count
        ("s3:PutObject", f"{BUCKET_ARN}/changes/*", None),  # the change log
    },
    "FetchPopulationFunctionRole": {
        ("s3:ListBucket", BUCKET_ARN, None),
        ("s3:GetObject", POPULATION, None),
        ("s3:PutObject", POPULATION, None),
        ("s3:GetObject", RATE, None),
        ("s3:PutObject", RATE, None),
    },
    "AnalyticsFunctionRole": {
        ("s3:ListBucket", BUCKET_ARN, None),
        ("s3:GetObject", MIRROR, None),
        ("s3:GetObject", POPULATION, None),
        ("s3:PutObject", f"{BUCKET_ARN}/reports/*", None),
        ("s3:GetObject", f"{BUCKET_ARN}/reports/latest/inputs.json", None),  # which inputs the latest reports used
        ("sqs:ReceiveMessage", QUEUE_ARN, None),
        ("sqs:DeleteMessage", QUEUE_ARN, None),
        ("sqs:GetQueueAttributes", QUEUE_ARN, None),
        ("sqs:ChangeMessageVisibility", QUEUE_ARN, None),
    },
    "CatalogSurveysFunctionRole": {
        ("s3:GetObject", MIRROR, None),  # each mapping file's header row: the table's columns
        ("s3:GetObject", POPULATION, None),  # the population, for its normalized copy
        ("s3:ListBucket", BUCKET_ARN, "bls/*"),  # the mirrored surveys, and their files when there is no index
        ("s3:GetObject", INDEX, None),  # each survey's files (sync_index.py)
        ("s3:ListBucket", BUCKET_ARN, "catalog/state/surveys/*"),  # the cataloged surveys: a gone one loses its tables
        ("s3:GetObject", f"{BUCKET_ARN}/pipeline/runs/*/manifest.json", None),  # its section of the run manifest
        ("s3:PutObject", f"{BUCKET_ARN}/pipeline/runs/*/manifest.json", None),
        ("s3:ListBucket", BUCKET_ARN, "datausa/population.json"),  # whether the population file exists yet
        ("s3:PutObject", f"{BUCKET_ARN}/datausa/population-by-year/*", None),  # its normalized copy
        ("s3:GetObject", f"{BUCKET_ARN}/datausa/population-by-year/*", None),  # ... written only when it differs
        ("s3:GetObject", f"{BUCKET_ARN}/catalog/*", None),  # the tables' file lists (symlink manifests)
        ("s3:PutObject", f"{BUCKET_ARN}/catalog/*", None),
        ("s3:DeleteObject", f"{BUCKET_ARN}/catalog/*", None),  # the manifests of dropped tables
        # The views' DDL queries use the workgroup's result location with the function's rights: the set AWS
        # publishes for it (local_runner/iam.py QUERY_RESULTS).
        ("s3:GetObject", RESULTS, None),
        ("s3:PutObject", RESULTS, None),
        ("s3:ListMultipartUploadParts", RESULTS, None),
        ("s3:AbortMultipartUpload", RESULTS, None),
        ("s3:GetBucketLocation", BUCKET_ARN, None),
        ("s3:ListBucket", BUCKET_ARN, None),
        ("s3:ListBucketMultipartUploads", BUCKET_ARN, None),
    },
    "PipelineStateMachineRole": {
        ("s3:GetObject", RUNS, None),  # the Distributed Map's ItemReader
        ("s3:PutObject", RUNS, None),  # its ResultWriter, which also needs the next two
        ("s3:ListMultipartUploadParts", RUNS, None),
        ("s3:AbortMultipartUpload", RUNS, None),
    },
}
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
FUNCTION_ROLES = {
    "ListSourceFunction": "ListSourceFunctionRole",
    "CopyFileFunction": "CopyFileFunctionRole",
    "PruneMirrorFunction": "PruneMirrorFunctionRole",
    "RecordChangesFunction": "RecordChangesFunctionRole",
    "FetchPopulationFunction": "FetchPopulationFunctionRole",
    "AnalyticsFunction": "AnalyticsFunctionRole",
    "CatalogSurveysFunction": "CatalogSurveysFunctionRole",
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


def test_only_the_roles_that_read_a_file_that_may_not_exist_yet_or_run_queries_may_list_the_whole_bucket(statements) -> None:
    """FetchPopulation and Analytics read datausa/population.json, absent before the first run: S3 answers 404 for
    it only to a role with an unconditioned s3:ListBucket (403 otherwise, local_runner/iam.py MISSING_KEY). The
    catalog step runs Athena queries, whose result location needs s3:ListBucket on the bucket as AWS publishes it,
    with no condition (local_runner/iam.py QUERY_RESULTS)."""
    unconditioned = {role for role, found in statements.items() for s in found
                     if "s3:ListBucket" in _as_list(s["Action"]) and not s.get("Condition")}
    assert unconditioned == {"FetchPopulationFunctionRole", "AnalyticsFunctionRole", "CatalogSurveysFunctionRole"}


def test_each_role_has_exactly_the_s3_and_sqs_grants_of_the_table(statements: dict[str, list[dict]]) -> None:
    actual = {
        role: {g for s in role_statements_ for g in grants(s) if g[0].startswith(("s3:", "sqs:"))}
        for role, role_statements_ in statements.items()
    }
    actual = {role: g for role, g in actual.items() if g}
    assert actual == EXPECTED_GRANTS


def test_another_mirror_root_moves_every_mirror_grant_with_it() -> None:
    template = transformed({"MirrorRoot": "data/bls/"})
    statements = role_statements(template, Renderer(template, {"MirrorRoot": "data/bls/"}))
    copy_grants = {g for s in statements["CopyFileFunctionRole"] for g in grants(s)}
    assert ("s3:PutObject", f"{BUCKET_ARN}/data/*", None) in copy_grants
    list_grants = {g for s in statements["PruneMirrorFunctionRole"] for g in grants(s)}
    assert ("s3:ListBucket", BUCKET_ARN, "data/*") in list_grants


def test_only_record_changes_may_publish_and_only_to_the_default_bus(statements: dict[str, list[dict]]) -> None:
    publishing = {(role, a, r) for role, found in statements.items() for s in found for a, r, _ in grants(s)
                  if a.startswith("events:")}
    assert publishing == {("RecordChangesFunctionRole", "events:PutEvents",
                           f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default")}


def test_no_lifecycle_rule_expires_the_change_log(template: dict) -> None:
    rules = template["Resources"]["MirrorBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    for rule in rules:
        if "ExpirationInDays" in rule or "ExpirationDate" in rule:
            prefix = rule.get("Prefix", rule.get("Filter", {}).get("Prefix", ""))
            assert prefix and not "changes/".startswith(prefix), f"lifecycle rule {rule['Id']} expires changes/"


def test_roles_carry_only_the_logging_and_tracing_managed_policies(template: dict) -> None:
    renderer = Renderer(template)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            managed = set(renderer.render(resource["Properties"].get("ManagedPolicyArns", [])))
            assert managed <= ALLOWED_MANAGED_POLICIES, f"{logical_id} attaches {managed - ALLOWED_MANAGED_POLICIES}"


def test_the_state_machine_invokes_only_this_stacks_functions(statements: dict[str, list[dict]]) -> None:
    invoked = {r for s in statements["PipelineStateMachineRole"] for a, r, _ in grants(s) if a == "lambda:InvokeFunction"}
    assert invoked == {f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-{fn}*" for fn in FUNCTION_ROLES}


# -- the permission model the engine enforces -------------------------------------------------------------------------

def test_every_rule_names_the_aws_documentation_it_comes_from() -> None:
    for operation, rule in S3_RULES.items():
        assert "Amazon S3" in rule.source or "Service Authorization Reference" in rule.source, operation


@pytest.mark.parametrize("operation", ["PutObject", "CopyObject", "CompleteMultipartUpload"])
def test_a_write_with_if_match_needs_get_object_and_one_with_if_none_match_does_not(operation: str) -> None:
    params = {"Bucket": "b", "Key": "bls/pr/x", "CopySource": {"Bucket": "b", "Key": "pipeline/staging/x"}}
    plain = {c.action for c in s3_checks(operation, params) if c.resource == "arn:aws:s3:::b/bls/pr/x"}
    assert plain == {"s3:PutObject"}
    assert {c.action for c in s3_checks(operation, {**params, "IfNoneMatch": "*"}) if c.resource.endswith("/bls/pr/x")} == plain
    conditional = {c.action for c in s3_checks(operation, {**params, "IfMatch": '"e"'}) if c.resource.endswith("/bls/pr/x")}
    assert conditional == {"s3:PutObject", "s3:GetObject"}


def test_an_operation_without_a_rule_is_refused_not_waved_through() -> None:
    with pytest.raises(UnknownOperation, match="PutObjectAcl"):
        s3_checks("PutObjectAcl", {"Bucket": "b", "Key": "k"})


def test_list_bucket_is_checked_against_the_prefix_condition() -> None:
    statements = [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
                   "Condition": {"StringLike": {"s3:prefix": "bls/*"}}}]
    assert allows(statements, s3_checks("ListObjectsV2", {"Bucket": "b", "Prefix": "bls/pr/"})[0])
    assert not allows(statements, s3_checks("ListObjectsV2", {"Bucket": "b", "Prefix": "reports/"})[0])
    assert not allows(statements, s3_checks("ListObjectsV2", {"Bucket": "b"})[0])


def test_an_explicit_deny_wins() -> None:
    check = Check("s3:GetObject", "arn:aws:s3:::b/k")
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    assert allows([allow], check)
    assert not allows([allow, {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}], check)


# -- S3 as a function meets it: the engine's answers where moto would be lenient ---------------------------------------

def _client_with(moto_s3, statements: list[dict]) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    return FunctionS3Rules("Fn", "FnRole", statements, ACCOUNT, lambda: moto_s3).install(client)


READ_WRITE = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": "arn:aws:s3:::mirror-bucket/*"}


def test_a_missing_key_is_403_without_list_bucket_and_404_with_it(moto_s3) -> None:
    without = _client_with(moto_s3, [READ_WRITE])
    with pytest.raises(ClientError) as denied:
        without.head_object(Bucket="mirror-bucket", Key="bls/pr/absent")
    assert denied.value.response["Error"]["Code"] == "403"
    with pytest.raises(ClientError) as denied:
        without.get_object(Bucket="mirror-bucket", Key="bls/pr/absent")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    listing = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::mirror-bucket"}
    with pytest.raises(ClientError) as missing:
        _client_with(moto_s3, [READ_WRITE, listing]).head_object(Bucket="mirror-bucket", Key="bls/pr/absent")
    assert missing.value.response["Error"]["Code"] == "404"


def test_conditional_copy_and_delete_preconditions_hold_where_moto_ignores_them(moto_s3) -> None:
    client = _client_with(moto_s3, [READ_WRITE])
    etag = client.put_object(Bucket="mirror-bucket", Key="bls/pr/a", Body=b"one")["ETag"]
    client.put_object(Bucket="mirror-bucket", Key="pipeline/staging/a", Body=b"two")
    source = {"Bucket": "mirror-bucket", "Key": "pipeline/staging/a"}
    with pytest.raises(ClientError) as failed:
        client.copy_object(Bucket="mirror-bucket", Key="bls/pr/a", CopySource=source, IfMatch='"not-the-etag"')
    assert failed.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as failed:
        client.copy_object(Bucket="mirror-bucket", Key="bls/pr/a", CopySource=source, IfNoneMatch="*")
    assert failed.value.response["Error"]["Code"] == "PreconditionFailed"
    client.copy_object(Bucket="mirror-bucket", Key="bls/pr/a", CopySource=source, IfMatch=etag)

    current = client.head_object(Bucket="mirror-bucket", Key="bls/pr/a")["ETag"]
    client.put_object(Bucket="mirror-bucket", Key="bls/pr/b", Body=b"b")
    answer = client.delete_objects(Bucket="mirror-bucket", Delete={"Objects": [
        {"Key": "bls/pr/a", "ETag": etag}, {"Key": "bls/pr/b", "ETag": '"stale"'},
    ]})
    assert {e["Key"]: e["Code"] for e in answer["Errors"]} == {"bls/pr/a": "PreconditionFailed", "bls/pr/b": "PreconditionFailed"}
    answer = client.delete_objects(Bucket="mirror-bucket", Delete={"Objects": [{"Key": "bls/pr/a", "ETag": current}]})
    assert not answer.get("Errors") and [d["Key"] for d in answer["Deleted"]] == ["bls/pr/a"]
    assert [o["Key"] for o in moto_s3.list_objects_v2(Bucket="mirror-bucket", Prefix="bls/")["Contents"]] == ["bls/pr/b"]


def test_a_conditional_delete_without_get_object_is_denied_per_key(moto_s3) -> None:
    delete_only = {"Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"], "Resource": "arn:aws:s3:::mirror-bucket/*"}
    client = _client_with(moto_s3, [delete_only])
    etag = client.put_object(Bucket="mirror-bucket", Key="bls/pr/a", Body=b"one")["ETag"]
    answer = client.delete_objects(Bucket="mirror-bucket", Delete={"Objects": [{"Key": "bls/pr/a", "ETag": etag}]})
    assert answer["Errors"][0]["Code"] == "AccessDenied" and "s3:GetObject" in answer["Errors"][0]["Message"]
    assert moto_s3.head_object(Bucket="mirror-bucket", Key="bls/pr/a")["ETag"] == etag


# -- the pipeline's every path, under its roles ------------------------------------------------------------------------

DATA = b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\nPRS30006032     \t2018\tQ01\t0.5\t\r\n"
LARGE = {"POWERTOOLS_LOG_LEVEL": "WARNING", "SINGLE_PUT_LIMIT_BYTES": "1048576", "PART_SIZE_BYTES": "5242880"}


@pytest.fixture
def counted_engine(bls) -> Iterator[tuple[LocalEngine, dict]]:
    """An engine whose functions' S3 calls are counted by operation (every one of them passed its role's check)."""
    engine = LocalEngine(engine_parameters(bls.url), extra_env=LARGE)
    operations: dict[str, set] = defaultdict(set)
    with engine:
        for function in engine.functions:
            engine.s3_client_for(function).meta.events.register(
                "after-call.s3", lambda model, function=function, **_: operations[function].add(model.name))
        yield engine, operations


def test_every_path_of_the_pipeline_runs_under_its_roles(bls, counted_engine) -> None:
    """First run (single puts, a multipart file), the day-two overwrite of a changed small and large file (If-Match),
    a forced prune (conditional deletes), and the queue-driven reports: all under the rendered roles."""
    engine, operations = counted_engine
    later = dt.datetime(2026, 9, 3, 8, 30)
    bls.put("pr.data.0.Current", DATA)
    bls.put("pr.big", bytes(range(256)) * (6 * 4096))  # 6 MiB: multipart to staging, then a server-side copy
    bls.put("pr.old", b"removed by the source next time\r\n")
    first = engine.execute()
    assert first.succeeded, first.cause

    bls.put("pr.data.0.Current", DATA + b"PRS30006032     \t2019\tQ01\t0.7\t\r\n", later)
    bls.put("pr.big", bytes(range(255, -1, -1)) * (6 * 4096), later)
    bls.remove("pr.old")
    second = engine.execute({"force_prune": True})
    assert second.succeeded, second.cause
    assert second.output["mirror"]["copied"] == 2 and second.output["mirror"]["deleted_files"] == ["pr/pr.old"]
    stored = engine.s3.get_object(Bucket=engine.bucket, Key="bls/pr/pr.big")
    assert stored["Body"].read() == bls.files["pr.big"].body
    assert {"CreateMultipartUpload", "CopyObject", "PutObject", "DeleteObject"} <= operations["CopyFileFunction"]
    assert "DeleteObjects" in operations["PruneMirrorFunction"]
    assert {"HeadObject", "PutObject"} <= operations["FetchPopulationFunction"]
    assert {"GetObject", "PutObject"} <= operations["AnalyticsFunction"]


def _without_get_object_on_the_mirror(role: str) -> Template:
    """template.yaml as it was before the fix: the role may write mirror files but not read them."""
    document = load_template()
    for statement in document["Resources"][role]["Properties"]["Policies"][0]["Statement"]:
        if statement["Sid"] in ("WriteMirrorFiles", "DeleteUnlistedMirrorFiles"):
            statement["Action"] = [a for a in statement["Action"] if a != "s3:GetObject"]
    return Template(document)


def test_a_role_without_get_object_fails_the_if_match_overwrite_of_a_changed_file(bls) -> None:
    """The day-two path on AWS: BLS changes a file, CopyFile replaces it with If-Match, which S3 authorizes only
    with s3:GetObject too. Without it the run fails in CopyFailed with AccessDenied and the old version stays."""
    bls.put("pr.data.0.Current", DATA)
    engine = LocalEngine(engine_parameters(bls.url), template=_without_get_object_on_the_mirror("CopyFileFunction"),
                         extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"})
    with engine:
        assert engine.execute().succeeded, "the first run writes with If-None-Match, which needs no s3:GetObject"
        before = engine.s3.head_object(Bucket=engine.bucket, Key="bls/pr/pr.data.0.Current")["VersionId"]
        bls.put("pr.data.0.Current", DATA + b"PRS30006032     \t2019\tQ01\t0.7\t\r\n", dt.datetime(2026, 9, 3, 8, 30))
        result = engine.execute()
        assert result.error == "CopyFailed"
        assert "AccessDenied" in result.cause and "s3:GetObject" in result.cause and "pr.data.0.Current" in result.cause
        assert engine.s3.head_object(Bucket=engine.bucket, Key="bls/pr/pr.data.0.Current")["VersionId"] == before


def test_a_prune_role_without_get_object_cannot_make_conditional_deletes(bls) -> None:
    bls.put("pr.data.0.Current", DATA)
    bls.put("pr.old", b"old\r\n")
    engine = LocalEngine(engine_parameters(bls.url), template=_without_get_object_on_the_mirror("PruneMirrorFunction"),
                         extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"})
    with engine:
        assert engine.execute().succeeded
        bls.remove("pr.old")
        result = engine.execute({"force_prune": True})
        assert result.error == "MirrorWriteError" and "AccessDenied" in result.cause
        assert engine.s3.head_object(Bucket=engine.bucket, Key="bls/pr/pr.old")


def test_prune_spares_an_object_rewritten_between_its_listing_and_its_delete(bls, make_engine) -> None:
    """Two executions overlap: after PruneMirror listed the mirror, another one writes the unlisted file anew.
    The delete carries the planned ETag, so S3 refuses it for the new version, which stays."""
    bls.put("pr.data.0.Current", DATA)
    bls.put("pr.old", b"old\r\n")
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    bls.remove("pr.old")
    rewritten = threading.Event()

    def rewrite_just_before_the_delete(model: Any, **_: Any) -> None:
        if not rewritten.is_set():
            rewritten.set()
            engine.s3.put_object(Bucket=engine.bucket, Key="bls/pr/pr.old", Body=b"written by another execution\r\n")

    undo = engine.on_s3("before-parameter-build.s3.DeleteObjects", rewrite_just_before_the_delete)
    try:
        result = engine.execute({"force_prune": True})
    finally:
        undo()
    assert result.succeeded, result.cause
    assert rewritten.is_set()
    assert result.output["mirror"]["spared_files"] == ["pr/pr.old"] and result.output["mirror"]["deleted"] == 0
    body = engine.s3.get_object(Bucket=engine.bucket, Key="bls/pr/pr.old")["Body"].read()
    assert body == b"written by another execution\r\n"


def test_an_upload_encrypted_with_a_kms_key_needs_the_key_too() -> None:
    params = {"Bucket": "b", "Key": "k", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:aws:kms:us-east-1:1:key/x"}
    for operation in ("PutObject", "CreateMultipartUpload"):
        assert Check("kms:GenerateDataKey", "arn:aws:kms:us-east-1:1:key/x") in s3_checks(operation, params)
    assert all(c.action.startswith("s3:") for c in s3_checks("PutObject", {"Bucket": "b", "Key": "k", "ServerSideEncryption": "AES256"}))


# -- the catalog step's role (CatalogSurveysFunction) through the engine's checks ---------------------------------------
# Each call below goes through the client the engine hands the function's handler, authorized against the role that
# template.yaml renders (local_runner/iam.py GLUE_RULES, ATHENA_RULES, S3_RULES); moto alone would allow them all.

CATALOG = "CatalogSurveysFunction"


def _glue_table(name: str, table_type: str = "EXTERNAL_TABLE") -> dict:
    table = {"Name": name, "TableType": table_type,
             "StorageDescriptor": {"Columns": [{"Name": "series_id", "Type": "string"}]}}
    if table_type == "VIRTUAL_VIEW":
        table["ViewOriginalText"] = "/* Presto View: ... */"
    return table


def test_deleting_a_table_or_a_view_is_authorized_on_it_its_database_and_the_catalog() -> None:
    params = {"DatabaseName": "bls_mirror", "Name": "v_pr_series"}
    checks = service_checks("glue", "DeleteTable", params, REGION, ACCOUNT)
    base = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    assert {(c.action, c.resource) for c in checks} == {
        ("glue:DeleteTable", f"{base}:catalog"), ("glue:DeleteTable", f"{base}:database/bls_mirror"),
        ("glue:DeleteTable", f"{base}:table/bls_mirror/v_pr_series")}
    assert "Configure access to databases and tables" in GLUE_RULES["DeleteTable"].source


@pytest.mark.parametrize("database", ["bls_mirror", "census_2026"])
def test_the_catalog_role_drops_its_databases_tables_and_views_and_nothing_else(bls, make_engine, database) -> None:
    """The catalog step drops the tables and views whose files were pruned (GLUE_DELETES: DeleteTable on the table,
    its database and the catalog; a view is a VIRTUAL_VIEW table). Another database, or another role: denied."""
    engine = make_engine(bls.url, CatalogDatabase=database)
    engine.glue.create_table(DatabaseName=database, TableInput=_glue_table("pr_gone"))
    engine.glue.create_table(DatabaseName=database, TableInput=_glue_table("v_pr_gone", "VIRTUAL_VIEW"))
    glue = engine.glue_client_for(CATALOG)
    glue.delete_table(DatabaseName=database, Name="v_pr_gone")
    glue.delete_table(DatabaseName=database, Name="pr_gone")
    assert engine.glue.get_tables(DatabaseName=database)["TableList"] == []

    engine.glue.create_database(DatabaseInput={"Name": "other"})
    engine.glue.create_table(DatabaseName="other", TableInput=_glue_table("pr_gone"))
    with pytest.raises(ClientError, match="AccessDenied.*glue:DeleteTable on resource: .*:database/other"):
        glue.delete_table(DatabaseName="other", Name="pr_gone")
    engine.glue.create_table(DatabaseName=database, TableInput=_glue_table("pr_kept"))
    with pytest.raises(ClientError, match="AccessDenied.*AnalyticsFunction.*glue:DeleteTable"):
        engine.glue_client_for("AnalyticsFunction").delete_table(DatabaseName=database, Name="pr_kept")
    assert [t["Name"] for t in engine.glue.get_tables(DatabaseName="other")["TableList"]] == ["pr_gone"]


def test_deleting_a_named_query_is_authorized_on_its_workgroup() -> None:
    checks = service_checks("athena", "DeleteNamedQuery", {"NamedQueryId": "q-1", "WorkGroup": STACK}, REGION, ACCOUNT)
    assert checks == [Check("athena:DeleteNamedQuery", f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{STACK}")]
    assert "UpdateNamedQuery" in ATHENA_RULES["DeleteNamedQuery"].source  # why: no Database in UpdateNamedQuery


def test_the_catalog_role_may_delete_named_queries_in_its_workgroup_only(bls, make_engine) -> None:
    """A report query whose database changed is deleted and created again (NAMED_QUERY_DATABASE). The engine's
    checks of DeleteNamedQuery, given the named query's workgroup as the engine passes it to the rule."""
    engine = make_engine(bls.url)
    workgroup = engine.resolver.ref("QueryWorkGroup")
    athena = engine.athena_client_for(CATALOG)
    query_id = athena.create_named_query(Name="best_year", Database="bls_mirror", QueryString="SELECT 1",
                                         WorkGroup=workgroup)["NamedQueryId"]
    checks = service_checks("athena", "DeleteNamedQuery", {"NamedQueryId": query_id, "WorkGroup": workgroup},
                            REGION, ACCOUNT)
    _, catalog_statements = engine.athena_clients.roles[CATALOG]
    assert all(allows(catalog_statements, check) for check in checks)
    elsewhere = service_checks("athena", "DeleteNamedQuery", {"NamedQueryId": query_id, "WorkGroup": "primary"},
                               REGION, ACCOUNT)
    assert not any(allows(catalog_statements, check) for check in elsewhere)
    _, analytics_statements = engine.athena_clients.roles["AnalyticsFunction"]
    assert not any(allows(analytics_statements, check) for check in checks)


def test_a_named_query_is_deleted_through_the_catalog_roles_client(bls, make_engine) -> None:
    engine = make_engine(bls.url)
    workgroup = engine.resolver.ref("QueryWorkGroup")
    athena = engine.athena_client_for(CATALOG)
    query_id = athena.create_named_query(Name="best_year", Database="bls_mirror", QueryString="SELECT 1",
                                         WorkGroup=workgroup)["NamedQueryId"]
    athena.delete_named_query(NamedQueryId=query_id)
    assert athena.list_named_queries(WorkGroup=workgroup)["NamedQueryIds"] == []


def _template_without(function: str, sid: str, action: str) -> Template:
    """template.yaml with `action` taken out of one statement of a function's policy."""
    document = load_template()
    statements = document["Resources"][function]["Properties"]["Policies"][0]["Statement"]
    statement = next(s for s in statements if s["Sid"] == sid)
    statement["Action"] = [a for a in statement["Action"] if a != action]
    return Template(document)


def test_the_catalog_role_reads_back_the_normalized_population_copy(bls, make_engine) -> None:
    """The copy is rewritten only when it differs from the one in S3, which the role must be able to read; without
    s3:GetObject S3 answers 403, which reads as no copy. Only that folder: not the rest of datausa/."""
    engine = make_engine(bls.url)
    key = normalized_population_key(engine.parameters["PopulationKey"])
    assert key.startswith("datausa/population-by-year/")
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=b'{"year":2023}\n')
    engine.s3.put_object(Bucket=engine.bucket, Key="datausa/other.json", Body=b"{}")
    s3 = engine.s3_client_for(CATALOG)
    assert s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read() == b'{"year":2023}\n'
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.get_object(Bucket=engine.bucket, Key="datausa/other.json")


def test_without_get_object_the_population_copy_reads_as_denied(bls) -> None:
    """The role as it was: allowed to write the copy, not to read it back."""
    template = _template_without(CATALOG, "ReadAndWriteTheNormalizedPopulation", "s3:GetObject")
    quiet = {"POWERTOOLS_LOG_LEVEL": "WARNING"}
    with LocalEngine(engine_parameters(bls.url), template=template, extra_env=quiet) as engine:
        key = normalized_population_key(engine.parameters["PopulationKey"])
        s3 = engine.s3_client_for(CATALOG)
        s3.put_object(Bucket=engine.bucket, Key=key, Body=b'{"year":2023}\n')
        with pytest.raises(ClientError) as denied:
            s3.get_object(Bucket=engine.bucket, Key=key)
        assert denied.value.response["Error"]["Code"] == "AccessDenied" and "s3:GetObject" in str(denied.value)


def test_the_catalog_role_records_its_section_of_the_run_manifest_and_reaches_nothing_else_there(
    bls, make_engine,
) -> None:
    """After a run, the catalog step reads the manifest RecordChanges wrote and writes it back with its "catalog"
    section. The plan's other files stay out of its reach, and a manifest that does not exist answers 404 (the role
    lists the bucket for its queries' result location: MISSING_KEY, QUERY_RESULTS), which the step reads as none."""
    bls.put("pr.data.0.Current", DATA)
    engine = make_engine(bls.url)
    result = engine.execute()
    assert result.succeeded, result.cause
    manifest_key = result.output["changes"]["manifest"].split(f"s3://{engine.bucket}/", 1)[1]
    folder = manifest_key.rsplit("/", 1)[0] + "/"
    assert manifest_key.startswith("pipeline/runs/") and manifest_key.endswith("/manifest.json")

    s3 = engine.s3_client_for(CATALOG)
    manifest = json.loads(s3.get_object(Bucket=engine.bucket, Key=manifest_key)["Body"].read())
    assert "catalog" in manifest, "the run's catalog step wrote its section"
    manifest["catalog"]["rebuilt"].append("cu")
    s3.put_object(Bucket=engine.bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    stored = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=manifest_key)["Body"].read())
    assert stored["catalog"]["rebuilt"][-1] == "cu" and stored["surveys"] == manifest["surveys"]
    with pytest.raises(ClientError, match="NoSuchKey"):
        s3.get_object(Bucket=engine.bucket, Key="pipeline/runs/hand-started/manifest.json")

    plan_files = [o["Key"] for o in engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=folder)["Contents"]
                  if not o["Key"].endswith("/manifest.json")]
    assert plan_files
    for key in plan_files:
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.get_object(Bucket=engine.bucket, Key=key)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.put_object(Bucket=engine.bucket, Key=f"{folder}copy-items.json", Body=b"[]")
