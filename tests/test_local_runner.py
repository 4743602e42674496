"""`python -m local_runner` as a user runs it: state kept on disk between runs, progress and a summary."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from local_runner.cli import main
from tests.bls_server import drip_then_stall
from tests.conftest import POPULATION_PATH, ROOT

FILES = {
    "pr.class": b"class\r\n" * 3,
    "pr.data.0.Current": b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\n"
    b"PRS30006032     \t2018\tQ01\t         1.9\t\r\nPRS30006032     \t2020\tQ01\t        -6.1\t\r\n",
    "pr.series": b"series\r\n" * 7,
}


def run(bls, state: Path, *extra: str) -> int:
    return main(["--contact-email", "ops@example.com", "--source-url", bls.url, "--state-dir", str(state),
                 "--population-url", bls.root + POPULATION_PATH,
                 "--retry-interval", "1", "--retry-attempts", "1", "--allow-private-source", *extra])


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_runs_are_incremental_and_the_mirror_is_on_disk(bls, tmp_path, capsys):
    for name, body in FILES.items():
        bls.put(name, body)
    state = tmp_path / "state"

    assert run(bls, state) == 0
    first = capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (state / "s3" / "bls" / "pr").iterdir()} == FILES
    assert "3 files listed: 3 to copy" in first
    assert "SUCCEEDED" in first and "copied 3" in first
    assert "Analytics     (SQS message) reports written" in first
    assert "  2018       1.9  327,167,439" in first and "  2020      -6.1  \n" in first
    assert (state / "s3" / "reports" / "latest" / "series_population.csv").read_text().splitlines() == [
        "series_id,year,period,value,Population", "PRS30006032,2018,Q01,1.9,327167439", "PRS30006032,2020,Q01,-6.1,",
    ]

    bls.reset_log()
    assert run(bls, state) == 0
    second = capsys.readouterr().out
    assert [r.path for r in bls.requests_for()] == [bls.base_path]
    assert "copied 0 (0 B), unchanged 3, deleted 0, failed 0" in second
    assert "Analytics     (state machine) reports written" in second
    assert "SQS message" not in second, "restoring the state directory must not look like a new population file"

    bls.put("pr.class", b"changed\r\n", dt.datetime(2026, 9, 1, 8, 30))
    bls.put("pr.footnote", b"new\r\n")
    bls.remove("pr.series")
    assert run(bls, state) == 0
    third = capsys.readouterr().out
    assert "copied 2" in third and "unchanged 1" in third and "deleted 1" in third
    on_disk = {p.name: p.read_bytes() for p in (state / "s3" / "bls" / "pr").iterdir()}
    assert on_disk == {"pr.class": b"changed\r\n", "pr.data.0.Current": FILES["pr.data.0.Current"], "pr.footnote": b"new\r\n"}


def test_an_unreachable_source_is_one_clear_line_a_non_zero_exit_and_no_change_to_state(bls, tmp_path, capsys):
    for name, body in FILES.items():
        bls.put(name, body)
    state = tmp_path / "state"
    assert run(bls, state) == 0
    before = snapshot(state)
    capsys.readouterr()

    code = main(["--contact-email", "ops@example.com", "--source-url", "http://127.0.0.1:9/pub/time.series/pr/",
                 "--state-dir", str(state), "--retry-interval", "1", "--retry-attempts", "1", "--allow-private-source"])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("error: TransientSourceError: cannot reach http://127.0.0.1:9/")
    assert snapshot(state) == before


def test_a_source_too_slow_for_the_function_timeout_leaves_the_mirror_on_disk_byte_identical(bls, tmp_path, capsys):
    for name, body in FILES.items():
        bls.put(name, body)
    state = tmp_path / "state"
    assert run(bls, state) == 0
    mirror = state / "s3" / "bls" / "pr"
    before = snapshot(mirror)
    bls.put("pr.series", b"series changed\r\n" * 50, dt.datetime(2026, 9, 1, 8, 30))
    bls.add_faults("pr.series", drip_then_stall(1.0, 3))
    capsys.readouterr()

    code = run(bls, state, "--function-timeout", "2", "--retry-attempts", "0")

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "CopyFailed" in err[0] and "pr.series" in err[0] and "source too slow" in err[0]
    assert snapshot(mirror) == before

    assert run(bls, state) == 0
    assert {p.name: p.read_bytes() for p in mirror.iterdir()} == {n: f.body for n, f in bls.files.items()}


def test_bad_flags_are_refused_before_anything_runs(tmp_path, capsys):
    assert main(["--contact-email", "not-an-email", "--state-dir", str(tmp_path / "s")]) == 2
    assert "is not an e-mail address" in capsys.readouterr().err
    assert main(["--contact-email", "a@b.org", "--source-url", "ftp://x/", "--state-dir", str(tmp_path / "s")]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err
    assert main(["--contact-email", "a@b.org", "--function-timeout", "0", "--state-dir", str(tmp_path / "s")]) == 2
    assert "--function-timeout must be more than 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_more_bad_input_is_refused_with_its_cause_and_nothing_changed(bls, tmp_path, capsys):
    state = tmp_path / "s"
    assert main(["--contact-email", "a@b.org\n", "--state-dir", str(state)]) == 2
    assert "is not an e-mail address" in capsys.readouterr().err
    assert main(["--contact-email", "a@b.org", "--input", "5", "--state-dir", str(state)]) == 2
    assert "--input must be a JSON object" in capsys.readouterr().err
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    assert main(["--contact-email", "a@b.org", "--state-dir", str(a_file)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert a_file.read_text() == "not a directory"

    state.mkdir()
    (state / "objects.json").write_text('{"bls/pr/pr.class": {"etag": ')  # cut short
    assert run(bls, state) == 2
    err = capsys.readouterr().err
    assert "objects.json is not a readable state index" in err and "left as it is" in err
    assert (state / "objects.json").read_text() == '{"bls/pr/pr.class": {"etag": '


def test_the_process_ends_with_main_s_status_after_its_output_and_prints_its_timings_when_asked(tmp_path):
    # __main__ ends the process with os._exit once everything is written: the status and every line must survive it.
    done = subprocess.run(
        [sys.executable, "-m", "local_runner", "--contact-email", "ops@example.com", "--source-url",
         "http://127.0.0.1:9/pub/time.series/pr/", "--state-dir", str(tmp_path / "state"), "--retry-interval", "1",
         "--retry-attempts", "1", "--allow-private-source", "--timings"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "FAILED" in done.stdout
    err = done.stderr.strip().splitlines()
    assert err[0].startswith("error: TransientSourceError: cannot reach http://127.0.0.1:9/")
    assert err[-1].startswith("timings: ")
    timings = json.loads(err[-1].removeprefix("timings: "))
    assert list(timings) == ["imports", "engine_start", "execution", "exit"]
    assert all(seconds >= 0 for seconds in timings.values())


def test_the_engine_starts_without_moto_s_ec2_backend_and_moto_batch_still_loads_when_used():
    script = (
        "import sys\n"
        "from local_runner.engine import LocalEngine\n"
        "with LocalEngine({'ContactEmail': 'ops@example.com'}):\n"
        "    assert 'moto.ec2' not in sys.modules, 'moto.batch ran its __init__: the start pays for EC2 again'\n"
        "    import boto3\n"
        "    assert boto3.client('batch', region_name='us-east-1').describe_job_queues()['jobQueues'] == []\n"
        "    from moto.batch import batch_backends\n"
        "    assert 'moto.ec2' in sys.modules and batch_backends\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
