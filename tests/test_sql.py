"""The SQL catalog (bls_pipeline.catalog, functions/bls_pipeline/sql) run in DuckDB on a state directory equals the
Analytics Lambda's reports exactly; its Glue tables read only the mirror's files, and applying them is idempotent.

Exactly: best_year_by_series and series_population values are DECIMAL sums in SQL and the Lambda's JSON numbers are
the exact Decimal sums printed as the shortest float (17.8, never 17.799999999999997), so they are compared as
Decimal(repr(lambda value)) == SQL decimal; the mean and the stddev are DOUBLE in both and compared with ==.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
import statistics
from decimal import Decimal
from pathlib import Path

import pytest

duckdb = pytest.importorskip("duckdb", reason="DuckDB is in requirements-sql.txt (part of requirements-dev.txt)")

from bls_loopback.population import POPULATION, population_json  # noqa: E402
from bls_loopback.sample import sample_pr_files  # noqa: E402
from bls_pipeline import catalog  # noqa: E402
from bls_pipeline.analytics import load_reports_from_files  # noqa: E402
from bls_pipeline.population import (  # noqa: E402
    normalized_population_key,
    parse_population,
    population_json_lines,
)
from local_runner import sql as sql_command  # noqa: E402
from tests.conftest import REAL_DATA  # noqa: E402

REAL_SNAPSHOTS = sorted(REAL_DATA.glob("bls_pr_*")) if REAL_DATA.is_dir() else []
needs_real_data = pytest.mark.skipif(not REAL_SNAPSHOTS, reason="../shared/data/real is not present")
NEW_API = REAL_DATA / "datausa_new_api" / "population.json"
OLD_API = REAL_DATA / "datausa_old_api" / "population_data.json"


def state_dir(root: Path, files: dict[str, bytes], population: bytes, survey: str = "pr") -> Path:
    """A local runner's state directory as a run leaves it: s3/bls/<survey>/<file> and s3/datausa/population.json."""
    mirror = root / "s3" / "bls" / survey
    mirror.mkdir(parents=True)
    for name, body in files.items():
        (mirror / name).write_bytes(body)
    (root / "s3" / "datausa").mkdir(parents=True)
    (root / "s3" / "datausa" / "population.json").write_bytes(population)
    return root


