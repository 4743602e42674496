"""SQL over the mirror, its AWS side: the Athena workgroup's enforced settings, the catalog step's Glue and Athena
grants, the analysts' read-only policy, the rights every query needs on its result location and a SELECT on what it
reads, and the local engine refusing what IAM would refuse (moto allows it all)."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

from bls_pipeline import catalog
from local_runner.cloudformation import ACCOUNT, BUCKET, REGION, STACK, Renderer, transformed
from local_runner.iam import (
    ATHENA_RULES, GLUE_RULES, QUERY_RESULT_BUCKET_ACTIONS, QUERY_RESULT_OBJECT_ACTIONS, UnknownOperation, allows,
    query_result_checks, service_checks,
)
from local_runner.service_clients import query_caller_checks
from tests.test_iam import grants, role_statements

GLUE_WRITES = {"glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable", "glue:BatchDeleteTable",
               "glue:CreateDatabase", "glue:UpdateDatabase", "glue:DeleteDatabase"}
DATABASE = "bls_mirror"
CATALOG_RESOURCES = {f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog", f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{DATABASE}",
                     f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{DATABASE}/*"}
WORKGROUP_ARN = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{STACK}"


@pytest.fixture(scope="module")
def template() -> dict:
    return transformed()


@pytest.fixture(scope="module")
def renderer(template: dict) -> Renderer:
    return Renderer(template)


def test_the_workgroup_enforces_encrypted_results_in_an_expiring_prefix_and_a_scan_limit(template, renderer) -> None:
    workgroup = renderer.render(template["Resources"]["QueryWorkGroup"]["Properties"])
    configuration = workgroup["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True  # clients cannot choose another result location
    results = configuration["ResultConfiguration"]
    assert results["OutputLocation"] == f"s3://{BUCKET}/athena-results/"
    assert results["EncryptionConfiguration"]["EncryptionOption"] in ("SSE_S3", "SSE_KMS", "CSE_KMS")
    assert int(configuration["BytesScannedCutoffPerQuery"]) >= 10_000_000
    assert configuration["EngineVersion"]["SelectedEngineVersion"] == "Athena engine version 3"
    rules = template["Resources"]["MirrorBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = {rule.get("Prefix"): rule.get("ExpirationInDays") for rule in rules}
    assert expiring.get("athena-results/") and expiring["athena-results/"] <= 30


def test_the_scan_limit_parameter_cannot_go_below_athenas_minimum(template) -> None:
    # Athena API Reference, WorkGroupConfiguration: BytesScannedCutoffPerQuery, minimum value 10000000.
    pattern = re.compile(template["Parameters"]["QueryBytesScannedCutoff"]["AllowedPattern"])
    assert pattern.fullmatch("10000000") and pattern.fullmatch("10000000000")
    assert not pattern.fullmatch("9999999") and not pattern.fullmatch("0") and not pattern.fullmatch("1e9")


def test_only_the_catalog_step_may_change_the_catalog_and_only_in_its_database(template, renderer) -> None:
    statements = role_statements(template, renderer)
    changing = {(role, action, resource) for role, found in statements.items() for s in found
                for action, resource, _ in grants(s) if action in GLUE_WRITES}
    assert {role for role, _, _ in changing} == {"CatalogSurveysFunctionRole"}
    assert {action for _, action, _ in changing} == {"glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable"}
    assert {resource for _, _, resource in changing} == CATALOG_RESOURCES


def test_the_catalog_step_uses_athena_only_in_the_stacks_workgroup(template, renderer) -> None:
    statements = role_statements(template, renderer)
    athena = {(role, resource) for role, found in statements.items() for s in found
              for action, resource, _ in grants(s) if action.startswith("athena:")}
    assert athena == {("CatalogSurveysFunctionRole", WORKGROUP_ARN)}


def test_the_analyst_policy_is_read_only_except_for_its_query_results(template, renderer) -> None:
    policy = renderer.render(template["Resources"]["AnalystQueryPolicy"]["Properties"]["PolicyDocument"])
    found = [(a, r) for s in policy["Statement"] for a, r, _ in grants(s)]
    actions = {a for a, _ in found}
    assert not actions & GLUE_WRITES
    assert not any(a.startswith(("s3:Delete", "s3:PutBucket", "glue:Delete", "athena:Create", "athena:Update",
                                 "athena:Delete")) for a in actions)
    writes = {r for a, r in found if a == "s3:PutObject"}
    assert writes == {f"arn:aws:s3:::{BUCKET}/athena-results/*"}
    assert {r for a, r in found if a.startswith("athena:")} == {WORKGROUP_ARN}
    assert {r for a, r in found if a.startswith("glue:")} == CATALOG_RESOURCES


def test_every_glue_and_athena_rule_names_its_documentation() -> None:
    for operation, rule in {**GLUE_RULES, **ATHENA_RULES}.items():
        assert "Guide" in rule.source or "Service Authorization Reference" in rule.source, operation


def test_a_glue_table_call_is_authorized_on_the_table_its_database_and_the_catalog() -> None:
    checks = service_checks("glue", "CreateTable", {"DatabaseName": DATABASE, "TableInput": {"Name": "pr_series"}},
                            REGION, ACCOUNT)
    assert {(c.action, c.resource) for c in checks} == {
        ("glue:CreateTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog"),
        ("glue:CreateTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{DATABASE}"),
        ("glue:CreateTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{DATABASE}/pr_series"),
    }
    with pytest.raises(UnknownOperation, match="BatchDeleteTable"):
        service_checks("glue", "BatchDeleteTable", {"DatabaseName": DATABASE, "TablesToDelete": ["pr_series"]},
                       REGION, ACCOUNT)


# -- the local engine enforces the grants ----------------------------------------------------------------------------

@pytest.fixture
def engine(bls, make_engine):
    return make_engine(bls.url)


def _table(name: str) -> dict:
    return {"Name": name, "StorageDescriptor": {"Columns": [{"Name": "series_id", "Type": "string"}],
                                                "Location": f"s3://{BUCKET}/catalog/pr/{name}/"}}


def test_the_catalog_role_may_create_tables_in_its_database_but_no_other_role_may(engine) -> None:
    glue = engine.glue_client_for("CatalogSurveysFunction")
    glue.create_table(DatabaseName=DATABASE, TableInput=_table("pr_series"))
    assert glue.get_table(DatabaseName=DATABASE, Name="pr_series")["Table"]["Name"] == "pr_series"
    with pytest.raises(ClientError, match="AccessDenied.*glue:CreateTable.*database/other"):
        glue.create_table(DatabaseName="other", TableInput=_table("pr_series"))
    with pytest.raises(ClientError, match="AccessDenied.*AnalyticsFunction.*glue:CreateTable"):
        engine.glue_client_for("AnalyticsFunction").create_table(DatabaseName=DATABASE, TableInput=_table("x"))


def test_a_view_ddl_needs_the_glue_rights_on_the_view_and_the_result_write(engine) -> None:
    athena = engine.athena_client_for("CatalogSurveysFunction")
    ddl = f"CREATE OR REPLACE VIEW v_pr_series AS SELECT trim(series_id) AS series_id FROM {DATABASE}.pr_series"
    started = athena.start_query_execution(QueryString=ddl, WorkGroup=engine.resolver.ref("QueryWorkGroup"),
                                           QueryExecutionContext={"Database": DATABASE})
    assert athena.get_query_execution(QueryExecutionId=started["QueryExecutionId"])["QueryExecution"]["Query"] == ddl

    role, statements = engine.glue_clients.roles["CatalogSurveysFunction"]
    without_update = [{**s, "Action": [a for a in s["Action"] if a != "glue:UpdateTable"]}
                      if isinstance(s.get("Action"), list) else s for s in statements]
    engine.athena_clients.roles["CatalogSurveysFunction"] = (role, without_update)
    engine.athena_clients._clients.clear()
    denied = engine.athena_client_for("CatalogSurveysFunction")
    with pytest.raises(ClientError, match="CatalogSurveysFunction is not authorized to perform: glue:UpdateTable"):
        denied.start_query_execution(QueryString=ddl, WorkGroup=engine.resolver.ref("QueryWorkGroup"),
                                     QueryExecutionContext={"Database": DATABASE})


def test_a_query_whose_rights_the_engine_does_not_model_is_refused_not_waved_through(engine) -> None:
    athena = engine.athena_client_for("CatalogSurveysFunction")
    params = {"QueryString": "DROP TABLE bls_mirror.pr_series", "WorkGroup": engine.resolver.ref("QueryWorkGroup")}
    assert {c.action for c in query_caller_checks(params)} == RESULT_ACTIONS  # nothing of the statement's own

    started = athena.start_query_execution(**params)

    status = athena.get_query_execution(QueryExecutionId=started["QueryExecutionId"])["QueryExecution"]["Status"]
    assert status["State"] == "FAILED" and "DROP TABLE is not a statement this engine runs" in status["StateChangeReason"]


# -- the query result location: every query needs the rights AWS publishes for it ------------------------------------

RESULT_ACTIONS = set(QUERY_RESULT_BUCKET_ACTIONS) | set(QUERY_RESULT_OBJECT_ACTIONS)


def test_every_query_needs_the_published_rights_on_its_result_location_bucket_and_objects(engine) -> None:
    assert RESULT_ACTIONS == {"s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:ListBucketMultipartUploads",
                              "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload", "s3:PutObject"}
    for query in ("SELECT 1", "CREATE OR REPLACE VIEW v AS SELECT 1 AS one", "MSCK REPAIR TABLE t"):
        checks = query_caller_checks({"QueryString": query, "WorkGroup": engine.resolver.ref("QueryWorkGroup")})
        on_results = {(c.action, re.sub(r"[0-9a-f-]{36}\.(csv|txt)$", "<id>", c.resource)) for c in checks
                      if c.action in RESULT_ACTIONS and not c.context}
        assert on_results >= {(a, f"arn:aws:s3:::{engine.bucket}") for a in QUERY_RESULT_BUCKET_ACTIONS} | {
            (a, f"arn:aws:s3:::{engine.bucket}/athena-results/<id>") for a in QUERY_RESULT_OBJECT_ACTIONS}, query


def without(statements: list[dict], action: str) -> list[dict]:
    """The statements with action removed from each."""
    kept = []
    for statement in statements:
        actions = [a for a in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
                   if a != action]
        if actions:
            kept.append({**statement, "Action": actions})
    return kept


@pytest.mark.parametrize("action", sorted(QUERY_RESULT_BUCKET_ACTIONS + QUERY_RESULT_OBJECT_ACTIONS))
def test_a_role_missing_one_of_the_result_location_rights_fails_its_query_naming_the_right(engine, action) -> None:
    role, statements = engine.athena_clients.roles["CatalogSurveysFunction"]
    engine.athena_clients.roles["CatalogSurveysFunction"] = (role, without(statements, action))
    engine.athena_clients._clients.clear()
    athena = engine.athena_client_for("CatalogSurveysFunction")

    with pytest.raises(ClientError, match=f"AccessDenied.*not authorized to perform: {action} on resource: arn:aws:s3:::"):
        athena.start_query_execution(QueryString="CREATE OR REPLACE VIEW v AS SELECT 1 AS one",
                                     WorkGroup=engine.resolver.ref("QueryWorkGroup"),
                                     QueryExecutionContext={"Database": DATABASE})


@pytest.mark.parametrize("policy", ["CatalogSurveysFunctionRole", "AnalystQueryPolicy"])
def test_the_catalog_role_and_the_analyst_policy_grant_the_result_locations_rights(template, renderer, policy) -> None:
    if policy == "AnalystQueryPolicy":
        statements = renderer.render(template["Resources"][policy]["Properties"]["PolicyDocument"])["Statement"]
    else:
        statements = role_statements(template, renderer)[policy]
    for check in query_result_checks(f"s3://{BUCKET}/athena-results/", "athena-results/0f1e2d3c-query.csv"):
        assert allows(statements, check), (policy, check)


# -- a SELECT reads with the caller's rights ----------------------------------------------------------------------

def test_a_select_needs_the_catalog_and_s3_reads_of_what_it_reads_which_the_analyst_policy_grants(bls, make_engine) -> None:
    from tests.test_query_catalog import serve_sample

    serve_sample(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    analyst = Renderer(transformed(), bucket=engine.bucket, stack=engine.resolver.stack_name).render(
        transformed()["Resources"]["AnalystQueryPolicy"]["Properties"]["PolicyDocument"])["Statement"]
    sql = catalog.report_queries("pr.data.0.Current")["series_population"]
    params = {"QueryString": sql, "ExecutionParameters": ["'PRS30006032'", "'Q01'"], "WorkGroup": engine.resolver.ref(
        "QueryWorkGroup"), "QueryExecutionContext": {"Database": DATABASE}}

    checks = query_caller_checks(params)

    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{DATABASE}"
    bucket = f"arn:aws:s3:::{engine.bucket}"
    found = {(c.action, c.resource, tuple(c.context.items())) for c in checks}
    assert {("glue:GetTable", f"{glue}/{name}", ()) for name in
            ("pr_data_0_current_clean", "pr_data_0_current", "datausa_population")} <= found  # the view and beneath
    assert ("glue:GetDatabase", f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{DATABASE}", ()) in found
    assert {("s3:ListBucket", bucket, (("s3:prefix", "catalog/symlinks/pr_data_0_current/"),)),
            ("s3:GetObject", f"{bucket}/catalog/symlinks/pr_data_0_current/manifest.txt", ()),
            ("s3:ListBucket", bucket, (("s3:prefix", "bls/pr/"),)),
            ("s3:GetObject", f"{bucket}/bls/pr/pr.data.0.Current", ()),
            ("s3:ListBucket", bucket, (("s3:prefix", "datausa/population-by-year/"),)),
            ("s3:GetObject", f"{bucket}/datausa/population-by-year/population.jsonl", ())} <= found
    assert [c for c in checks if not allows(analyst, c)] == []
    # Athena reads with the caller's rights: a role that may run the query but not read the mirrored files is refused.
    role, statements = engine.athena_clients.roles["CatalogSurveysFunction"]
    engine.athena_clients.roles["CatalogSurveysFunction"] = (role, without_resource(statements, "s3:GetObject", "/bls/*"))
    engine.athena_clients._clients.clear()
    with pytest.raises(ClientError, match=f"s3:GetObject on resource: {bucket}/bls/pr/pr.data.0.Current "):
        engine.athena_client_for("CatalogSurveysFunction").start_query_execution(**params)


def without_resource(statements: list[dict], action: str, suffix: str) -> list[dict]:
    """The statements with the resources ending in suffix removed from those that allow action."""
    kept = []
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action in actions:
            resources = [r for r in resources if not (isinstance(r, str) and r.endswith(suffix))]
        if resources:
            kept.append({**statement, "Resource": resources})
    return kept


def test_drop_view_needs_glue_delete_table_on_the_view(engine) -> None:
    params = {"QueryString": "DROP VIEW IF EXISTS pr_series_clean", "WorkGroup": engine.resolver.ref("QueryWorkGroup"),
              "QueryExecutionContext": {"Database": DATABASE}}
    assert ("glue:DeleteTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{DATABASE}/pr_series_clean") in {
        (c.action, c.resource) for c in query_caller_checks(params)}
    role, statements = engine.athena_clients.roles["CatalogSurveysFunction"]
    engine.athena_clients.roles["CatalogSurveysFunction"] = (role, without(statements, "glue:DeleteTable"))
    engine.athena_clients._clients.clear()
    with pytest.raises(ClientError, match="not authorized to perform: glue:DeleteTable"):
        engine.athena_client_for("CatalogSurveysFunction").start_query_execution(**params)


def test_named_queries_can_be_updated_in_the_engine_as_in_athena(engine) -> None:
    athena = engine.athena_client_for("CatalogSurveysFunction")
    workgroup = engine.resolver.ref("QueryWorkGroup")
    query_id = athena.create_named_query(Name="best_year", Database=DATABASE, QueryString="SELECT 1",
                                         WorkGroup=workgroup)["NamedQueryId"]
    athena.update_named_query(NamedQueryId=query_id, Name="best_year", QueryString="SELECT 2")
    assert athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]["QueryString"] == "SELECT 2"
    assert athena.list_named_queries(WorkGroup=workgroup)["NamedQueryIds"] == [query_id]
    with pytest.raises(ClientError, match="AccessDenied.*athena:ListNamedQueries.*workgroup/primary"):
        athena.list_named_queries()


def test_make_run_installs_moto_with_glue_and_athena() -> None:
    """The local engine creates the Glue database and the Athena workgroup: moto's glue backend imports pyparsing,
    which only its `glue` extra installs (a run-only venv without it failed at engine start)."""
    from pathlib import Path

    lines = (Path(__file__).resolve().parent.parent / "requirements-run.txt").read_text().splitlines()
    moto = next(line for line in lines if line.startswith("moto["))
    extras = set(moto.split("[", 1)[1].split("]", 1)[0].split(","))
    assert {"glue", "athena", "s3", "sqs", "stepfunctions", "awslambda", "events"} <= extras


def test_get_query_results_also_reads_the_result_file_with_the_callers_rights(engine) -> None:
    workgroup = engine.resolver.ref("QueryWorkGroup")
    query_id = engine.athena_client_for("CatalogSurveysFunction").start_query_execution(
        QueryString="SELECT 1 AS one", WorkGroup=workgroup)["QueryExecutionId"]
    with pytest.raises(ClientError, match="not authorized to perform: athena:GetQueryResults"):
        engine.athena_client_for("CatalogSurveysFunction").get_query_results(QueryExecutionId=query_id)

    role, statements = engine.athena_clients.roles["CatalogSurveysFunction"]
    reader = {"Effect": "Allow", "Action": "athena:GetQueryResults", "Resource": WORKGROUP_ARN.replace(STACK, workgroup)}
    for granted, expected in ((statements, None), (without(statements, "s3:GetObject"), "s3:GetObject")):
        engine.athena_clients.roles["CatalogSurveysFunction"] = (role, [*granted, reader])
        engine.athena_clients._clients.clear()
        athena = engine.athena_client_for("CatalogSurveysFunction")
        if expected is None:
            rows = athena.get_query_results(QueryExecutionId=query_id)["ResultSet"]["Rows"]
            assert rows == [{"Data": [{"VarCharValue": "one"}]}, {"Data": [{"VarCharValue": "1"}]}]
        else:
            with pytest.raises(ClientError, match=f"{expected} on resource: arn:aws:s3:::{engine.bucket}/athena-results/{query_id}.csv"):
                athena.get_query_results(QueryExecutionId=query_id)
