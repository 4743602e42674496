"""Athena in the local engine runs its queries for real (local_runner/athena_sql.py): DuckDB over moto's Glue catalog
and moto's S3. An invalid view fails the catalog step with DuckDB's reason, the report queries give the Analytics
Lambda's numbers, a table reads what its manifest lists at the moment of the query, and each dialect point between
Athena (Trino) and DuckDB that the module translates is pinned here."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from decimal import Decimal
from typing import Iterator

import pytest
from botocore.exceptions import ClientError

from bls_loopback.population import POPULATION_PATH, population_json
from bls_loopback.sample import sample_pr_files
from bls_pipeline import catalog
from local_runner import athena_sql
from local_runner.athena_sql import java_double, reserved_identifiers, substitute_parameters
from local_runner.engine import LocalEngine
from tests.conftest import ROOT, engine_parameters
from tests.test_query_catalog import MORE_MAPPINGS, carries, glue_tables, serve_sample

DATABASE = "bls_mirror"
LAZY_SIMPLE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"


# -- helpers ----------------------------------------------------------------------------------------------------------

def start(engine: LocalEngine, sql: str, parameters: list[str] | None = None, database: str = DATABASE) -> dict:
    """StartQueryExecution in the stack's workgroup, then the GetQueryExecution answer."""
    extra = {"ExecutionParameters": parameters} if parameters else {}
    query_id = engine.athena.start_query_execution(
        QueryString=sql, WorkGroup=engine.resolver.ref("QueryWorkGroup"),
        QueryExecutionContext={"Database": database}, **extra)["QueryExecutionId"]
    return engine.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]


def result_rows(engine: LocalEngine, query_id: str) -> list[list[str | None]]:
    """Every row GetQueryResults gives, all pages, the column names first."""
    rows = []
    for page in engine.athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        rows += [[cell.get("VarCharValue") for cell in row["Data"]] for row in page["ResultSet"]["Rows"]]
    return rows


def select(engine: LocalEngine, sql: str, parameters: list[str] | None = None) -> list[dict]:
    execution = start(engine, sql, parameters)
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"].get("StateChangeReason")
    names, *rows = result_rows(engine, execution["QueryExecutionId"])
    return [dict(zip(names, row)) for row in rows]


def failure(engine: LocalEngine, sql: str, parameters: list[str] | None = None) -> str:
    status = start(engine, sql, parameters)["Status"]
    assert status["State"] == "FAILED", status
    return status["StateChangeReason"]


def put(engine: LocalEngine, key: str, body: bytes) -> None:
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=body)