def crlf(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# Mapping files shaped like the real ones' header rows (pr.seasonal's Seasonal_code, its blank last line).
MAPPING_FILES = {
    "pr.sector": crlf("sector_code\tsector_name\tdisplay_level\tselectable\tsort_sequence", "3000\tManufacturing\t0\tT\t4",
                      "8500\tNonfinancial corporations\t0\tT\t3"),
    "pr.class": crlf("class_code\tclass_text\tdisplay_level\tselectable\tsort_sequence", "3\tEmployees\t0\tT\t2",
                     "6\tAll workers\t0\tT\t1"),
    "pr.measure": crlf("measure_code\tmeasure_text\tdisplay_level\tselectable\tsort_sequence",
                       "03\tHours worked\t0\tT\t4", "09\tLabor productivity (output per hour)\t0\tT\t1",
                       "01\tEmployment\t0\tT\t11", "15\tUnit labor costs\t0\tT\t7"),
    "pr.duration": crlf("duration_code\tduration_text\tdisplay_level\tselectable\tsort_sequence",
                        "1\t% Change same quarter 1 year ago\t0\tT\t1", "2\t% Change from previous quarter\t0\tT\t2"),
    "pr.seasonal": crlf("Seasonal_code\tSeasonal_text", "S\tSeasonal Adjusted", "U\tNot Seasonally Adjusted", ""),
    "pr.period": crlf("period\tperiod_abbr\tperiod_name", "Q01\tQTR1\t1st Quarter", "Q02\tQTR2\t2nd Quarter",
                      "Q03\tQTR3\t3rd Quarter", "Q04\tQTR4\t4th Quarter", "Q05\tAN AV\tAnnual Average"),
}

# Quarters Q01..Q04 then Q05, the annual average the best-year report ignores. The rows the SQL must get right: sums
# that are not exact in floats (17.8), a tie (earlier year wins), negative sums, Q05 that would win if counted,
# a year without population (2020), and rows the Lambda skips as malformed ('-', a blank value, a year '2019.5').
EDGE_DATA = {
    "PRS30006032": {2013: ("1.7", "0.4", "1.0", "0.9", "1.0"), 2018: ("3.0", "0.2", "0.9", "1.8", "1.5"),
                    2019: ("0.5", "2.1", "1.6", "0.3", "99.9"), 2020: ("-6.8", "-9.9", "10.4", "3.1", "-0.8"),
                    2021: ("4.2", "2.6", "1.9", "1.4", "2.5")},
    "PRS30006012": {2015: ("4.3", "4.4", "4.5", "4.6", "4.5"), 2016: ("4.4", "4.5", "4.4", "4.5", "4.5"),
                    2017: ("3.0", "3.1", "3.2", "3.3", "50.0")},
    "PRS85006092": {2016: ("-1.5", "-0.5", "-0.3", "-0.7", "-0.8"), 2017: ("-0.1", "-0.2", "-0.3", "-0.4", "-0.3"),
                    2018: ("-2.0", "0.5", "-0.5", "-0.1", "-")},
}


def edge_data_file() -> bytes:
    lines = ["series_id        \tyear\tperiod\t       value\tfootnote_codes"]
    for series, years in EDGE_DATA.items():
        for year, values in years.items():
            lines += [f"{series:<17}\t{year}\tQ0{q}\t{v:>12}\t" for q, v in enumerate(values, start=1)]
    lines += ["PRS30006012      \t2019.5\tQ01\t       999.0\t", "PRS30006012      \t2014\tQ02\t            \tR", ""]
    return crlf(*lines)


EDGE_SERIES = crlf("series_id        \tsector_code\tclass_code\tmeasure_code\tduration_code\tseasonal\tbase_year",
                   "PRS30006012      \t3000\t6\t01\t2\tS\t-", "PRS30006032      \t3000\t6\t03\t2\tS\t-",
                   "PRS85006092      \t8500\t6\t09\t2\tS\t-")


def sql_reports(state: Path, data_file: str = "pr.data.0.Current", series: str = "PRS30006032",
                period: str = "Q01") -> dict[str, list[dict]]:
    con = sql_command.connect(state)
    reports = {}
    for name in catalog.REPORT_QUERIES:
        columns, rows = sql_command.run_report(con, name, data_file, series, period)
        reports[name] = [dict(zip(columns, row)) for row in rows]
    return reports


def assert_sql_equals_lambda(state: Path, data_file: str = "pr.data.0.Current", series: str = "PRS30006032",
                             period: str = "Q01") -> dict[str, list[dict]]:
    objects = state / "s3"
    expected = load_reports_from_files(str(objects / "bls" / "pr" / data_file), str(objects / "datausa" / "population.json"),
                                       series, period)
    got = sql_reports(state, data_file, series, period)

    stats = dict(got["population_stats"][0])
    stats["missing_years"] = stats["missing_years"] or []
    assert stats == {k: v for k, v in expected.population_stats.items() if k != "stddev_kind"}
    assert [(r["series_id"], r["year"], r["value"]) for r in got["best_year_by_series"]] == [
        (r["series_id"], r["year"], Decimal(repr(r["value"]))) for r in expected.best_year_by_series]
    assert [(r["series_id"], r["year"], r["period"], r["value"], r["population"]) for r in got["series_population"]] == [
        (r["series_id"], r["year"], r["period"], Decimal(repr(r["value"])), r["Population"])
        for r in expected.series_population]
    assert got["best_year_by_series"] and got["series_population"]
    return got


def test_the_reports_in_sql_equal_the_lambdas_on_the_generated_sample(tmp_path: Path) -> None:
    state = state_dir(tmp_path, sample_pr_files(), population_json())
    assert_sql_equals_lambda(state)
    assert_sql_equals_lambda(state, series="PRS85006152", period="Q03")


def test_the_reports_in_sql_equal_the_lambdas_on_sums_ties_and_malformed_rows(tmp_path: Path) -> None:
    state = state_dir(tmp_path, {"pr.data.0.Current": edge_data_file(), "pr.series": EDGE_SERIES}, population_json())
    got = assert_sql_equals_lambda(state)
    assert [(r["series_id"], r["year"], r["value"]) for r in got["best_year_by_series"]] == [
        ("PRS30006012", 2015, Decimal("17.8")), ("PRS30006032", 2021, Decimal("10.1")),
        ("PRS85006092", 2017, Decimal("-1.0"))]
    assert [(r["year"], r["population"]) for r in got["series_population"]] == [
        (2013, 316128839), (2018, 327167439), (2019, 328239523), (2020, None), (2021, 331893745)]


def test_missing_population_years_are_named_as_the_lambda_names_them(tmp_path: Path) -> None:
    years = {y: p for y, p in POPULATION.items() if y not in (2014, 2016)}
    state = state_dir(tmp_path, sample_pr_files(), population_json(years))
    stats = assert_sql_equals_lambda(state)["population_stats"][0]
    assert stats["missing_years"] == [2014, 2016] and stats["years_used"] == 4


@needs_real_data
@pytest.mark.parametrize("snapshot", [p.name for p in REAL_SNAPSHOTS] or ["bls_pr_2026-08-06"])  # skipped by name
def test_the_reports_in_sql_equal_the_lambdas_on_each_real_pr_snapshot(tmp_path: Path, snapshot: str) -> None:
    files = {p.name: p.read_bytes() for p in (REAL_DATA / snapshot).glob("pr.*")}
    state = state_dir(tmp_path, files, NEW_API.read_bytes())
    got = assert_sql_equals_lambda(state)
    if snapshot == "bls_pr_2021-10":  # the quest README's example row
        assert {"series_id": "PRS30006032", "year": 2018, "period": "Q01", "value": Decimal("1.9"),
                "population": 327167439} in got["series_population"]
    if "pr.data.1.AllData" in files:
        assert_sql_equals_lambda(state, data_file="pr.data.1.AllData", series="PRS85006092", period="Q04")


@needs_real_data
def test_the_reports_in_sql_equal_the_lambdas_with_the_old_datausa_api(tmp_path: Path) -> None:
    snapshot = REAL_DATA / "bls_pr_2026-08-06"
    state = state_dir(tmp_path, {"pr.data.0.Current": (snapshot / "pr.data.0.Current").read_bytes()}, OLD_API.read_bytes())
    assert assert_sql_equals_lambda(state)["population_stats"][0]["mean"] == 317437383.0


def test_the_population_query_is_the_lambdas_to_one_unit_in_the_last_place_on_any_population() -> None:
    """The mean is bit-identical (one rounding in both); the stddev takes two roundings (division, SQRT) where
    statistics.stdev takes one, so it may differ in the last bit on some populations (see population_stats.sql)."""
    rng = random.Random(18)
    con = duckdb.connect()
    query = catalog.report_queries("pr.data.0.Current")["population_stats"]
    exact = 0
    for _ in range(300):
        values = [rng.randint(300_000_000, 340_000_000) for _ in range(6)]
        con.execute("CREATE OR REPLACE TABLE datausa_population (year INTEGER, population BIGINT)")
        con.executemany("INSERT INTO datausa_population VALUES (?, ?)", list(zip(range(2013, 2019), values)))
        mean, stddev = con.execute(f"SELECT mean, stddev FROM ({query})").fetchone()
        assert mean == statistics.fmean(values)
        assert abs(stddev - statistics.stdev(values)) <= math.ulp(statistics.stdev(values))
        exact += stddev == statistics.stdev(values)
    assert exact > 200  # about 7 in 8 are bit-identical


def test_the_labels_view_gives_readable_labels_for_a_known_series(tmp_path: Path) -> None:
    state = state_dir(tmp_path, {"pr.data.0.Current": edge_data_file(), "pr.series": EDGE_SERIES, **MAPPING_FILES},
                      population_json())
    con = sql_command.connect(state)
    rows = con.execute(
        "SELECT year, period, period_name, value, sector_name, class_text, measure_text, duration_text, seasonal_text "
        "FROM pr_data_0_current_labeled WHERE series_id = 'PRS30006032' AND year = 2018 ORDER BY period").fetchall()
    assert rows[0] == (2018, "Q01", "1st Quarter", Decimal("3.0"), "Manufacturing", "All workers", "Hours worked",
                       "% Change from previous quarter", "Seasonal Adjusted")
    assert [r[2] for r in rows] == ["1st Quarter", "2nd Quarter", "3rd Quarter", "4th Quarter", "Annual Average"]
    assert con.execute("SELECT count(*) FROM pr_seasonal_clean").fetchone() == (2,)  # the blank last line is no row


def test_without_some_mapping_files_the_labels_view_has_the_others_and_names_the_missing_files(tmp_path: Path) -> None:
    files = sample_pr_files()  # pr.series, pr.period, pr.class and pr.footnote, but no pr.sector, pr.measure, ...
    tables = catalog.survey_tables("pr", "bls/pr/", {n: b.split(b"\n", 1)[0].decode() for n, b in files.items()})
    assert catalog.missing_for_labels("pr", tables) == ["pr.duration", "pr.measure", "pr.sector"]
    con = sql_command.connect(state_dir(tmp_path, files, population_json()))
    columns = [d[0] for d in con.execute("SELECT * FROM pr_data_0_current_labeled").description]
    assert columns == ["series_id", "year", "period", "period_name", "value", "footnote_codes", "footnote_text",
                       "class_code", "class_text"]  # sector_code, measure_code, ... have no file: not labeled
    assert con.execute("SELECT DISTINCT class_text FROM pr_data_0_current_labeled").fetchall() == [("All workers",)]


@needs_real_data
def test_the_labels_view_on_the_real_files(tmp_path: Path) -> None:
    snapshot = REAL_DATA / "bls_pr_2026-08-06"
    state = state_dir(tmp_path, {p.name: p.read_bytes() for p in snapshot.glob("pr.*")}, NEW_API.read_bytes())
    con = sql_command.connect(state)
    row = con.execute(
        "SELECT sector_name, class_text, measure_text, duration_text, seasonal_text, period_name, value "
        "FROM pr_data_1_alldata_labeled WHERE series_id = 'PRS85006092' AND year = 2019 AND period = 'Q01'").fetchone()
    assert row[:6] == ("Nonfarm Business", "All workers", "Labor productivity (output per hour)",
                       "% Change from previous quarter", "Seasonal Adjusted", "1st Quarter")
    unlabeled = con.execute("SELECT count(*) FROM pr_data_0_current_labeled WHERE sector_name IS NULL OR "
                            "measure_text IS NULL OR duration_text IS NULL OR period_name IS NULL").fetchone()
    assert unlabeled == (0,)


# The mirror of a survey as a listing shows it, beside the pipeline's own objects in the same bucket.
BUCKET_KEYS = [
    "bls/pr/pr.data.0.Current", "bls/pr/pr.data.1.AllData", "bls/pr/pr.series", "bls/pr/pr.class", "bls/pr/pr.txt",
    "datausa/population.json", "pipeline/index/bls/pr/index.json", "pipeline/runs/x/plan.json",
    "reports/latest/best_year_by_series.json", "changes/2026/11/03/x.json",
]


def test_every_table_reads_exactly_its_own_file_and_never_the_pipelines_reports_or_changes() -> None:
    headers = {"pr.data.0.Current": "series_id        \tyear\tperiod\t       value\tfootnote_codes\r\n",
               "pr.data.1.AllData": "series_id\tyear\tperiod\tvalue\tfootnote_codes", "pr.series": "series_id\tseasonal",
               "pr.class": "class_code\tclass_text", "pr.txt": "Productivity and Costs (PR) documentation\r\n"}
    tables = catalog.survey_tables("pr", "bls/pr/", headers) + [catalog.population_table("datausa/population.json")]
    assert [t.name for t in tables] == ["pr_class", "pr_data_0_current", "pr_data_1_alldata", "pr_series",
                                        "datausa_population"]
    manifests = catalog.manifests(tables, "bucket")
    for table in tables:
        table_input = catalog.glue_table_input(table, "bucket")
        folder = table_input["StorageDescriptor"]["Location"].removeprefix("s3://bucket/")
        read = [k for k in BUCKET_KEYS + list(manifests) if k.startswith(folder)]
        if table.kind == "population":
            assert table.keys == (normalized_population_key("datausa/population.json"),)
            assert read == [] and not "datausa/population.json".startswith(folder)  # only the normalized copy
        else:
            assert read == [folder + catalog.MANIFEST_NAME]
            assert manifests[read[0]] == f"s3://bucket/{table.keys[0]}\n".encode()
            assert table_input["StorageDescriptor"]["InputFormat"] == catalog.SYMLINK_INPUT
            assert table_input["Parameters"]["skip.header.line.count"] == "1"
        for path in (folder, *table.keys):
            assert not path.startswith(("pipeline/", "reports/", "changes/")), path
    for prefix in ("pipeline/mirror/", "reports/pr/", "changes/pr/"):
        refused = catalog.survey_catalog("pr", prefix, {"pr.series": "series_id\tseasonal"})
        assert refused.tables == [] and "never a table's" in refused.warnings[0]


def test_table_and_column_names_are_what_glue_and_athena_accept() -> None:
    assert catalog.identifier("pr.data.0.Current") == "pr_data_0_current"
    assert catalog.identifier("ce.data.00a.TotalNonfarm.Employment") == "ce_data_00a_totalnonfarm_employment"
    assert catalog.header_columns("Seasonal_code\tSeasonal_text\r\n") == ("seasonal_code", "seasonal_text")
    assert catalog.header_columns("\ufeffseries_id        \tyear") == ("series_id", "year")
    warnings: list[str] = []
    assert catalog.header_columns("code\tCode", warnings, "pr.x") == ("code", "column_2")
    assert warnings == ["'pr.x': column 2 'Code' repeats an earlier column's name: named column_2"]


def test_applying_the_tables_to_glue_twice_changes_nothing_the_second_time() -> None:
    boto3 = pytest.importorskip("boto3")
    from moto import mock_aws

    headers = {"pr.data.0.Current": "series_id\tyear\tperiod\tvalue\tfootnote_codes", "pr.series": "series_id\tseasonal"}
    tables = catalog.survey_tables("pr", "bls/pr/", headers) + [catalog.population_table("datausa/population.json")]
    inputs = [catalog.glue_table_input(t, "bucket") for t in tables]
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "bls_mirror"})
        assert catalog.apply_tables(glue, "bls_mirror", inputs) == {
            "created": ["pr_data_0_current", "pr_series", "datausa_population"], "updated": [], "unchanged": []}
        versions = {t.name: glue.get_table(DatabaseName="bls_mirror", Name=t.name)["Table"]["VersionId"] for t in tables}

        assert catalog.apply_tables(glue, "bls_mirror", inputs) == {
            "created": [], "updated": [], "unchanged": ["pr_data_0_current", "pr_series", "datausa_population"]}
        assert versions == {t.name: glue.get_table(DatabaseName="bls_mirror", Name=t.name)["Table"]["VersionId"]
                            for t in tables}

        headers["pr.series"] = "series_id\tseasonal\tbase_year"  # BLS added a column
        changed = [catalog.glue_table_input(t, "bucket") for t in catalog.survey_tables("pr", "bls/pr/", headers)]
        assert catalog.apply_tables(glue, "bls_mirror", changed)["updated"] == ["pr_series"]
        columns = glue.get_table(DatabaseName="bls_mirror", Name="pr_series")["Table"]["StorageDescriptor"]["Columns"]
        assert [c["Name"] for c in columns] == ["series_id", "seasonal", "base_year"]


