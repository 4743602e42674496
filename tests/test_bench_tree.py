"""The bench's tree section (issue 17) on a tiny tree: 3 surveys, 12 files of a few hundred bytes to a few hundred
KB. It needs the bench's S3 server (SeaweedFS's `weed`, from bench/requirements.txt) and is skipped without it;
rclone runs too when it is installed. Checks what the section counts, not how fast anything is."""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.source import USER_AGENT, GeneratedBody
from bench.tree import start_tree
from bench.tree_layout import tree_layout

BENCH_BIN = Path(__file__).resolve().parent.parent / "bench" / ".venv" / "bin"


def _found(name: str) -> str | None:
    for candidate in (Path(sys.executable).with_name(name), BENCH_BIN / name):
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def _get(url: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


def test_the_tree_streams_generated_bodies_and_counts_each_kind_of_request():
    layout = tree_layout(surveys=3, files=12, scale=0.001)
    tree, population = start_tree(layout, latency=0.0, bandwidth=None)
    try:
        first = layout[0]
        body = tree.surveys[first.survey].files[first.name].body
        assert isinstance(body, GeneratedBody) and len(body) == first.size
        assert f'HREF="/pub/time.series/{first.survey}/"' in _get(tree.url).decode()
        assert first.name in _get(f"{tree.url}{first.survey}/").decode()
        assert _get(f"{tree.url}{first.survey}/{first.name}", "HEAD") == b""
        assert _get(f"{tree.url}{first.survey}/{first.name}") == b"".join(body.chunks())
        deadline = time.monotonic() + 2  # the server counts a chunk once its write returns, maybe after we read it
        while tree.request_counts()["bytes"] < first.size and time.monotonic() < deadline:
            time.sleep(0.01)
        counts = tree.request_counts()
        assert counts == {"tree_listing": 1, "survey_listing": 1, "head": 1, "get": 1, "other": 0,
                          "bytes": first.size, "refused": 0}
        changed = tree.change_one_file()
        survey, name = changed.split("/")
        assert tree.expected()[changed].size == len(tree.surveys[survey].files[name].body)
    finally:
        tree.stop()
        population.stop()


@pytest.mark.engine  # the bench runs the pipeline in child processes (python -m bench.pipeline_run)
@pytest.mark.skipif(_found("weed") is None, reason="SeaweedFS (bench/requirements.txt) is not installed")
def test_the_harness_reports_the_counts_of_a_tiny_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{BENCH_BIN}:{Path(_found('weed')).parent}:{os.environ['PATH']}")
    from bench.report import tree_lines
    from bench.s3_endpoint import Destination, without_ca_bundle
    from bench.tree import measure

    without_ca_bundle()
    contenders = ("pipeline", "rclone") if _found("rclone") else ("pipeline",)
    destination = Destination(tmp_path / "seaweedfs").start()
    try:
        result = measure(destination, "quick", rate=1000.0, repeat=1, scale=0.001, latency=0.0, bandwidth=None,
                         concurrency=4, timeout=300, log=print, surveys=3, files=12, contenders=contenders)
    finally:
        destination.stop()
    assert (result.surveys, result.files) == (3, 12)
    for run in result.runs:
        assert not run.failure and run.correct, (run.contender, run.scenario, run.failure, run.checked)
        assert run.source["tree_listing"] == 1 and run.source["survey_listing"] == 3
        assert run.source["refused"] == 0
    pipeline = {r.scenario: r for r in result.runs if r.contender == "pipeline"}
    assert pipeline["cold"].source["get"] == 12 and pipeline["cold"].source["bytes"] == result.total_bytes
    # The no-op: the tree listing and one listing per survey, nothing else.
    assert pipeline["noop"].source == {"tree_listing": 1, "survey_listing": 3, "head": 0, "get": 0, "other": 0,
                                       "bytes": 0, "refused": 0}
    assert pipeline["changed"].source["get"] == 1
    # The odd headers (bench/tree_layout.py) went through the catalog step: it ran, and its time is measured.
    assert set(result.hostile.values()) <= {f"{f.survey}/{f.name}" for f in tree_layout(surveys=3, files=12)}
    assert len(result.hostile) == 3 and all(run.catalog_seconds and run.catalog_calls[0] >= 1
                                            for run in pipeline.values())
    for run in pipeline.values():
        assert run.s3["requests"] > 0
        largest = max(run.detail["payloads"]["largest_bytes"], run.detail["map_item_payloads"]["largest_output_bytes"])
        assert 0 < largest < 16 * 1024
    if "rclone" in contenders:
        rclone = {r.scenario: r for r in result.runs if r.contender == "rclone"}
        assert rclone["noop"].source["head"] == 12 and rclone["noop"].source["get"] == 0
    text = "\n".join(tree_lines(result))
    assert "| noop | pipeline |" in text and "largest state payload" in text


# -- the tree's headers, and how a run that did not succeed and the catalog step are reported (nothing timed) -------

def test_every_tree_has_the_three_odd_headers_and_real_first_lines_elsewhere():
    import bench.tree_layout as tree_layout_module
    from bench.tree_layout import DATA_HEADER, HOSTILE_HEADERS, hostile_files, kind_of

    for size in ({}, {"surveys": 3, "files": 12, "scale": 0.001}, {"surveys": 1, "files": 4}):
        layout = tree_layout(**size)
        odd = hostile_files(layout)
        assert list(odd) == list(HOSTILE_HEADERS)
        by_path = {f"{f.survey}/{f.name}": f for f in layout}
        columns = {what: by_path[path].header.rstrip("\r\n").split("\t") for what, path in odd.items()}
        trailing, repeated, reserved = columns.values()
        assert trailing[-1] == "" and "footnote_codes" in trailing
        assert len(repeated) != len(set(repeated))
        assert "from" in reserved
        for item in layout:
            assert item.header.endswith("\r\n") and item.size >= len(item.header)
            kind = kind_of(item.survey, item.name)
            assert ("\t" in item.header) == (kind != "doc")
            if kind == "data" and f"{item.survey}/{item.name}" not in odd.values():
                assert item.header == DATA_HEADER
    assert "trailing tab" in tree_layout_module.__doc__ and "reserved word" in tree_layout_module.__doc__


def test_a_body_with_a_header_serves_the_same_bytes_whole_and_in_ranges():
    header = b"a_code\ta_text\r\n"
    body = GeneratedBody((1 << 20) + 500, seed=5, header=header)
    whole = b"".join(body.chunks())
    assert len(whole) == len(body) and whole.startswith(header) and whole[len(header):len(header) + 8] == bytes(8)
    for start, stop in ((0, 5), (3, 40), (len(header), len(header) + 9), (10, (1 << 20) + 30), (1 << 20, len(body))):
        assert b"".join(body[start:stop].chunks()) == whole[start:stop]
    assert b"".join(GeneratedBody(100, seed=5).chunks()) == b"".join(GeneratedBody(100 + 15, 5, header=header)[15:].chunks())


def test_catalog_surveys_time_is_summed_over_its_calls():
    import datetime as dt

    from bench.pipeline_run import state_seconds, state_spans

    at = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

    def event(kind: str, name: str, second: float) -> dict:
        details = "stateEnteredEventDetails" if kind.endswith("Entered") else "stateExitedEventDetails"
        return {"type": kind, details: {"name": name}, "timestamp": at + dt.timedelta(seconds=second)}

    history = [event("TaskStateEntered", "CopyFiles", 0), event("TaskStateExited", "CopyFiles", 10),
               event("TaskStateEntered", "CatalogSurveys", 10), event("TaskStateExited", "CatalogSurveys", 40),
               event("ChoiceStateEntered", "CatalogRemaining", 40), event("ChoiceStateExited", "CatalogRemaining", 40),
               event("TaskStateEntered", "CatalogSurveys", 40), event("TaskStateExited", "CatalogSurveys", 52.5)]
    assert state_spans(history)["CatalogSurveys"] == [30.0, 12.5]
    assert state_seconds(history) == {"CopyFiles": 10.0, "CatalogSurveys": 42.5, "CatalogRemaining": 0.0}


def _tree_result(runs):
    from bench.tree import TreeResult

    return TreeResult(mode="quick", rate=50.0, scale=1 / 16, surveys=60, files=3000, total_bytes=469_500_000,
                      largest=[("ce/ce.data.0.AllCESSeries", 21_900_000)], repeat=1, latency=0.05, bandwidth=None,
                      concurrency=4, rclone_flags=["--tpslimit", "50"], runs=runs,
                      hostile={"trailing tab (an empty last column name)": "ap/ap.data.0.Part000"})


def _counts(gets: int) -> dict:
    return {"tree_listing": 1, "survey_listing": 60, "head": 0, "get": gets, "other": 0, "bytes": 12_345, "refused": 0}


def test_a_pipeline_run_that_did_not_succeed_is_an_error_row_with_its_cause_and_no_numbers():
    from bench.report import failures, Results, tree_lines
    from bench.tree import TreeRun

    failed = TreeRun("pipeline", "cold", all_seconds=[float("nan")], source=_counts(2999), peak_per_second=17,
                     s3={"requests": 20_987, "operations": {"GetObject": 10_000}}, correct=False,
                     failure="pipeline execution FAILED: CatalogError: '' has no letter or digit to name a table")
    text = "\n".join(tree_lines(_tree_result([failed])))
    row = next(line for line in text.splitlines() if line.startswith("| cold | pipeline |"))
    assert "**ERROR**: pipeline execution FAILED: CatalogError" in row and row.endswith("**NO** |")
    assert "20,987" not in row and "2,999" not in row and "17" not in row.split("CatalogError")[0]
    header = next(line for line in text.splitlines() if line.startswith("| scenario | contender |"))
    assert row.count("|") == header.count("|")  # the row has every column, empty but the cause's and correct's
    assert "**ERROR: pipeline cold did not succeed**" in text
    assert "trailing tab (an empty last column name) in `ap/ap.data.0.Part000`" in text
    results = Results(mode="quick", setup={}, machine={}, tree=_tree_result([failed]))
    assert failures(results) == [f"tree cold pipeline: {failed.failure}"]


def test_the_tree_report_shows_the_catalog_steps_share_of_the_cold_run():
    from bench.report import tree_lines
    from bench.tree import TreeRun

    detail = {"payloads": {"by_state": {}, "largest_state": "Analytics", "largest_bytes": 2_583},
              "state_seconds": {"CopyFiles": 226.4, "CatalogSurveys": 80.5}, "state_calls": {"CatalogSurveys": 2},
              "output": {"catalog": {"surveys": 60, "tables_created": 1200, "views": 1200, "failures": 0, "warnings": 3,
                                     "warning_samples": ["ap: ap.series: column 7 'from' is a reserved word"]}}}
    cold = TreeRun("pipeline", "cold", all_seconds=[352.9], source=_counts(3000), peak_per_second=18,
                   s3={"requests": 21_102, "operations": {"GetObject": 10_630}}, checked="3,000 objects' sizes",
                   detail=detail, state_seconds=[350.6], catalog_seconds=[80.5], catalog_calls=[2])
    text = "\n".join(tree_lines(_tree_result([cold])))
    header = next(line for line in text.splitlines() if line.startswith("| scenario | contender |"))
    row = next(line for line in text.splitlines() if line.startswith("| cold | pipeline |"))
    assert "of which CatalogSurveys (median; calls)" in header and row.count("|") == header.count("|")
    assert "| 80.5 s; 2 |" in row
    assert "cold 80.5 s in 2 call(s): 23% of the execution (350.6 s), 23% of the whole process (352.9 s)" in text
    assert "0 failure(s), 3 warning(s): `ap: ap.series: column 7 'from' is a reserved word`" in text


def test_a_pipeline_execution_that_did_not_succeed_raises_with_its_cause(monkeypatch):
    import json
    import subprocess

    from bench.contenders import ContenderFailed, Pipeline

    answer = {"status": "FAILED", "error": "CatalogError", "cause": "'' has no letter or digit"}
    pipeline = Pipeline.__new__(Pipeline)
    pipeline.source = pipeline.population = type("Url", (), {"url": "http://127.0.0.1:1/pub/time.series/",
                                                             "root": "http://127.0.0.1:1"})()
    pipeline.destination = type("Dest", (), {"url": "http://127.0.0.1:2"})()
    pipeline.concurrency, pipeline.timeout, pipeline.surveys = 4, 10, "*"
    pipeline.requests_per_second, pipeline.range_streams, pipeline.recursion_limit = 50.0, 1, None
    monkeypatch.setattr(Pipeline, "_run", lambda self, command, env=None: (
        1.0, subprocess.CompletedProcess(command, 0, json.dumps(answer) + "\n", "")))
    with pytest.raises(ContenderFailed, match="pipeline execution FAILED: CatalogError: '' has no letter") as raised:
        pipeline.sync("bucket")
    assert raised.value.detail["status"] == "FAILED"
    monkeypatch.setattr(Pipeline, "_run", lambda self, command, env=None: (
        1.0, subprocess.CompletedProcess(command, 0, "", "Traceback: boom")))
    with pytest.raises(ContenderFailed, match="printed no execution result.*boom"):
        pipeline.sync("bucket")


# -- the bench's S3 server takes free ports only ----------------------------------------------------------------------

def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (Linux's /proc)."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            sockets.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in sockets:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(_found("weed") is None, reason="SeaweedFS (bench/requirements.txt) is not installed")
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux's /proc")
def test_seaweedfs_listens_only_on_free_ports_it_chose_and_starts_again_on_others_when_one_was_taken(tmp_path,
                                                                                                     monkeypatch):
    import socket

    import bench.s3_endpoint as s3_endpoint

    monkeypatch.setenv("PATH", f"{Path(_found('weed')).parent}:{os.environ['PATH']}")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()  # another process's server, on the port the first start is given for its master
    chosen, free_ports = [], s3_endpoint.free_ports

    def first_one_taken(count: int) -> list[int]:
        ports = free_ports(count)
        if not chosen:
            ports[0] = taken.getsockname()[1]
        chosen.append(ports)
        return ports

    monkeypatch.setattr(s3_endpoint, "free_ports", first_one_taken)
    server = s3_endpoint.SeaweedFS(tmp_path / "seaweedfs")
    try:
        server.start()
        assert len(chosen) == 2 and taken.getsockname()[1] not in server.ports.values()
        assert set(server.ports) == set(s3_endpoint.LISTENERS) and len(set(server.ports.values())) == len(server.ports)
        assert _listening_ports(server.process.pid) == set(server.ports.values())  # no default port (8333, 8181, ...)
    finally:
        server.stop()
        taken.close()


def test_a_seaweedfs_start_that_keeps_losing_a_port_gives_up_after_its_attempts(monkeypatch, tmp_path):
    import bench.s3_endpoint as s3_endpoint

    tries = []

    def clash(self) -> None:
        tries.append(1)
        raise s3_endpoint.PortClash("taken")

    monkeypatch.setattr(s3_endpoint.SeaweedFS, "_start_once", clash)
    with pytest.raises(s3_endpoint.PortClash):
        s3_endpoint.SeaweedFS(tmp_path / "seaweedfs").start()
    assert len(tries) == s3_endpoint.START_ATTEMPTS
