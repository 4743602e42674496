"""`python -m bench` writes the committed bench/RESULTS.md only when asked (--write-results). The bench's main() runs
here for real, on its cheapest section (imports) with the measurement itself, the machine facts and the deadline
stubbed: nothing is timed, no server starts."""

from __future__ import annotations

import pytest

import bench.__main__ as bench_main
from bench.imports import ImportTime
from bench.report import tree_heading

COMMITTED = "# Benchmark results\n\ncommitted numbers, tabs\tand all\n\n## Caveats\n\n* one\n"


@pytest.fixture
def cheap_bench(tmp_path, monkeypatch):
    """RESULTS.md and .last-run.md in tmp_path; the imports section measures nothing; no deadline thread."""
    results, last_run = tmp_path / "RESULTS.md", tmp_path / ".last-run.md"
    results.write_text(COMMITTED, encoding="utf-8")
    monkeypatch.setattr(bench_main, "RESULTS", results)
    monkeypatch.setattr(bench_main, "LAST_RUN", last_run)
    monkeypatch.setattr(bench_main, "start_deadline", lambda minutes: None)
    monkeypatch.setattr(bench_main, "rclone_version", lambda: "rclone v0 (stub)")
    monkeypatch.setattr(bench_main, "machine_facts", lambda: {"date": "2026-12-01 00:00", "seaweedfs": "stub"})
    monkeypatch.setattr(bench_main.imports, "measure_handlers",
                        lambda runs: [ImportTime("bls_pipeline.handlers.stub", 12.0, 11.0, runs)])
    monkeypatch.setattr(bench_main.imports, "measure_references", lambda runs: [])
    return results, last_run


def test_a_run_without_write_results_leaves_results_md_byte_identical(cheap_bench, capsys):
    results, last_run = cheap_bench
    before = results.read_bytes()
    assert bench_main.main(["--quick", "--only", "imports"]) == 0
    assert results.read_bytes() == before
    written = last_run.read_text(encoding="utf-8")
    assert "bls_pipeline.handlers.stub" in written and "committed numbers" not in written
    out = capsys.readouterr().out
    assert f"wrote {last_run}" in out and f"{results} was left as it was" in out


def test_a_run_with_write_results_writes_results_md(cheap_bench):
    results, last_run = cheap_bench
    assert bench_main.main(["--quick", "--only", "imports", "--write-results"]) == 0
    written = results.read_text(encoding="utf-8")
    assert "bls_pipeline.handlers.stub" in written and "committed numbers" not in written
    assert not last_run.exists()


def test_output_names_any_path_and_leaves_results_md_alone(cheap_bench, tmp_path):
    results, last_run = cheap_bench
    elsewhere = tmp_path / "elsewhere.md"
    assert bench_main.main(["--quick", "--only", "imports", "--output", str(elsewhere)]) == 0
    assert "bls_pipeline.handlers.stub" in elsewhere.read_text(encoding="utf-8")
    assert results.read_text(encoding="utf-8") == COMMITTED and not last_run.exists()
    with pytest.raises(SystemExit):  # one place or the other, not both
        bench_main.build_parser().parse_args(["--write-results", "--output", str(elsewhere)])


def test_a_partial_run_without_write_results_splices_into_a_copy(cheap_bench, monkeypatch):
    """A run of only the spliced sections (here the tree, failing at once) writes RESULTS.md's text with that section
    rewritten to .last-run.md, and RESULTS.md stays as it was."""
    results, last_run = cheap_bench

    def no_tree(*args, **kwargs):
        raise RuntimeError("no tree today")

    monkeypatch.setattr(bench_main.tree, "measure", no_tree)
    monkeypatch.setattr(bench_main, "Destination", _NoServer)
    monkeypatch.setattr(bench_main, "start_source", lambda latency, bandwidth: _NoServer())
    assert bench_main.main(["--quick", "--only", "tree"]) == 1  # a failed section fails the run
    assert results.read_text(encoding="utf-8") == COMMITTED
    copy = last_run.read_text(encoding="utf-8")
    assert "committed numbers, tabs\tand all" in copy
    assert tree_heading("quick") in copy and "no tree today" in copy


def test_a_smaller_tree_never_goes_into_results_md(cheap_bench):
    with pytest.raises(SystemExit):
        bench_main.main(["--quick", "--only", "tree", "--tree-surveys", "3", "--tree-files", "12", "--write-results"])


class _NoServer:
    def __init__(self, *args):
        pass

    def start(self):
        return self

    def stop(self):
        pass