def test_the_normalized_population_copy_is_json_lines_of_year_and_population() -> None:
    records = parse_population(population_json({2014: 318857056, 2013: 316128839}))
    assert population_json_lines(records) == b'{"year":2013,"population":316128839}\n{"year":2014,"population":318857056}\n'
    assert [json.loads(line) for line in population_json_lines(records).splitlines()][0] == {
        "year": 2013, "population": 316128839}
    assert normalized_population_key("datausa/population.json") == "datausa/population-by-year/population.jsonl"


def test_every_sql_file_opens_with_a_comment_on_both_engines() -> None:
    for path in sorted(catalog.SQL_DIR.glob("*.sql")):
        head = path.read_text().split("\nSELECT", 1)[0].split("\nWITH", 1)[0]
        assert "Athena engine v3 (Trino)" in head and "DuckDB" in head, path.name
        assert "DOUBLE" not in catalog.sql_text(path.stem) or path.stem == "population_stats", path.name


def test_the_sql_command_runs_a_query_joining_labels_and_the_reports(tmp_path: Path, capsys) -> None:
    state = state_dir(tmp_path / "state", {"pr.data.0.Current": edge_data_file(), "pr.series": EDGE_SERIES,
                                           **MAPPING_FILES}, population_json())
    query = ("SELECT series_id, year, period, value, measure_text, period_name FROM pr_data_0_current_labeled "
             "WHERE series_id = 'PRS30006032' AND year = 2021 AND period = 'Q01'")
    assert sql_command.main(["--state-dir", str(state), "--sql", query]) == 0
    out = capsys.readouterr().out
    assert "PRS30006032  2021  Q01     4.200000  Hours worked  1st Quarter" in out and "(1 row)" in out

    assert sql_command.main(["--state-dir", str(state), "--query", "best_year", "--show-sql"]) == 0
    out = capsys.readouterr().out
    assert "ROW_NUMBER() OVER (PARTITION BY \"series_id\"" in out and "PRS30006012  2015  17.800000" in out

    assert sql_command.main(["--state-dir", str(state), "--query", "series_population", "--series-id", "PRS85006092",
                             "--period", "Q02"]) == 0
    assert re.search(r"PRS85006092  2017  Q02 +-0\.200000 +325719178\n", capsys.readouterr().out)
    assert sql_command.main(["--state-dir", str(state), "--sql", "SELECT nope FROM pr_series"]) == 1
    assert "error:" in capsys.readouterr().err
    sample = state_dir(tmp_path / "sample", sample_pr_files(), population_json())
    assert sql_command.main(["--state-dir", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "pr_data_0_current_clean" in out and "pr_data_0_current_labeled" in out
    assert "note: pr: the label views leave out the labels of pr.duration, pr.measure, pr.sector" in out
    assert sql_command.main(["--state-dir", str(tmp_path / "empty")]) == 2
    assert "run `make run` first" in capsys.readouterr().err


def run_sql(*argv: str) -> tuple[int, str, str]:
    """The sql command's exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    return sql_command.main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def labeled_state(root: Path, **more: bytes) -> Path:
    footnote = crlf("footnote_code\tfootnote_text", "R\trevised")
    return state_dir(root, {"pr.data.0.Current": edge_data_file(), "pr.series": EDGE_SERIES, **MAPPING_FILES,
                            "pr.footnote": footnote, **more}, population_json())


def test_find_prints_the_series_whose_labels_hold_every_word_with_the_words_bound_as_parameters(tmp_path: Path) -> None:
    state = str(labeled_state(tmp_path))
    code, out, err = run_sql("--state-dir", state, "--find", "OUTPUT per  hour")
    assert code == 0 and err == ""
    assert out.splitlines()[0].split() == ["series_id", "survey", "labels"]
    assert out.splitlines()[1].startswith("PRS85006092  pr      Nonfinancial corporations | All workers | "
                                          "Labor productivity (output per hour) | % Change from previous quarter | "
                                          "Seasonal Adjusted")
    assert out.splitlines()[-1] == "(1 row)"
    assert run_sql("--state-dir", state, "--find", "hours manufacturing")[1].splitlines()[1].startswith("PRS30006032")
    code, out, _ = run_sql("--state-dir", state, "--find", "x' OR '1'='1", "--show-sql")
    assert code == 0 and out.splitlines()[-1] == "(0 rows)"  # a word is a value, never SQL
    assert 'STRPOS("search_text", ?) > 0' in out and "-- parameters: 'x''', 'or', '''1''=''1'" in out
    code, _, err = run_sql("--state-dir", state, "--find", "  ")
    assert code == 2 and err == "error: --find needs at least one word\n"


def test_find_says_so_when_no_survey_has_a_series_file(tmp_path: Path) -> None:
    state = state_dir(tmp_path, {"pr.data.0.Current": edge_data_file()}, population_json())
    code, out, err = run_sql("--state-dir", str(state), "--find", "hours")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "note: pr: no _labeled or _series_search views: pr.series is not mirrored",
        "error: no mirrored survey has a series file with labels to search (<survey>.series and its mapping files, "
        f"e.g. bls/pr/pr.series): nothing to find in {state}"]


@needs_real_data
def test_find_on_the_real_files(tmp_path: Path) -> None:
    snapshot = REAL_DATA / "bls_pr_2026-08-06"
    state = state_dir(tmp_path, {p.name: p.read_bytes() for p in snapshot.glob("pr.*")}, NEW_API.read_bytes())
    code, out, _ = run_sql("--state-dir", str(state), "--find", "output per hour nonfarm", "--format", "json")
    found = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {r["survey"] for r in found} == {"pr"}
    assert {"series_id": "PRS85006092", "survey": "pr", "labels": "Nonfarm Business | All workers | Labor productivity "
            "(output per hour) | % Change from previous quarter | Seasonal Adjusted"} in found
    assert all("Nonfarm Business" in r["labels"] and "output per hour" in r["labels"] for r in found)


def test_csv_and_json_formats_print_every_row_exactly(tmp_path: Path) -> None:
    state = str(labeled_state(tmp_path))
    query = ("SELECT series_id, year, value, period_name, footnote_text FROM pr_data_0_current_labeled "
             "WHERE series_id = 'PRS30006032' ORDER BY year, period")
    code, out, err = run_sql("--state-dir", state, "--sql", query, "--format", "csv")
    got = list(csv.reader(io.StringIO(out)))
    assert code == 0 and err == ""
    assert got[0] == ["series_id", "year", "value", "period_name", "footnote_text"]
    assert got[1] == ["PRS30006032", "2013", "1.700000", "1st Quarter", ""]  # NULL: an empty field
    assert len(got) == 1 + 25  # every row: csv and json have no default limit
    code, out, _ = run_sql("--state-dir", state, "--sql", query, "--format", "json")
    got = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(got) == 25
    assert got[0] == {"series_id": "PRS30006032", "year": 2013, "value": "1.700000", "period_name": "1st Quarter",
                      "footnote_text": None}  # a DECIMAL as the string of its exact digits
    code, out, err = run_sql("--state-dir", state, "--query", "population_stats", "--format", "json")
    stats = json.loads(out)
    assert code == 0 and stats["missing_years"] is None and isinstance(stats["mean"], float)
    code, out, err = run_sql("--state-dir", state, "--sql", query, "--format", "csv", "--limit", "2")
    assert len(out.splitlines()) == 3 and err == "note: 25 rows, 23 not shown (--limit)\n"
    code, out, err = run_sql("--state-dir", state, "--sql", "SELECT 1 AS a, 2 AS a", "--format", "json")
    assert json.loads(out) == {"a": 1, "a_2": 2}


def test_list_names_each_tables_file_and_kind_each_views_sources_and_the_notes(tmp_path: Path) -> None:
    state = labeled_state(tmp_path, **{"pr.SERIES": EDGE_SERIES, "pr.txt": b"Productivity (PR)\r\n"})
    code, listed, err = run_sql("--state-dir", str(state), "--list", "--limit", "0")
    assert code == 0 and err == ""
    assert run_sql("--state-dir", str(state), "--limit", "0")[1] == listed  # no option: the same listing
    lines = listed.splitlines()
    assert lines[1].split() == ["name", "kind", "reads"]
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in lines[2:]
            if line and not line.startswith(("(", "note"))}
    assert rows["pr_series"] == ["mapping", "bls/pr/pr.series"]
    assert rows["pr_data_0_current"] == ["data", "bls/pr/pr.data.0.Current"]
    assert rows["datausa_population"] == ["population", "datausa/population.json"]
    assert rows["pr_series_clean"] == ["view", "pr_series"]
    assert rows["pr_data_0_current_labeled"] == ["view", "pr_data_0_current_clean, pr_series_clean, pr_sector_clean, "
                                                 "pr_class_clean, pr_measure_clean, pr_duration_clean, "
                                                 "pr_seasonal_clean, pr_period_clean, pr_footnote_clean"]
    assert rows["pr_series_search"][0] == "view"
    assert "pr_txt" not in rows  # a document, not a table
    assert [line for line in lines if line.startswith("note:")] == [
        "note: pr: 'pr.SERIES': no table: it would take the name pr_series, which 'pr.series' has"]
    code, out, err = run_sql("--state-dir", str(state), "--list", "--format", "csv")
    assert next(csv.reader(io.StringIO(out))) == ["name", "kind", "reads"] and err.count("note: ") == 1


def test_reports_answer_to_the_readmes_names_and_notes_go_to_stderr_bounded(tmp_path: Path) -> None:
    clashing = {f"pr.Series{'_' * n}": EDGE_SERIES for n in range(1, 13)}  # 12 files that would be pr_series
    state = str(labeled_state(tmp_path, **clashing))
    code, short, err = run_sql("--state-dir", state, "--query", "best_year")
    assert code == 0 and "PRS30006012  2015  17.800000" in short
    assert run_sql("--state-dir", state, "--query", "best_year_by_series")[1] == short
    notes = err.splitlines()
    assert len(notes) == sql_command.NOTES_SHOWN + 1 and notes[-1] == "note: and 2 more (--list shows them all)"
    assert notes[0].startswith("note: pr: 'pr.Series_': no table: it would take the name pr_series")
    assert run_sql("--state-dir", state, "--sql", "SELECT 1")[2] == err
    assert run_sql("--state-dir", state, "--find", "hours")[2] == err


def test_errors_are_one_line_with_exit_code_2_for_usage_and_state_and_1_for_queries(tmp_path: Path) -> None:
    state = str(labeled_state(tmp_path / "state"))
    code, out, err = run_sql("--state-dir", str(tmp_path / "none"))
    assert (code, out) == (2, "") and err.count("\n") == 1 and "error: no mirrored survey under" in err
    code, out, err = run_sql("--state-dir", state, "--format", "xml")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("error: argument --format: invalid choice: 'xml' (choose from ")
    assert err.endswith("(see python -m local_runner.sql --help)\n")
    code, _, err = run_sql("--state-dir", state, "--query", "best")
    assert code == 2 and err.count("\n") == 1 and "best_year_by_series" in err
    code, _, err = run_sql("--state-dir", state, "--sql", "SELECT * FROM nope")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: Catalog Error: Table with name nope does not exist!")
    assert err.endswith("(--list shows the tables and views)\n")
    code, _, err = run_sql("--state-dir", state, "--sql", "SELECT year / 'x' FROM pr_data_0_current_clean")
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ")
    code, _, err = run_sql("--state-dir", state, "--sql", "SELEC 1")
    assert code == 1 and err.startswith("error: Parser Error: syntax error") and err.count("\n") == 1
    code, _, err = run_sql("--state-dir", state, "--query", "best_year", "--data-file", "pr.data.9.Nope")
    assert code == 1 and "pr_data_9_nope_clean does not exist" in err and err.count("\n") == 1
    assert run_sql("--help")[0] == 0


def test_a_file_that_cannot_be_read_is_named_and_every_other_table_is_opened(tmp_path: Path) -> None:
    state = labeled_state(tmp_path)
    (state / "s3" / "datausa" / "population.json").unlink()
    code, out, err = run_sql("--state-dir", str(state), "--sql", "SELECT count(*) AS n FROM pr_data_0_current_labeled")
    assert code == 0 and "n\n" in out
    assert err.startswith("note: no table datausa_population: ") and "`make run`" in err
    code, _, err = run_sql("--state-dir", str(state), "--query", "population_stats")
    assert code == 1 and "datausa_population does not exist" in err.splitlines()[-1]


@pytest.mark.engine  # the runner's main() starts the engine
def test_on_a_real_local_runs_state_directory_the_sql_equals_the_reports_the_lambda_stored(bls, tmp_path: Path) -> None:
    """The whole way: the local runner mirrors the generated sample through the state machine, the Analytics Lambda
    writes reports/latest/, and the SQL on the state directory it leaves gives the same numbers as those files."""
    from local_runner.cli import main as run_locally
    from tests.conftest import tree_and_survey

    for name, body in {**sample_pr_files(), **MAPPING_FILES}.items():
        bls.put(name, body)
    state = tmp_path / "state"
    tree, survey = tree_and_survey(bls.url)
    assert run_locally(["--contact-email", "ops@example.com", "--source-url", tree, "--surveys", survey,
                        "--state-dir", str(state),
                        "--population-url", bls.root + "/tesseract/data.jsonrecords", "--allow-private-source",
                        "--retry-interval", "1", "--retry-attempts", "1",
                        "--source-requests-per-second", "50", "--population-requests-per-second", "50"]) == 0
    stored = {name: json.loads((state / "s3" / "reports" / "latest" / f"{name}.json").read_text(), parse_float=Decimal)
              for name in catalog.REPORT_QUERIES}
    got = sql_reports(state)

    stats = got["population_stats"][0]
    assert (Decimal(repr(stats["mean"])), Decimal(repr(stats["stddev"]))) == (
        stored["population_stats"][0]["mean"], stored["population_stats"][0]["stddev"])
    assert [(r["series_id"], r["year"], r["value"]) for r in got["best_year_by_series"]] == [
        (r["series_id"], r["year"], Decimal(r["value"])) for r in stored["best_year_by_series"]]
    assert [(r["year"], r["value"], r["population"]) for r in got["series_population"]] == [
        (r["year"], Decimal(r["value"]), r["Population"]) for r in stored["series_population"]]
    labeled = sql_command.connect(state).execute(
        "SELECT DISTINCT measure_text FROM pr_data_0_current_labeled WHERE series_id = 'PRS30006032'").fetchall()
    assert labeled == [("Hours worked",)]


def test_no_mirror_may_live_in_the_catalogs_folder() -> None:
    from bls_pipeline.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="catalog_prefix"):
        Settings(bucket="b", contact_email="a@b.org", mirror_prefix="catalog/pr/").validate()
