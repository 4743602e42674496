"""The catalog step through the real state machine: a first mirror of a survey gets its Glue tables (symlink manifests
naming exactly its files), its views (Athena DDL) and the named report queries; a run that changed nothing changes
nothing here; a changed or new file, or a table dropped out of band, is caught up; a failed DDL fails the execution
at its end, after the mirror and the reports."""

from __future__ import annotations

import json
from typing import Any

from bls_loopback.population import POPULATION_PATH, population_json
from bls_loopback.sample import sample_pr_files
from bls_pipeline import catalog

DATABASE = "bls_mirror"


# The mapping files the labeled view joins besides the sample's (headers as in the real pr files).
MORE_MAPPINGS = {
    "pr.duration": b"duration_code\tduration_text\tdisplay_level\tselectable\tsort_sequence\r\n3\tIndex\t0\tT\t3\r\n",
    "pr.measure": b"measure_code\tmeasure_text\tdisplay_level\tselectable\tsort_sequence\r\n"
                  b"32\tOutput\t0\tT\t1\r\n",
    "pr.seasonal": b"Seasonal_code\tSeasonal_text\r\nS\tSeasonal Adjusted\r\n",
    "pr.sector": b"sector_code\tsector_name\tdisplay_level\tselectable\tsort_sequence\r\n3000\tManufacturing\t0\tT\t4\r\n",
}


def serve_sample(bls) -> dict[str, bytes]:
    files = {**sample_pr_files(), **MORE_MAPPINGS}
    for name, body in files.items():
        bls.put(name, body)
    return files


def glue_tables(engine) -> dict[str, dict]:
    glue = engine.glue_client_for("CatalogSurveysFunction")
    return {t["Name"]: t for t in glue.get_tables(DatabaseName=DATABASE)["TableList"]}


def athena_queries(engine) -> list[str]:
    from moto.athena.models import athena_backends

    from local_runner.lambda_emulation import ACCOUNT, REGION

    return [execution.query for execution in athena_backends[ACCOUNT][REGION].executions.values()]


def puts_under(engine, prefix: str) -> list[str]:
    written: list[str] = []

    def record(params: dict, **_: Any) -> None:
        if params["Key"].startswith(prefix):
            written.append(params["Key"])

    engine.on_s3("provide-client-params.s3.PutObject", record)
    return written


def test_a_first_mirror_gets_its_tables_views_and_report_queries(bls, make_engine) -> None:
    files = serve_sample(bls)
    engine = make_engine(bls.url)

    result = engine.execute()

    assert result.status == "SUCCEEDED", result.cause
    summary = result.output["catalog"]
    assert summary["rebuilt"] == ["pr"] and summary["population"] == "rebuilt"
    tables = glue_tables(engine)
    tabular = {catalog.identifier(name) for name, body in files.items() if b"\t" in body.split(b"\n", 1)[0]}
    assert tabular <= set(tables) and catalog.POPULATION_TABLE in tables
    for name in tabular:
        location = tables[name]["StorageDescriptor"]["Location"]
        key = location.split(f"s3://{engine.bucket}/", 1)[1] + catalog.MANIFEST_NAME
        manifest = engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read().decode()
        assert manifest.splitlines() == [f"s3://{engine.bucket}/bls/pr/{original}" for original in files
                                         if catalog.identifier(original) == name]
        assert tables[name]["StorageDescriptor"]["InputFormat"] == catalog.SYMLINK_INPUT
    queries = athena_queries(engine)
    assert any(q.startswith('CREATE OR REPLACE VIEW "pr_data_0_current_clean" AS') for q in queries)
    assert any(q.startswith('CREATE OR REPLACE VIEW "pr_data_0_current_labeled" AS') for q in queries)
    athena = engine.athena_client_for("CatalogSurveysFunction")
    workgroup = engine.resolver.ref("QueryWorkGroup")
    named = {athena.get_named_query(NamedQueryId=i)["NamedQuery"]["Name"]
             for i in athena.list_named_queries(WorkGroup=workgroup)["NamedQueryIds"]}
    assert named == {f"bls-mirror {name}" for name in catalog.REPORT_QUERIES}
    copy = engine.s3.get_object(Bucket=engine.bucket, Key="datausa/population-by-year/population.jsonl")
    years = [json.loads(line)["year"] for line in copy["Body"].read().splitlines()]
    assert years == sorted(years) and 2013 in years


