"""The SQL catalog against a hostile or odd tree, through the real state machine and `make sql`: no file name,
header or survey can take over another survey's tables, stop the catalog, overflow Glue's names or outlive its file.

Each scenario is one more run of the local runner on the same state directory (as a user's daily runs), and after
each: the run's exit status, the Glue tables the run kept (glue-tables.json), every symlink manifest reading only its
own survey's folder, and `make sql --query best_year` giving pr's report, the same before and after (on the real pr
files when ../shared is present: 237 series)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("duckdb", reason="DuckDB is in requirements-sql.txt (part of requirements-dev.txt)")

from bls_loopback.population import POPULATION_PATH, population_json  # noqa: E402
from bls_loopback.sample import sample_pr_files  # noqa: E402
from bls_loopback.server import BlsTree  # noqa: E402
from bls_pipeline import catalog  # noqa: E402
from local_runner import sql as sql_command  # noqa: E402
from local_runner.cli import main as run_main  # noqa: E402
from tests.conftest import REAL_DATA  # noqa: E402

pytestmark = pytest.mark.engine  # its one test mirrors through `python -m local_runner`'s main()

REAL_PR = REAL_DATA / "bls_pr_2026-08-06"


def pr_files() -> dict[str, bytes]:
    if REAL_PR.is_dir():
        return {p.name: p.read_bytes() for p in sorted(REAL_PR.glob("pr.*"))}
    return sample_pr_files()


def run(tree: BlsTree, state: Path, surveys: str) -> int:
    return run_main(["--contact-email", "ops@example.com", "--source-url", tree.url, "--surveys", surveys,
                     "--state-dir", str(state), "--population-url", tree.root + POPULATION_PATH,
                     "--retry-interval", "1", "--retry-attempts", "1", "--allow-private-source",
                     "--source-requests-per-second", "1000", "--population-requests-per-second", "1000"])


def glue_tables(state: Path) -> dict[str, dict]:
    return {t["Name"]: t for t in json.loads((state / "glue-tables.json").read_text())["bls_mirror"]}


def best_year(state: Path) -> list[str]:
    out = io.StringIO()
    assert sql_command.main(["--state-dir", str(state), "--query", "best_year", "--limit", "0"], out=out) == 0
    return out.getvalue().splitlines()


def assert_every_table_reads_only_its_own_survey(state: Path) -> None:
    objects = state / "s3"
    for name, table in glue_tables(state).items():
        if table.get("TableType") != "EXTERNAL_TABLE" or name == catalog.POPULATION_TABLE:
            continue
        manifest = objects / catalog.manifest_key(name)
        uris = manifest.read_text().splitlines()
        assert len(uris) == 1, (name, uris)
        key = uris[0].split("/", 3)[3]
        survey, file_name = key.removeprefix("bls/").split("/")
        assert catalog.table_name(survey, file_name) == name, (name, key)


@pytest.fixture
def tree():
    with BlsTree() as server:
        server.route(POPULATION_PATH, population_json())
        for name, body in pr_files().items():
            server.survey("pr").put(name, body)
        yield server


def test_no_survey_file_or_header_can_break_hijack_or_outlive_the_catalog(tree, tmp_path, capsys) -> None:
    state = tmp_path / "state"
    assert run(tree, state, "pr") == 0
    expected = best_year(state)
    if REAL_PR.is_dir():
        assert expected[-1] == "(237 rows)"
    data = pr_files()["pr.data.0.Current"]

    # Surveys whose names normalise like pr's: each gets tables of its own, and pr keeps its own.
    for odd in ("pr-", "pr_", "pr."):
        tree.survey(odd).put(f"{odd}.data.0.Current", data.splitlines(keepends=True)[0] + data.splitlines(keepends=True)[1])
        tree.survey(odd).put(f"{odd}.series", b"series_id\tseries_title\r\nX\tOne\r\n")
    assert run(tree, state, "pr,pr-,pr_,pr.") == 0
    tables = glue_tables(state)
    assert {"spr_2d__data_0_current", "spr_5f__data_0_current", "spr_2e__data_0_current"} <= set(tables)
    assert_every_table_reads_only_its_own_survey(state)
    assert best_year(state) == expected

    # Inside one survey: case and ./_ collisions, odd headers, a name longer than Glue allows.
    long_name = "pr." + "x" * 249  # 252 bytes: its views would be 258
    pr = tree.survey("pr")
    pr.put("pr.SERIES", b"series_id\tnothing\r\nZ\tz\r\n")
    pr.put("pr.data.0_Current", b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\nPRSX\t2019\tQ01\t1\t\r\n")
    pr.put("pr.odd", b"code\t\tfrom\tselect\tCode\torder group\r\n1\t2\t3\t4\t5\t6\r\n")
    pr.put(long_name, b"code\ttext\r\n1\tone\r\n")
    capsys.readouterr()
    assert run(tree, state, "pr,pr-,pr_,pr.") == 0
    printed = capsys.readouterr().out
    tables = glue_tables(state)
    columns = [c["Name"] for c in tables["pr_odd"]["StorageDescriptor"]["Columns"]]
    assert columns == ["code", "column_2", "column_3", "column_4", "column_5", "order_group"]
    long_table = catalog.table_name("pr", long_name)
    assert long_table in tables and all(len(n.encode()) <= 255 for n in tables)
    assert [c["Name"] for c in tables["pr_series"]["StorageDescriptor"]["Columns"]][0] == "series_id"
    manifest = (state / "s3" / catalog.manifest_key("pr_series")).read_text()
    assert manifest.endswith("/bls/pr/pr.series\n") and "pr.SERIES" not in manifest
    assert "pr.data.0_Current" not in (state / "s3" / catalog.manifest_key("pr_data_0_current")).read_text()
    assert "warning: pr: 'pr.odd': column 3 'from' is a reserved word: named column_3" in printed
    manifests = sorted((state / "s3" / "pipeline" / "runs").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    warnings = json.loads(manifests[-1].read_text())["catalog"]["warnings"]["pr"]
    assert "'pr.SERIES': no table: it would take the name pr_series, which 'pr.series' has" in warnings
    assert "'pr.data.0_Current': no table: it would take the name pr_data_0_current, which 'pr.data.0.Current' has" \
        in warnings
    assert_every_table_reads_only_its_own_survey(state)
    assert best_year(state) == expected
    out = io.StringIO()
    assert sql_command.main(["--state-dir", str(state), "--sql", 'SELECT "column_3", "order_group" FROM pr_odd_clean'],
                            out=out) == 0
    assert "3" in out.getvalue() and "6" in out.getvalue()

    # A file that stops being a table, and a pruned file: their tables and views go, with their manifests.
    pr.put("pr.odd", b"This file is now documentation.\r\n")
    pr.remove(long_name)
    assert run(tree, state, "pr,pr-,pr_,pr.") == 0
    tables = glue_tables(state)
    assert not {"pr_odd", "pr_odd_clean", long_table, long_table + "_clean"} & set(tables)
    assert not (state / "s3" / catalog.manifest_key("pr_odd")).exists()
    assert_every_table_reads_only_its_own_survey(state)
    assert best_year(state) == expected