def symlink_table(engine: LocalEngine, name: str, columns: list[str], targets: list[str], **parameters: str) -> None:
    """A table as the catalog step makes one: its manifest lists the targets' s3:// URIs; tab-separated, header
    skipped, every column a string."""
    location = f"catalog/symlinks/{name}/"
    put(engine, location + "manifest.txt", "".join(f"s3://{engine.bucket}/{t}\n" for t in targets).encode())
    engine.glue.create_table(DatabaseName=DATABASE, TableInput={
        "Name": name, "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "csv", "skip.header.line.count": "1", "EXTERNAL": "TRUE", **parameters},
        "StorageDescriptor": {
            "Columns": [{"Name": c, "Type": "string"} for c in columns],
            "Location": f"s3://{engine.bucket}/{location}",
            "InputFormat": "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "SerdeInfo": {"SerializationLibrary": LAZY_SIMPLE, "Parameters": {"field.delim": "\t"}}}})


def folder_table(engine: LocalEngine, name: str, columns: list[tuple[str, str]], serde: str, **parameters: str) -> str:
    location = f"tables/{name}/"
    engine.glue.create_table(DatabaseName=DATABASE, TableInput={
        "Name": name, "TableType": "EXTERNAL_TABLE", "Parameters": {"EXTERNAL": "TRUE", **parameters},
        "StorageDescriptor": {
            "Columns": [{"Name": c, "Type": t} for c, t in columns],
            "Location": f"s3://{engine.bucket}/{location}",
            "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "SerdeInfo": {"SerializationLibrary": serde, "Parameters": {"field.delim": "\t"}}}})
    return location


def duckdb_objects(engine: LocalEngine) -> set[str]:
    con = engine.queries.connection()
    return {name for (name,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND schema_name = ?",
        [athena_sql.CATALOG, DATABASE]).fetchall()}


@pytest.fixture
def engine() -> Iterator[LocalEngine]:
    """An engine for the tests that make their own tables; nothing is mirrored."""
    parameters = engine_parameters("http://127.0.0.1:9/pub/time.series/pr/")
    with LocalEngine(parameters, extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as started:
        yield started


# -- the dialect: Athena's rules where DuckDB's differ ---------------------------------------------------------------

def test_execution_parameters_replace_the_placeholders_in_order_but_not_in_strings_quoted_names_or_comments() -> None:
    sql = "SELECT '?' AS \"a?\" -- why?\nFROM t /* ? */ WHERE s = ? AND p = ?"
    assert substitute_parameters(sql, ["'PRS30006032'", "'Q01'"]) == (
        "SELECT '?' AS \"a?\" -- why?\nFROM t /* ? */ WHERE s = ('PRS30006032') AND p = ('Q01')")


@pytest.mark.parametrize("parameters, expected", [(["'x'"], "expected 2 but found 1"), ([], "expected 2 but found 0"),
                                                  (["1", "2", "3"], "expected 2 but found 3")])
def test_a_parameter_count_that_differs_fails_as_trino_fails_it(parameters, expected) -> None:
    with pytest.raises(athena_sql.AthenaQueryError, match=f"Incorrect number of parameters: {expected}"):
        substitute_parameters("SELECT * FROM t WHERE a = ? AND b = ?", parameters)


def test_trino_reserved_words_as_names_after_as_or_a_dot_are_refused_quoted_ones_are_not() -> None:
    assert [p.split(":")[0:2] for p in reserved_identifiers('SELECT 1 AS left,\n  t.order, t."order" AS "end" FROM t')] \
        == [["line 1", "13"], ["line 2", "5"]]
    assert reserved_identifiers("SELECT CAST(x AS DECIMAL(38, 6)) AS value, period AS period FROM t AS d") == []


def test_the_catalogs_own_sql_names_nothing_athena_reserves() -> None:
    tables = catalog.survey_tables("pr", "bls/pr/", {
        name: body.split(b"\n", 1)[0].decode() for name, body in {**sample_pr_files(), **MORE_MAPPINGS}.items()})
    for name, sql in [*catalog.views("pr", tables), *catalog.report_queries("pr.data.0.Current").items()]:
        assert reserved_identifiers(sql) == [], name


@pytest.mark.parametrize("value, shown", [
    (322069808.0, "3.22069808E8"), (4158441.040908095, "4158441.040908095"), (1234.5, "1234.5"), (100.0, "100.0"),
    (1e7, "1.0E7"), (0.001, "0.001"), (0.0001, "1.0E-4"), (-2.5e-5, "-2.5E-5"), (0.0, "0.0"), (-0.0, "-0.0"),
    (float("inf"), "Infinity"), (float("nan"), "NaN"), (1.7976931348623157e308, "1.7976931348623157E308")])
def test_a_double_is_rendered_as_javas_double_to_string_as_athena_renders_it(value, shown) -> None:
    assert java_double(value) == shown
    assert shown in ("NaN", "Infinity") or float(shown.replace("E", "e")) == value


def test_integer_division_names_and_values_are_athenas(engine) -> None:
    rows = select(engine, "SELECT 7 / 2 AS Half, -7 / 2 AS neg, 7.0 / 2 AS d, CAST(1.5 AS DECIMAL(38, 6)) AS dec, "
                          "ARRAY[2013, 2014] AS years, NULL AS nothing, TRUE AS yes")
    assert rows == [{"half": "3", "neg": "-3", "d": "3.5", "dec": "1.500000", "years": "[2013, 2014]",
                     "nothing": None, "yes": "true"}]


def test_only_athenas_catalog_is_readable_not_local_files(engine, tmp_path) -> None:
    secret = tmp_path / "local.csv"
    secret.write_text("a\n1\n")
    assert "read_csv()" in failure(engine, f"SELECT * FROM read_csv('{secret}')")
    assert failure(engine, f"SELECT * FROM \"{secret}\"") == (
        f"TABLE_NOT_FOUND: Table 'awsdatacatalog.{DATABASE}.{str(secret).lower()}' does not exist")


# -- what a query answers -------------------------------------------------------------------------------------------

def test_a_select_answers_in_athenas_shape_and_writes_its_csv_to_the_result_location(engine) -> None:
    put(engine, "bls/t1/t1.series", b"series_id\tname\tnote\r\nA1\tOne\t\r\nA2\tTwo \"2\"\t\\N\r\n")
    symlink_table(engine, "t1_series", ["series_id", "name", "note"], ["bls/t1/t1.series"])

    execution = start(engine, "SELECT series_id, name, note, LENGTH(series_id) AS n FROM t1_series ORDER BY series_id")

    query_id = execution["QueryExecutionId"]
    assert execution["Status"]["State"] == "SUCCEEDED" and execution["StatementType"] == "DML"
    output = f"s3://{engine.bucket}/athena-results/{query_id}.csv"
    assert execution["ResultConfiguration"]["OutputLocation"] == output
    answer = engine.athena.get_query_results(QueryExecutionId=query_id)
    assert [[c.get("VarCharValue") for c in r["Data"]] for r in answer["ResultSet"]["Rows"]] == [
        ["series_id", "name", "note", "n"], ["A1", "One", "", "2"], ["A2", 'Two "2"', None, "2"]]
    assert answer["ResultSet"]["Rows"][2]["Data"][2] == {}  # NULL: no VarCharValue
    info = answer["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
    assert [(c["Name"], c["Type"]) for c in info] == [("series_id", "varchar"), ("name", "varchar"),
                                                       ("note", "varchar"), ("n", "bigint")]
    stored = engine.s3.get_object(Bucket=engine.bucket, Key=f"athena-results/{query_id}.csv")["Body"].read()
    assert stored == b'"series_id","name","note","n"\n"A1","One","","2"\n"A2","Two ""2""",,"2"\n'


def test_results_are_paged_as_athena_pages_them(engine) -> None:
    put(engine, "bls/t2/t2.data", b"n\r\n" + b"".join(b"%d\r\n" % i for i in range(2500)))
    symlink_table(engine, "t2_data", ["n"], ["bls/t2/t2.data"])
    query_id = start(engine, "SELECT CAST(n AS INTEGER) AS n FROM t2_data ORDER BY 1")["QueryExecutionId"]

    pages = list(engine.athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id))

    assert [len(p["ResultSet"]["Rows"]) for p in pages] == [1000, 1000, 501]  # the column names are the first row
    assert pages[1]["ResultSet"]["Rows"][0]["Data"] == [{"VarCharValue": "999"}]
    small = engine.athena.get_query_results(QueryExecutionId=query_id, MaxResults=2)
    assert len(small["ResultSet"]["Rows"]) == 2 and small["NextToken"]
    with pytest.raises(ClientError, match="MaxResults"):
        engine.athena.get_query_results(QueryExecutionId=query_id, MaxResults=1001)


def test_a_failed_query_has_no_results_as_in_athena(engine) -> None:
    execution = start(engine, "SELECT nope FROM (VALUES (1)) AS t (x)")
    assert execution["Status"]["State"] == "FAILED"
    assert execution["Status"]["StateChangeReason"].startswith('Binder Error: Referenced column "nope" not found')
    with pytest.raises(ClientError, match="Final query state: FAILED"):
        engine.athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"])


@pytest.mark.parametrize("sql, named", [
    ("INSERT INTO t1_series VALUES ('x', 'y', 'z')", "INSERT INTO"),
    ("CREATE TABLE copy AS SELECT * FROM t1_series", "CREATE TABLE"),
    ("MSCK REPAIR TABLE t1_series", "MSCK REPAIR TABLE"),
    ("ALTER TABLE t1_series ADD COLUMNS (x string)", "ALTER TABLE"),
    ("SELECT 1; DROP VIEW v", "Only one sql statement is allowed"),
])
def test_a_statement_this_engine_does_not_run_fails_with_a_reason_naming_it(engine, sql, named) -> None:
    assert named in failure(engine, sql)


# -- reading tables as Athena reads them ---------------------------------------------------------------------------

def test_delimited_files_are_read_as_lazy_simple_serde_reads_them(engine) -> None:
    """Empty field '', \\N NULL, a short row padded with NULLs, fields past the columns ignored, the header skipped in
    every file of a folder table, a value that is not of its column's type NULL."""
    location = folder_table(engine, "t3_folder", [("code", "string"), ("label", "string"), ("n", "int")], LAZY_SIMPLE,
                            **{"skip.header.line.count": "1"})
    put(engine, location + "part-1.tsv", b"code\tlabel\tn\nA\t\t1\nB\n")
    put(engine, location + "part-2.tsv", b"code\tlabel\tn\nC\t\\N\tx\textra\n")
    put(engine, location + "_SUCCESS", b"not data: a hidden file")

    rows = select(engine, "SELECT code, label, n FROM t3_folder ORDER BY code")

    assert rows == [{"code": "A", "label": "", "n": "1"}, {"code": "B", "label": None, "n": None},
                    {"code": "C", "label": None, "n": None}]


def test_a_json_lines_folder_table_reads_its_typed_columns(engine) -> None:
    location = folder_table(engine, "t4_population", [("year", "int"), ("population", "bigint")],
                            "org.openx.data.jsonserde.JsonSerDe")
    put(engine, location + "population.jsonl", b'{"year": 2013, "population": 316128839}\n{"year": 2014, "population": 318857056}\n')

    rows = select(engine, "SELECT year, population * 2 AS twice FROM t4_population ORDER BY year")

    assert rows == [{"year": "2013", "twice": "632257678"}, {"year": "2014", "twice": "637714112"}]


def test_a_table_reads_what_its_manifest_lists_at_the_moment_of_the_query(engine) -> None:
    put(engine, "bls/t5/t5.a", b"code\r\nfrom-a\r\n")
    put(engine, "bls/t5/t5.b", b"code\r\nfrom-b\r\n")
    symlink_table(engine, "t5_codes", ["code"], ["bls/t5/t5.a"])
    assert select(engine, "SELECT code FROM t5_codes") == [{"code": "from-a"}]
    written = engine.queries.files.written

    assert select(engine, "SELECT code FROM t5_codes") == [{"code": "from-a"}]
    assert engine.queries.files.written == written  # unchanged: not written again

    put(engine, "catalog/symlinks/t5_codes/manifest.txt", f"s3://{engine.bucket}/bls/t5/t5.b\n".encode())
    assert select(engine, "SELECT code FROM t5_codes") == [{"code": "from-b"}]
    put(engine, "bls/t5/t5.b", b"code\r\nfrom-b, changed\r\n")
    assert select(engine, "SELECT code FROM t5_codes") == [{"code": "from-b, changed"}]
    put(engine, "catalog/symlinks/t5_codes/manifest.txt", f"s3://{engine.bucket}/bls/t5/t5.gone\n".encode())
    assert "t5.gone, which does not exist" in failure(engine, "SELECT code FROM t5_codes")


def test_a_table_dropped_from_glue_is_gone_from_duckdb(engine) -> None:
    put(engine, "bls/t6/t6.x", b"code\r\nx\r\n")
    symlink_table(engine, "t6_x", ["code"], ["bls/t6/t6.x"])
    assert select(engine, "SELECT count(*) AS n FROM t6_x") == [{"n": "1"}]
    assert "t6_x" in duckdb_objects(engine)

    engine.glue.delete_table(DatabaseName=DATABASE, Name="t6_x")
    select(engine, "SELECT 1 AS one")

    assert "t6_x" not in duckdb_objects(engine)
    assert failure(engine, "SELECT * FROM t6_x") == f"TABLE_NOT_FOUND: Table 'awsdatacatalog.{DATABASE}.t6_x' does not exist"


# -- DDL --------------------------------------------------------------------------------------------------------------

def test_create_view_writes_the_glue_view_athena_writes_and_drop_view_drops_it(engine) -> None:
    put(engine, "bls/t7/t7.series", b"series_id\tyear\r\nS1\t2013\r\n")
    symlink_table(engine, "t7_series", ["series_id", "year"], ["bls/t7/t7.series"])
    select_sql = "SELECT TRIM(series_id) AS Series_Id, CAST(year AS INTEGER) AS year FROM t7_series"

    created = start(engine, f"CREATE OR REPLACE VIEW t7_clean AS {select_sql}")

    assert created["Status"]["State"] == "SUCCEEDED" and created["StatementType"] == "DDL"
    assert created["ResultConfiguration"]["OutputLocation"].endswith(f"/athena-results/{created['QueryExecutionId']}.txt")
    view = engine.glue.get_table(DatabaseName=DATABASE, Name="t7_clean")["Table"]
    assert view["TableType"] == "VIRTUAL_VIEW"
    assert view["Parameters"] == {"presto_view": "true", "comment": "Presto View"}
    assert view["ViewExpandedText"] == "/* Presto View */"
    encoded = view["ViewOriginalText"].removeprefix("/* Presto View: ").removesuffix(" */")
    assert json.loads(base64.b64decode(encoded)) == {
        "originalSql": select_sql, "catalog": "awsdatacatalog", "schema": DATABASE,
        "columns": [{"name": "series_id", "type": "varchar"}, {"name": "year", "type": "integer"}]}
    assert view["StorageDescriptor"]["Columns"] == [{"Name": "series_id", "Type": "string"}, {"Name": "year", "Type": "int"}]
    assert select(engine, "SELECT * FROM t7_clean") == [{"series_id": "S1", "year": "2013"}]
    assert failure(engine, f"CREATE VIEW t7_clean AS {select_sql}") == (
        f"View already exists: 'awsdatacatalog.{DATABASE}.t7_clean'")
    assert "is a table, not a view" in failure(engine, "CREATE OR REPLACE VIEW t7_series AS SELECT 1 AS x")

    assert start(engine, "DROP VIEW t7_clean")["Status"]["State"] == "SUCCEEDED"

    assert "t7_clean" not in glue_names(engine) and "t7_clean" not in duckdb_objects(engine)
    assert failure(engine, "DROP VIEW t7_clean") == f"View 'awsdatacatalog.{DATABASE}.t7_clean' does not exist"
    assert start(engine, "DROP VIEW IF EXISTS t7_clean")["Status"]["State"] == "SUCCEEDED"


def glue_names(engine: LocalEngine) -> set[str]:
    return {t["Name"] for t in engine.glue.get_tables(DatabaseName=DATABASE)["TableList"]}


@pytest.mark.parametrize("select_sql, reason", [
    ("SELECT nope FROM t8_series", 'Binder Error: Referenced column "nope" not found'),
    ("SELECT TRIM(order) AS code FROM t8_series", 'Parser Error: syntax error at or near "order"'),
    ("SELECT series_id AS left FROM t8_series", "mismatched input 'left'. Expecting: <identifier>"),
    ("SELECT * FROM t8_missing", f"TABLE_NOT_FOUND: Table 'awsdatacatalog.{DATABASE}.t8_missing' does not exist"),
])
def test_an_invalid_view_fails_with_its_reason_and_creates_nothing(engine, select_sql, reason) -> None:
    symlink_table(engine, "t8_series", ["series_id"], [])

    assert reason in failure(engine, f"CREATE OR REPLACE VIEW t8_view AS {select_sql}")

    assert "t8_view" not in glue_names(engine) and "t8_view" not in duckdb_objects(engine)


# -- through the state machine ----------------------------------------------------------------------------------------

def with_an_extra_view(monkeypatch, name: str, select: str) -> None:
    """The catalog step makes the views of catalog.views and this one, as a bug in the catalog's SQL would: its DDL
    goes through the real handler and Athena client, and runs in the engine."""
    views = catalog.views
    monkeypatch.setattr(catalog, "views", lambda survey, tables: [*views(survey, tables), (name, select)])


@pytest.mark.parametrize("select, reason", [
    ('SELECT "seriesid" FROM "pr_series"', 'Binder Error: Referenced column "seriesid" not found in FROM clause!'),
    ('SELECT TRIM(order) AS "code" FROM "pr_series"', 'Parser Error: syntax error at or near "order"'),
])
def test_an_invalid_view_fails_the_catalog_step_with_duckdbs_reason_and_creates_no_view(
        bls, make_engine, monkeypatch, select, reason) -> None:
    serve_sample(bls)
    with_an_extra_view(monkeypatch, "pr_series_broken", select)
    engine = make_engine(bls.url)

    result = engine.execute()

    assert result.status == "FAILED" and carries(result.cause, reason)
    tables = glue_tables(engine)
    assert "pr_series_broken" not in tables and "pr_series_clean" in tables
    failed = [o for o in engine.queries.outcomes.values() if o.state == "FAILED"]
    assert [o.reason for o in failed] == [reason] and failed[0].statement_type == "DDL"
    assert "pr_series_broken" not in duckdb_objects(engine)


def named_queries(engine: LocalEngine) -> dict[str, dict]:
    athena, workgroup = engine.athena, engine.resolver.ref("QueryWorkGroup")
    found = {}
    for query_id in athena.list_named_queries(WorkGroup=workgroup)["NamedQueryIds"]:
        query = athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]
        found[query["Name"].removeprefix("bls-mirror ")] = query
    return found


def run_named(engine: LocalEngine, query: dict, parameters: list[str] | None = None) -> list[dict]:
    assert query["Database"] == DATABASE
    return select(engine, query["QueryString"], parameters)


@pytest.mark.parametrize("reads", ["symlink", "copy"])
def test_the_named_report_queries_give_the_analytics_lambdas_reports(bls, make_engine, reads) -> None:
    """As tests/test_sql.py compares the SQL with the Lambda: the Lambda's JSON numbers are its exact Decimal sums
    printed as the shortest float, Athena's cells are decimals with their scale and doubles as Java prints them. The
    same with the copy fallback's plain text tables (CatalogTableReads=copy)."""
    serve_sample(bls)
    engine = make_engine(bls.url, CatalogTableReads=reads)
    assert engine.execute().succeeded
    stored = {name: json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=f"reports/latest/{name}.json")["Body"]
                               .read(), parse_float=Decimal) for name in catalog.REPORT_QUERIES}
    queries = named_queries(engine)
    assert set(queries) == set(catalog.REPORT_QUERIES)

    stats = run_named(engine, queries["population_stats"])
    best = run_named(engine, queries["best_year_by_series"])
    series = run_named(engine, queries["series_population"], ["'PRS30006032'", "'Q01'"])

    expected = stored["population_stats"][0]
    assert [(int(r["first_year"]), int(r["last_year"]), int(r["years_used"]), r["missing_years"],
             Decimal(r["mean"]), Decimal(r["stddev"])) for r in stats] == [
        (expected["first_year"], expected["last_year"], expected["years_used"], None, expected["mean"],
         expected["stddev"])]
    assert expected["missing_years"] == []
    assert [(r["series_id"], int(r["year"]), Decimal(r["value"])) for r in best] == [
        (r["series_id"], r["year"], Decimal(r["value"])) for r in stored["best_year_by_series"]]
    assert [(r["series_id"], int(r["year"]), r["period"], Decimal(r["value"]),
             None if r["population"] is None else int(r["population"])) for r in series] == [
        (r["series_id"], r["year"], r["period"], Decimal(r["value"]), r["Population"]) for r in stored["series_population"]]
    assert best and series and any(r["population"] for r in series)


def test_a_fresh_engine_given_a_state_directorys_glue_tables_queries_their_views(bls, tmp_path) -> None:
    from local_runner.state_dir import StateDir

    for name, body in {**sample_pr_files(), **MORE_MAPPINGS}.items():
        bls.put(name, body)
    bls.route(POPULATION_PATH, population_json())
    state = StateDir(tmp_path / "state")
    parameters = engine_parameters(bls.url)
    query = "SELECT year, period, sector_name FROM pr_data_0_current_labeled WHERE series_id = 'PRS30006032' AND year = 2018"
    with LocalEngine(parameters, extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as first:
        assert first.execute().succeeded
        state.save_from(first.s3, first.bucket)
        state.save_catalog_from(first.glue)
        expected = select(first, query + " ORDER BY period")

    with LocalEngine(parameters, extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as fresh:
        state.load_into(fresh.s3, fresh.bucket)
        assert state.load_catalog_into(fresh.glue) > 0

        got = select(fresh, query + " ORDER BY period")

    assert got == expected and got and {r["sector_name"] for r in got} == {"Manufacturing"}


# -- the engine's own costs --------------------------------------------------------------------------------------------

def test_starting_the_engine_imports_no_duckdb_and_makes_no_temporary_folder() -> None:
    script = (
        "import sys\n"
        "from local_runner.engine import LocalEngine\n"
        "from tests.conftest import engine_parameters\n"
        "with LocalEngine(engine_parameters('http://127.0.0.1:9/pub/time.series/pr/')) as engine:\n"
        "    assert 'duckdb' not in sys.modules, 'duckdb imported at start'\n"
        "    assert not engine.queries.connected and engine.queries.files.folder is None\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_query_results_stay_out_of_the_next_engine_and_expire_as_the_bucket_expires_them(moto_s3, tmp_path) -> None:
    from local_runner.state_dir import QUERY_RESULT_DAYS, StateDir

    state = StateDir(tmp_path / "state")
    moto_s3.put_object(Bucket="mirror-bucket", Key="athena-results/q1.csv", Body=b'"a"\n')
    day = 86400
    state.save_from(moto_s3, "mirror-bucket", now=1_000 * day)
    moto_s3.delete_object(Bucket="mirror-bucket", Key="athena-results/q1.csv")

    state.load_into(moto_s3, "mirror-bucket")
    assert moto_s3.list_objects_v2(Bucket="mirror-bucket", Prefix="athena-results/")["KeyCount"] == 0
    assert (state.objects / "athena-results/q1.csv").is_file()

    state.save_from(moto_s3, "mirror-bucket", now=(1_000 + QUERY_RESULT_DAYS + 1) * day)
    assert not (state.objects / "athena-results/q1.csv").exists()


def test_the_local_runners_requirements_install_duckdb() -> None:
    lines = (ROOT / "requirements-run.txt").read_text().splitlines()
    assert any(line.startswith("duckdb==") for line in lines)
    assert "-r requirements-run.txt" in (ROOT / "requirements-sql.txt").read_text().splitlines()