def test_a_run_that_changed_nothing_changes_nothing_in_the_catalog(bls, make_engine) -> None:
    serve_sample(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    queries_before = len(athena_queries(engine))
    written = puts_under(engine, "catalog/")

    again = engine.execute()

    assert again.succeeded, again.cause
    assert again.output["catalog"]["rebuilt"] == [] and again.output["catalog"]["population"] == "unchanged"
    assert again.output["catalog"]["named_queries"] == "unchanged"
    assert len(athena_queries(engine)) == queries_before and written == []


def test_a_new_file_a_changed_file_and_a_dropped_table_are_caught_up(bls, make_engine) -> None:
    serve_sample(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    glue = engine.glue_client_for("CatalogSurveysFunction")
    glue.get_table(DatabaseName=DATABASE, Name="pr_period")
    from moto.glue.models import glue_backends

    from local_runner.lambda_emulation import ACCOUNT, REGION

    glue_backends[ACCOUNT][REGION].delete_table(DATABASE, "pr_period")  # someone drops a table out of band
    bls.put("pr.footnote", b"footnote_code\tfootnote_text\r\nP\tPreliminary\r\n")

    result = engine.execute()

    assert result.succeeded, result.cause
    assert result.output["catalog"]["rebuilt"] == ["pr"]
    tables = glue_tables(engine)
    assert {"pr_period", "pr_footnote"} <= set(tables)
    assert [c["Name"] for c in tables["pr_footnote"]["StorageDescriptor"]["Columns"]] == ["footnote_code", "footnote_text"]


def test_no_table_reads_the_pipelines_reports_or_change_log_objects(bls, make_engine) -> None:
    serve_sample(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    for table in glue_tables(engine).values():
        if table["TableType"] == "VIRTUAL_VIEW":
            continue  # a view reads tables, not S3
        location = table["StorageDescriptor"]["Location"].split(f"s3://{engine.bucket}/", 1)[1]
        assert not location.startswith(("pipeline/", "reports/", "changes/", "bls/")), table["Name"]
        if table["StorageDescriptor"]["InputFormat"] == catalog.SYMLINK_INPUT:
            manifest = engine.s3.get_object(Bucket=engine.bucket, Key=location + catalog.MANIFEST_NAME)
            for line in manifest["Body"].read().decode().splitlines():
                assert line.startswith(f"s3://{engine.bucket}/bls/"), (table["Name"], line)
        else:
            listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=location)["Contents"]
            assert [o["Key"] for o in listed] == [location + "population.jsonl"]


def carries(cause: str, reason: str) -> bool:
    """Whether an execution's cause holds the reason, as it is or escaped in a Lambda error's JSON."""
    return reason in cause or json.dumps(reason)[1:-1] in cause


def test_a_failed_view_ddl_fails_the_execution_at_its_end_after_the_mirror_and_the_reports(
        bls, make_engine, monkeypatch) -> None:
    serve_sample(bls)
    engine = make_engine(bls.url)
    views = catalog.views  # one view more, reading a column that does not exist: Athena (the engine's) fails it
    monkeypatch.setattr(catalog, "views", lambda survey, tables: [*views(survey, tables), ("x", 'SELECT "x" FROM "pr_series"')])

    result = engine.execute()

    assert result.status == "FAILED"
    assert result.error == "CatalogUpdateError" and carries(result.cause, 'Referenced column "x" not found')
    assert engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix="bls/pr/")["KeyCount"] > 0
    assert engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix="reports/latest/")["KeyCount"] > 0
    monkeypatch.undo()
    assert engine.execute().succeeded  # the survey's record was not written: the next run builds its views


def test_a_file_that_is_not_tab_separated_text_is_no_table_and_no_failure(bls, make_engine) -> None:
    serve_sample(bls)
    bls.put("pr.zip", bytes(range(256)) * 4)  # binary, with a tab and a line end in its first bytes
    bls.put("pr.notes", "Notes\u00e9 for\tusers\r\nsee pr.txt\r\n".encode("latin-1"))  # not UTF-8
    engine = make_engine(bls.url)

    result = engine.execute()

    assert result.succeeded, result.cause
    assert not {"pr_zip", "pr_notes"} & set(glue_tables(engine))


def test_a_catalog_step_short_of_time_leaves_surveys_for_its_next_call_and_each_call_does_one(make_engine, monkeypatch) -> None:
    """The first catalog of a whole tree (thousands of tables and views) does not fit one Lambda invocation: with
    less than SURVEY_TIME_RESERVE left, CatalogSurveys stops between surveys and the state machine calls it again."""
    from bls_loopback.server import BlsTree
    from bls_pipeline import catalog_update

    monkeypatch.setattr(catalog_update, "SURVEY_TIME_RESERVE", 10_000.0)  # more than any timeout: one survey a call
    with BlsTree() as tree:
        tree.route(POPULATION_PATH, population_json())
        for survey in ("ce", "cu", "pr"):
            tree.survey(survey).put(f"{survey}.series", b"series_id\tseries_title\r\nX1\tOne\r\n")
            tree.survey(survey).put(f"{survey}.footnote", b"footnote_code\tfootnote_text\r\nP\tPreliminary\r\n")
        engine = make_engine(tree.url, Surveys="ce,cu,pr")

        result = engine.execute()

    assert result.succeeded, result.cause
    calls = [c for c in result.invocations if c.function == "CatalogSurveysFunction"]
    assert [c.result["rebuilt"] for c in calls] == [["ce"], ["cu"], ["pr"]]
    assert [c.result["remaining"] for c in calls] == [2, 1, 0]
    assert {"ce_series", "cu_footnote", "pr_series"} <= set(glue_tables(engine))


