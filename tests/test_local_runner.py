"""`python -m local_runner` as a user runs it: state kept on disk between runs, progress and a summary."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from local_runner.cli import main
from local_runner.moto_patches import speed_patches_on
from bls_loopback.population import POPULATION_PATH
from bls_loopback.server import drip_then_stall
from bls_loopback.population import population_json
from bls_loopback.server import BlsTree
from tests.conftest import ROOT, tree_url

# The runner as a user runs it: its main() or its process starts the engine (the few tests that are refused before
# it starts are engine too).
pytestmark = pytest.mark.engine

FILES = {
    "pr.class": b"class\r\n" * 3,
    "pr.data.0.Current": b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\n"
    b"PRS30006032     \t2018\tQ01\t         1.9\t\r\nPRS30006032     \t2020\tQ01\t        -6.1\t\r\n",
    "pr.series": b"series\r\n" * 7,
}


def run(bls, state: Path, *extra: str) -> int:
    return main(["--contact-email", "ops@example.com", "--source-url", tree_url(bls), "--state-dir", str(state),
                 "--population-url", bls.root + POPULATION_PATH,
                 "--retry-interval", "1", "--retry-attempts", "1", "--allow-private-source",
                 "--source-requests-per-second", "50", "--population-requests-per-second", "50", *extra])


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
    assert first.startswith("Run local-")
    assert "Analytics       (SQS message) reports written" in first
    assert "CatalogSurveys  SQL catalog of 1 survey: built pr: 1 table created" in first
    assert "  2018       1.9  327,167,439" in first and "  2020      -6.1  \n" in first
    assert (state / "s3" / "reports" / "latest" / "series_population.csv").read_text().splitlines() == [
        "series_id,year,period,value,Population", "PRS30006032,2018,Q01,1.9,327167439", "PRS30006032,2020,Q01,-6.1,",
    ]

    bls.reset_log()
    assert run(bls, state) == 0
    second = capsys.readouterr().out
    assert [r.path for r in bls.requests_for()] == [bls.base_path]
    assert "copied 0 (0 B), unchanged 3, deleted 0, failed 0" in second
    assert "Analytics       (state machine) no new reports: neither input changed since the reports of run local-" in second
    assert "SQS message" not in second, "restoring the state directory must not look like a new population file"
    assert "Reports unchanged: " in second and "US population" not in second
    assert "CatalogSurveys  SQL catalog of 1 survey: tables unchanged" in second  # Glue's tables kept in the state
    kept = {t["Name"] for t in json.loads((state / "glue-tables.json").read_text())["bls_mirror"]}
    assert {"pr_data_0_current", "datausa_population"} <= kept
    assert len(list((state / "s3" / "reports").iterdir())) == 2, "one run's folder and latest/: no folder for a no-op"

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

    code = main(["--contact-email", "ops@example.com", "--source-url", "http://127.0.0.1:9/pub/time.series/",
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
    assert main(["--contact-email", "a@b.org", "--surveys", "pr,PR", "--state-dir", str(tmp_path / "s")]) == 2
    assert "not a survey name: 'PR'" in capsys.readouterr().err
    old_style = "https://download.bls.gov/pub/time.series/ce/"  # the flag's meaning before --surveys
    assert main(["--contact-email", "a@b.org", "--source-url", old_style, "--state-dir", str(tmp_path / "s")]) == 2
    assert "--source-url and --surveys ce" in capsys.readouterr().err
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


def test_a_file_bls_re_dates_without_changing_it_is_downloaded_once_not_on_every_later_run(bls, tmp_path, capsys):
    for name, body in FILES.items():
        bls.put(name, body)
    state = tmp_path / "state"
    assert run(bls, state) == 0
    bls.put("pr.class", FILES["pr.class"], dt.datetime(2026, 9, 3, 8, 30))  # a release: new date, same bytes
    assert run(bls, state) == 0
    assert "1 to copy" in capsys.readouterr().out

    bls.reset_log()
    assert run(bls, state) == 0

    out = capsys.readouterr().out
    assert "0 to copy" in out and "copied 0 (0 B), unchanged 3" in out
    assert [r.path for r in bls.requests_for()] == [bls.base_path]


CE_FILES = {"ce.series": b"series_id\tsupersector_code\r\n", "ce.data.0.AllCESSeries": b"series_id\tyear\r\n"}


def test_another_survey_is_mirrored_and_the_pr_reports_say_in_one_line_why_they_are_not_made(tmp_path, capsys):
    with BlsTree() as tree:
        tree.route(POPULATION_PATH, population_json())
        for name, body in CE_FILES.items():
            tree.survey("ce").put(name, body)
        for state in (tmp_path / "fresh", tmp_path / "with-pr"):
            if state.name == "with-pr":
                for name, body in FILES.items():
                    tree.survey("pr").put(name, body)
                assert run(tree.survey("pr"), state) == 0
                capsys.readouterr()

            code = run(tree.survey("ce"), state, "--surveys", "ce")

            captured = capsys.readouterr()
            assert code == 0, captured.err
            assert captured.err == ""
            assert "Traceback" not in captured.out and "US population" not in captured.out
            skipped = [line for line in captured.out.splitlines() if line.startswith("Analytics")]
            assert len(skipped) == 1, skipped
            if state.name == "fresh":
                assert "no new reports: no s3://" in skipped[0] and "bls/pr/pr.data.0.Current" in skipped[0]
            else:  # pr's mirror is still there, unchanged: so are the reports
                assert "no new reports: neither input changed since the reports of run " in skipped[0]
                assert {p.name for p in (state / "s3" / "bls" / "pr").iterdir()} == set(FILES)
            assert {p.name: p.read_bytes() for p in (state / "s3" / "bls" / "ce").iterdir()} == CE_FILES


def test_analytics_failing_on_the_queue_path_is_a_non_zero_exit(bls, tmp_path, capsys):
    bls.put("pr.data.0.Current", b"no\ta BLS data file\r\n")  # "not" would be a reserved column

    code = run(bls, tmp_path / "state")

    captured = capsys.readouterr()
    assert code == 1
    assert "Analytics       (SQS message) failed: AnalyticsInputError: the data file's header" in captured.out
    assert "Traceback" not in captured.out
    assert captured.err.startswith("error: the analytics function failed on the population queue message")


def test_a_failed_run_shows_what_it_copied_and_no_earlier_reports(bls, tmp_path, capsys):
    files = {f"pr.file.{i}": f"file {i}\r\n".encode() for i in range(4)}
    for name, body in {**FILES, **files}.items():
        bls.put(name, body)
    state = tmp_path / "state"
    assert run(bls, state) == 0
    for name in [*FILES, "pr.file.0", "pr.file.1"]:
        bls.remove(name)  # 5 of the 7 mirrored files gone: more than the prune guard's 50 %
    bls.put("pr.file.9", b"new\r\n")
    capsys.readouterr()

    code = run(bls, state)

    captured = capsys.readouterr()
    assert code == 1 and "PruneGuardError" in captured.err
    # The guard refused pr's deletions; its copy stands, and the run went on to the end before failing.
    assert "FAILED in " in captured.out and "copied 1 (5 B), unchanged 2, deleted 0, failed 0" in captured.out
    assert "surveys failed 1 of 1" in captured.out
    assert "nothing was changed" not in captured.out
    assert "US population" not in captured.out and "Reports" not in captured.out
    assert (state / "s3" / "bls" / "pr" / "pr.file.9").read_bytes() == b"new\r\n"


def test_retries_are_short_lines_that_say_retrying_and_bad_rows_are_one_summary_line(bls, tmp_path, capsys):
    from bls_loopback.server import status

    data = FILES["pr.data.0.Current"] + b"PRS30006032     \t20x8\tQ01\t1.0\t\r\n"
    for name, body in {**FILES, "pr.data.0.Current": data}.items():
        bls.put(name, body)
    bls.add_faults("pr.class", status(503), status(503))

    assert run(bls, tmp_path / "state", "--retry-attempts", "2") == 0

    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "pr.class" in line]
    assert lines[0].startswith("CopyFiles       pr/pr.class: attempt 1 of 3 failed (TransientSourceError: ")
    assert lines[0].endswith("; retrying") and len(lines[0]) < 180
    assert lines[1] == "CopyFiles       pr/pr.class: attempt 2 of 3 failed (the same error); retrying"
    assert "Skipped 1 bad row of the data file (lines 4)" in out
    assert '"level"' not in out and "{" not in out


def test_the_contact_email_error_names_the_flag(tmp_path, capsys):
    assert main(["--contact-email", "nobody", "--state-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--contact-email" in err and "CONTACT_EMAIL" not in err


def test_state_files_get_the_permissions_the_umask_gives(bls, tmp_path):
    for name, body in FILES.items():
        bls.put(name, body)
    previous = os.umask(0o022)
    try:
        assert run(bls, tmp_path / "state") == 0
    finally:
        os.umask(previous)
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "state").rglob("*") if p.is_file()}
    assert modes == {"0o644"}


def _interruptible() -> None:
    """A child started from a background job inherits an ignored SIGINT; Ctrl-C must reach it as at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_the_files_already_copied_without_a_traceback(bls, tmp_path):
    files = {f"pr.file.{i:02d}": f"file {i}\r\n".encode() for i in range(12)}
    for name, body in {**FILES, **files}.items():
        bls.put(name, body)
    state = tmp_path / "state"
    project = Path(__file__).resolve().parents[1]
    runner = subprocess.Popen(
        [sys.executable, "-m", "local_runner", "--contact-email", "ops@example.com", "--source-url", tree_url(bls),
         "--state-dir", str(state), "--population-url", bls.root + POPULATION_PATH, "--allow-private-source",
         "--source-requests-per-second", "4", "--concurrency", "1"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible,
    )
    try:
        for line in runner.stdout:
            if line.startswith("CopyFiles") and "3/15 files" in line:
                runner.send_signal(signal.SIGINT)
                break
        out, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert runner.returncode == 130, err
    assert "Traceback" not in err
    assert "Interrupted after" in out and "copied so far are kept" in out
    kept = {p.name for p in (state / "s3" / "bls" / "pr").iterdir()}
    assert len(kept) >= 3

    assert run(bls, state) == 0
    assert {p.name for p in (state / "s3" / "bls" / "pr").iterdir()} == {*FILES, *files}


def test_the_offline_server_of_the_readme_serves_a_sample_the_runner_mirrors(tmp_path, capsys):
    from bls_loopback.sample import sample_pr_files

    project = Path(__file__).resolve().parents[1]
    server = subprocess.Popen([sys.executable, "-m", "bls_loopback", "--port", "0", "--max-requests-per-second", "0"],
                              cwd=project, stdout=subprocess.PIPE, text=True, preexec_fn=_interruptible)
    try:
        first = server.stdout.readline()
        source_url, population_url = re.findall(r"http://\S+", first)
        code = main(["--contact-email", "ops@example.com", "--state-dir", str(tmp_path / "state"),
                     "--allow-private-source", "--source-url", source_url, "--population-url", population_url,
                     "--source-requests-per-second", "50", "--population-requests-per-second", "50"])
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
    finally:
        server.kill()
    assert code == 0, capsys.readouterr().err
    mirror = tmp_path / "state" / "s3" / "bls" / "pr"
    assert {p.name: p.read_bytes() for p in mirror.iterdir()} == sample_pr_files()
    assert "Best year by series (largest sum of Q01-Q04), 6 series" in capsys.readouterr().out
    assert server.returncode == 0


def test_the_process_ends_with_main_s_status_after_its_output_and_prints_its_timings_when_asked(tmp_path):
    # __main__ ends the process with os._exit once everything is written: the status and every line must survive it.
    done = subprocess.run(
        [sys.executable, "-m", "local_runner", "--contact-email", "ops@example.com", "--source-url",
         "http://127.0.0.1:9/pub/time.series/", "--state-dir", str(tmp_path / "state"), "--retry-interval", "1",
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


@pytest.mark.skipif(not speed_patches_on(),
                    reason="LOCAL_ENGINE_SPEED_PATCHES=off: moto.batch is not deferred (a speed patch), so EC2 loads")
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


def test_the_state_directory_loads_only_what_a_run_may_read_and_expires_run_folders_as_the_bucket_does(moto_s3, tmp_path):
    from local_runner.state_dir import RUN_FOLDER_DAYS, StateDir

    source = StateDir(tmp_path / "state")
    bucket = "mirror-bucket"
    keys = ["bls/pr/pr.class", "pipeline/index/bls/pr/index.json", "reports/latest/inputs.json",
            "reports/local-1/inputs.json", "changes/2026/11/01/local-1.json", "pipeline/runs/local-1/manifest.json",
            "pipeline/runs/local-2/manifest.json"]
    for key in keys:
        moto_s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    day = 86400
    source.save_from(moto_s3, bucket, now=1_000 * day)  # local-1's folder is saved on day 1,000
    for key in keys:
        moto_s3.delete_object(Bucket=bucket, Key=key)
    moto_s3.put_object(Bucket=bucket, Key="pipeline/runs/local-2/manifest.json", Body=b"rewritten")

    source.load_into(moto_s3, bucket)

    in_bucket = {o["Key"] for o in moto_s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert in_bucket == {"bls/pr/pr.class", "pipeline/index/bls/pr/index.json", "reports/latest/inputs.json",
                         "pipeline/runs/local-2/manifest.json"}

    source.save_from(moto_s3, bucket, now=(1_000 + RUN_FOLDER_DAYS + 1) * day)

    on_disk = {str(p.relative_to(source.objects)) for p in source.objects.rglob("*") if p.is_file()}
    assert on_disk == set(keys) - {"pipeline/runs/local-1/manifest.json"}, "only the expired run folder is gone"
    assert (source.objects / "pipeline/runs/local-2/manifest.json").read_bytes() == b"rewritten"