class _RecordingAthena:
    """Athena's two DDL calls, recording how many queries were running when each started."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.started: list[tuple[str, int]] = []  # (statement's first line, queries running before it)

    def start_query_execution(self, QueryString: str, **_: Any) -> dict:  # noqa: N803 - boto3's names
        query_id = f"q{len(self.started)}"
        self.started.append((QueryString.splitlines()[0], len(self.running)))
        self.running.add(query_id)
        return {"QueryExecutionId": query_id}

    def get_query_execution(self, QueryExecutionId: str) -> dict:  # noqa: N803
        self.running.discard(QueryExecutionId)
        return {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}}


def test_view_ddl_runs_well_within_athenas_active_ddl_quota_and_a_view_after_those_it_reads() -> None:
    from bls_pipeline.catalog_update import DDL_AT_ONCE, MAX_ACTIVE_DDL, _AthenaDdl

    athena = _RecordingAthena()
    views = [(f"t{i}_clean", f"SELECT * FROM t{i}") for i in range(45)]
    views.append(("t0_labeled", "SELECT * FROM t0_clean AS d LEFT JOIN t44_clean AS s ON s.x = d.x"))

    made = _AthenaDdl(athena, "wg", DATABASE, sleep=lambda _: None).run_all(views)

    assert sorted(made) == sorted(name for name, _ in views)
    assert max(running for _, running in athena.started) == DDL_AT_ONCE - 1 < MAX_ACTIVE_DDL // 2
    order = [line for line, _ in athena.started]
    assert order.index('CREATE OR REPLACE VIEW "t0_labeled" AS') > order.index('CREATE OR REPLACE VIEW "t44_clean" AS')


def test_one_surveys_failed_catalog_leaves_the_others_cataloged_and_fails_the_run_at_its_end_naming_it(
        make_engine, monkeypatch) -> None:
    """ce's tables cannot be created (Glue refuses): cu and pr are still cataloged, over three CatalogSurveys calls
    (one survey each); the execution fails at its end with the cause naming ce, the manifest records it, and the
    next run, with Glue well again, catalogs ce."""
    from unittest import mock

    from moto.glue.models import GlueBackend

    from bls_loopback.server import BlsTree
    from bls_pipeline import catalog_update

    monkeypatch.setattr(catalog_update, "SURVEY_TIME_RESERVE", 10_000.0)
    original = GlueBackend.create_table

    def refuse_ce(self, database_name, table_name, table_input, *args, **kwargs):
        if table_name.startswith("ce_"):
            from moto.glue.exceptions import GlueClientError

            raise GlueClientError("InternalServiceException", "Glue is having a bad day")
        return original(self, database_name, table_name, table_input, *args, **kwargs)

    with BlsTree() as tree:
        tree.route(POPULATION_PATH, population_json())
        for survey in ("ce", "cu", "pr"):
            tree.survey(survey).put(f"{survey}.series", b"series_id\tseries_title\r\nX1\tOne\r\n")
        engine = make_engine(tree.url, Surveys="ce,cu,pr")

        with mock.patch.object(GlueBackend, "create_table", refuse_ce):
            result = engine.execute()

        assert result.status == "FAILED"
        assert result.error == "InternalServiceException"
        assert "could not be updated" in result.cause and "ce: InternalServiceException" in result.cause
        assert "Glue is having a bad day" in result.cause and "cu:" not in result.cause
        tables = set(glue_tables(engine))
        assert {"cu_series", "pr_series", "cu_series_clean"} <= tables and "ce_series" not in tables
        calls = [c for c in result.invocations if c.function == "CatalogSurveysFunction"]
        assert [c.result["failures"] for c in calls] == [1, 1, 1]
        run_id = result.arn.rsplit(":", 1)[1]
        manifest = json.loads(engine.s3.get_object(
            Bucket=engine.bucket, Key=f"pipeline/runs/{run_id}/manifest.json")["Body"].read())
        assert [f["survey"] for f in manifest["catalog"]["failed"]] == ["ce"]
        assert sorted(manifest["catalog"]["rebuilt"]) == ["cu", "pr"]

        again = engine.execute()

    assert again.succeeded, again.cause
    rebuilt = [c.result["rebuilt"] for c in again.invocations if c.function == "CatalogSurveysFunction"]
    assert rebuilt == [["ce"], []]  # one survey a call: ce, then cu and pr, unchanged
    assert "ce_series" in glue_tables(engine)


def test_the_copy_fallback_gives_each_table_a_folder_holding_exactly_a_copy_of_its_file(bls, make_engine) -> None:
    """CatalogTableReads=copy, for an Athena that misreads symlink tables: plain text tables, each folder holding
    one object byte-identical to the mirrored file, copied again when the file changes, gone with its table."""
    files = serve_sample(bls)
    engine = make_engine(bls.url, CatalogTableReads="copy")
    assert engine.execute().succeeded

    def folder_objects(table: dict) -> dict[str, bytes]:
        folder = table["StorageDescriptor"]["Location"].split(f"s3://{engine.bucket}/", 1)[1]
        listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=folder).get("Contents", [])
        return {o["Key"]: engine.s3.get_object(Bucket=engine.bucket, Key=o["Key"])["Body"].read() for o in listed}

    tables = glue_tables(engine)
    assert tables["pr_series"]["StorageDescriptor"]["InputFormat"] == catalog.TEXT_INPUT
    assert tables["pr_series"]["Parameters"]["skip.header.line.count"] == "1"
    assert list(folder_objects(tables["pr_series"]).values()) == [files["pr.series"]]
    assert list(folder_objects(tables["pr_data_0_current"]).values()) == [files["pr.data.0.Current"]]
    assert engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=catalog.SYMLINKS_PREFIX)["KeyCount"] == 0

    changed = files["pr.series"] + b"PRS99999999\t3000\t6\t01\t2\tS\t-\r\n"
    bls.put("pr.series", changed)
    bls.put("pr.class", b"This file is documentation now.\r\n")
    assert engine.execute().succeeded
    tables = glue_tables(engine)
    assert list(folder_objects(tables["pr_series"]).values()) == [changed]
    assert "pr_class" not in tables
    assert engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=catalog.copy_key("pr_class"))["KeyCount"] == 0


def test_a_named_query_in_another_database_is_deleted_and_created_again(bls, make_engine) -> None:
    """UpdateNamedQuery takes no Database (Athena API Reference): a report query left in another database (an older
    CatalogDatabase) is deleted and created in the catalog's, and there are still exactly three."""
    from moto.athena.models import athena_backends

    from local_runner.lambda_emulation import ACCOUNT, REGION

    serve_sample(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    backend = athena_backends[ACCOUNT][REGION]
    moved = next(iter(backend.named_queries.values()))
    moved.database = "old_database"
    engine.s3.delete_object(Bucket=engine.bucket, Key="catalog/state/named-queries.json")

    result = engine.execute()

    assert result.succeeded, result.cause
    assert result.output["catalog"]["named_queries"] == "updated"
    queries = list(backend.named_queries.values())
    assert len(queries) == 3 and {q.database for q in queries} == {DATABASE}
    assert moved.id not in backend.named_queries


class _BusyAthena(_RecordingAthena):
    """Athena whose active-DDL quota is full (other users' queries) for the first `busy` starts."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy

    def start_query_execution(self, QueryString: str, **kwargs: Any) -> dict:  # noqa: N803
        from botocore.exceptions import ClientError

        if self.busy:
            self.busy -= 1
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}},
                              "StartQueryExecution")
        return super().start_query_execution(QueryString, **kwargs)


def test_a_full_ddl_quota_is_waited_out_with_backoff_and_a_quota_that_stays_full_fails_the_survey() -> None:
    from botocore.exceptions import ClientError

    from bls_pipeline.catalog_update import QUOTA_RETRIES, _AthenaDdl

    slept: list[float] = []
    athena = _BusyAthena(busy=3)
    assert _AthenaDdl(athena, "wg", DATABASE, sleep=slept.append).run_all([("t_clean", "SELECT 1")]) == ["t_clean"]
    assert slept == [0.5, 1.0, 2.0]

    slept.clear()
    always_busy = _BusyAthena(busy=QUOTA_RETRIES + 1)
    try:
        _AthenaDdl(always_busy, "wg", DATABASE, sleep=slept.append).run_all([("t_clean", "SELECT 1")])
    except ClientError as error:
        assert error.response["Error"]["Code"] == "TooManyRequestsException"
    else:
        raise AssertionError("a quota that stays full must fail")
    assert len(slept) == QUOTA_RETRIES and max(slept) == 16.0
