"""What a run changed, through the real state machine: the run manifest, the lasting change log, the 'Mirror Changed'
event on EventBridge, dry runs, and the reports' record of the inputs they were computed from."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from bls_loopback.server import status
from bls_pipeline.manifest import (EVENT_FILES_SHOWN, CopyOutcome, RunFacts, RunOutcome, SurveyFacts, build_manifest,
                                   build_survey, event_detail)
from bls_pipeline.bls_listing import SourceFile
from bls_pipeline.request_rate import RUNS_KEPT, RequestSlots
from local_runner.engine import LocalEngine
from local_runner.iam import EVENTS_RULES, UnknownOperation, events_checks, put_events_entry_size
from local_runner.template_model import Template, load_template
from tests.conftest import engine_parameters, tree_url
from tests.test_state_machine import FILES, serve

LATER = dt.datetime(2026, 9, 3, 8, 30)
NEW_CLASS = b"class_code\tclass_text\r\n0\tAll workers\r\n1\tSome workers\r\n"
NEW_FILE = b"footnote_code\tfootnote_text\r\n"
# The subscription the README shows: every 'Mirror Changed' event of the pr survey.
README_PATTERN = {"source": ["bls-mirror"], "detail-type": ["Mirror Changed"], "detail": {"survey": ["pr"]}}


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def read_json(engine, location: str):
    bucket, key = location.removeprefix("s3://").split("/", 1)
    return json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def change_log_keys(engine) -> list[str]:
    return [o["Key"] for o in engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix="changes/").get("Contents", [])]


def versions(engine) -> dict[str, str]:
    return {v["Key"]: v["VersionId"] for v in engine.s3.list_object_versions(Bucket=engine.bucket, Prefix="bls/pr/")["Versions"]}


def subscribe(engine) -> str:
    """What a user does without touching the stack: a rule with the README's pattern, delivering to a queue."""
    sqs, events = boto3.client("sqs", region_name="us-east-1"), boto3.client("events", region_name="us-east-1")
    url = sqs.create_queue(QueueName="mirror-changed")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="mirror-changed", EventPattern=json.dumps(README_PATTERN))
    events.put_targets(Rule="mirror-changed", Targets=[{"Id": "queue", "Arn": arn}])
    return url


def delivered(url: str) -> list[dict]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in messages]


def by_name(files: list[dict]) -> dict[str, dict]:
    return {f["name"]: f for f in files}


def test_a_change_run_a_no_op_run_and_a_dry_run_record_exactly_what_changed(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    queue = subscribe(engine)
    first = engine.execute()
    assert first.succeeded, first.cause
    assert first.output["changes"]["totals"]["added"] == 4 and len(engine.events) == 1
    assert len(delivered(queue)) == 1

    bls.put("pr.class", NEW_CLASS, LATER)  # changed
    bls.put("pr.footnote", NEW_FILE, LATER)  # added
    bls.remove("pr.period")  # removed
    before = versions(engine)

    dry = engine.execute({"dry_run": True})

    assert dry.succeeded, dry.cause
    assert versions(engine) == before, "a dry run must leave every mirrored object's version as it was"
    assert {i.function for i in dry.invocations} == {"ListSourceFunction", "RecordChangesFunction"}
    dry_manifest = read_json(engine, dry.output["changes"]["manifest"])
    assert dry_manifest["dry_run"] is True and dry.output["changes"]["change_log"] is None
    assert len(engine.events) == 1 and delivered(queue) == [] and len(change_log_keys(engine)) == 1

    bls.reset_log()
    real = engine.execute()

    assert real.succeeded, real.cause
    manifest = read_json(engine, real.output["changes"]["manifest"])
    assert real.output["changes"]["manifest"] == f"s3://{engine.bucket}/pipeline/runs/{manifest['execution']}/manifest.json"
    assert list(manifest["surveys"]) == ["pr"] and manifest["surveys"]["pr"]["mirror"] == f"s3://{engine.bucket}/bls/pr/"
    changed = {f["name"]: f for f in manifest["surveys"]["pr"]["files"] if f["outcome"] != "unchanged"}
    assert {n: f["outcome"] for n, f in changed.items()} == {
        "pr.class": "changed", "pr.footnote": "added", "pr.period": "deleted"}
    assert changed["pr.class"]["before"] == {"size": len(FILES["pr.class"]), "sha256": sha(FILES["pr.class"]),
                                             "stamp": "8/6/2026 8:30 AM"}
    assert changed["pr.class"]["after"] == {"size": len(NEW_CLASS), "sha256": sha(NEW_CLASS), "stamp": "9/3/2026 8:30 AM"}
    assert changed["pr.footnote"]["before"] is None and changed["pr.footnote"]["after"]["sha256"] == sha(NEW_FILE)
    assert changed["pr.period"]["before"]["sha256"] == sha(FILES["pr.period"]) and changed["pr.period"]["after"] is None
    unchanged = by_name(manifest["surveys"]["pr"]["files"])["pr.series"]
    assert unchanged["outcome"] == "unchanged" and unchanged["before"] == unchanged["after"]
    assert unchanged["after"]["sha256"] == sha(FILES["pr.series"])
    totals = manifest["totals"]
    assert (totals["added"], totals["changed"], totals["deleted"], totals["unchanged"], totals["failed"]) == (1, 1, 1, 2, 0)
    assert totals["bytes_moved"] == len(NEW_CLASS) + len(NEW_FILE)
    assert totals["source_requests"] == len(bls.requests_for()) == 3  # the listing and two files
    started, ended = (dt.datetime.fromisoformat(manifest[k].replace("Z", "+00:00")) for k in ("started_at", "ended_at"))
    assert started <= ended

    # The dry run listed what the real run then did, with the same "before".
    dry_changes = {f["name"]: f for f in dry_manifest["surveys"]["pr"]["files"] if f["outcome"] != "unchanged"}
    assert {n: f["outcome"] for n, f in dry_changes.items()} == {n: f["outcome"] for n, f in changed.items()}
    assert {n: f["before"] for n, f in dry_changes.items()} == {n: f["before"] for n, f in changed.items()}
    assert dry_changes["pr.class"]["after"] == {"size": len(NEW_CLASS), "sha256": None, "stamp": "9/3/2026 8:30 AM"}

    # The lasting change-log entry names exactly those three, under changes/YYYY/MM/DD/<execution>.json.
    day = manifest["started_at"][:10].replace("-", "/")
    log_key = f"changes/{day}/{manifest['execution']}.json"
    assert real.output["changes"]["change_log"] == f"s3://{engine.bucket}/{log_key}"
    entry = read_json(engine, real.output["changes"]["change_log"])
    assert by_name(entry["surveys"]["pr"]["files"]) == changed and entry["manifest"] == real.output["changes"]["manifest"]

    # One event, on the default bus, that a user's rule with the README's pattern receives.
    assert len(engine.events) == 2
    event = engine.events[-1]
    assert (event["source"], event["detail_type"], event["function"]) == ("bls-mirror", "Mirror Changed", "RecordChangesFunction")
    assert event["resources"] == [real.arn]
    detail = event["detail"]
    assert detail["counts"] == {"added": 1, "changed": 1, "deleted": 1, "failed": 0, "spared": 0}
    assert {f["name"]: (f["sha256_before"], f["sha256_after"]) for f in detail["files"]} == {
        "pr.class": (sha(FILES["pr.class"]), sha(NEW_CLASS)), "pr.footnote": (None, sha(NEW_FILE)),
        "pr.period": (sha(FILES["pr.period"]), None)}
    assert (detail["manifest"], detail["change_log"]) == (real.output["changes"]["manifest"], real.output["changes"]["change_log"])
    received = delivered(queue)
    assert [m["detail"] for m in received] == [detail]

    # The next run changes nothing: a manifest, but no change-log entry and no event.
    quiet = engine.execute()
    assert quiet.succeeded, quiet.cause
    assert read_json(engine, quiet.output["changes"]["manifest"])["totals"]["unchanged"] == 4
    assert quiet.output["changes"]["change_log"] is None and len(change_log_keys(engine)) == 2
    assert len(engine.events) == 2 and delivered(queue) == []


def test_a_failed_copy_is_in_the_manifest_with_its_error_and_is_not_a_change(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    bls.put("pr.class", NEW_CLASS, LATER)
    bls.add_faults("pr.class", status(404))

    result = engine.execute()

    assert result.status == "FAILED" and result.error == "CopyFailed"
    run = result.arn.rsplit(":", 1)[-1]
    manifest = read_json(engine, f"s3://{engine.bucket}/pipeline/runs/{run}/manifest.json")
    entry = by_name(manifest["surveys"]["pr"]["files"])["pr.class"]
    assert entry["outcome"] == "failed" and entry["error"].startswith("SourceNotFound: ")
    assert entry["after"] == entry["before"] and entry["before"]["sha256"] == sha(FILES["pr.class"])
    assert len(engine.events) == 1 and len(change_log_keys(engine)) == 1  # the first run's only


def test_a_prune_guard_stop_after_a_copy_still_writes_the_manifest_and_fails_with_the_guard_s_error(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    for name in ("pr.class", "pr.period", "pr.series"):
        bls.remove(name)  # 3 of the 4 mirrored files gone: more than the guard allows
    bls.put("pr.footnote", b"new\r\n")

    result = engine.execute()

    assert result.status == "FAILED" and result.error == "PruneGuardError"
    assert "would delete 3 of the 4" in result.cause
    run = result.arn.rsplit(":", 1)[-1]
    manifest = read_json(engine, f"s3://{engine.bucket}/pipeline/runs/{run}/manifest.json")
    section = manifest["surveys"]["pr"]
    outcomes = {f["name"]: f["outcome"] for f in section["files"] if f["outcome"] != "unchanged"}
    assert outcomes == {"pr.footnote": "added"}, "copied before the stop; nothing deleted"
    assert manifest["failure"]["error"] == "PruneGuardError" and "would delete 3 of the 4" in manifest["failure"]["cause"]
    assert (section["failure"]["step"], section["failure"]["error"]) == ("PruneMirror", "PruneGuardError")
    assert manifest["failure"]["cause"] == result.cause
    assert len(change_log_keys(engine)) == 2 and len(engine.events) == 2  # the copy changed the mirror


def test_the_stored_reports_name_the_mirrored_inputs_they_were_computed_from(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    result = engine.execute()
    assert result.succeeded, result.cause

    run = result.arn.rsplit(":", 1)[-1]
    for folder in (run, "latest"):
        vintage = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=f"reports/{folder}/inputs.json")["Body"].read())
        assert vintage["run_id"] == run
        for name, key in (("data", "bls/pr/pr.data.0.Current"), ("population", "datausa/population.json")):
            stored = engine.s3.get_object(Bucket=engine.bucket, Key=key)
            body = stored["Body"].read()
            assert vintage["inputs"][name]["key"] == key
            assert vintage["inputs"][name]["sha256"] == stored["Metadata"]["sha256"] == sha(body)
            assert vintage["inputs"][name]["etag"] == stored["ETag"]
        assert vintage["inputs"]["data"]["source_stamp"] == "8/6/2026 8:30 AM"
        assert vintage["bad_rows"] == 0 and vintage["bad_row_lines"] == []


def test_record_changes_without_put_events_is_denied_by_the_engine(bls):
    document = load_template()
    statements = document["Resources"]["RecordChangesFunction"]["Properties"]["Policies"][0]["Statement"]
    statements[:] = [s for s in statements if s["Sid"] != "PublishMirrorChanged"]
    serve(bls)
    parameters = engine_parameters(bls.url, RetryMaxAttempts="1")
    with LocalEngine(parameters, template=Template(document), extra_env={"POWERTOOLS_LOG_LEVEL": "CRITICAL"}) as engine:
        result = engine.execute()
    assert result.status == "FAILED" and result.error == "ClientError"
    assert "AccessDeniedException" in result.cause and "events:PutEvents" in result.cause
    assert engine.events == []


# -- the rules and the pure parts ----------------------------------------------------------------------------------

def test_put_events_is_checked_per_entry_on_the_bus_and_other_calls_are_refused():
    entries = [{"Source": "bls-mirror", "DetailType": "Mirror Changed", "Detail": "{}"},
               {"Source": "x", "DetailType": "y", "Detail": "{}", "EventBusName": "other"}]
    checks = events_checks("PutEvents", {"Entries": entries}, "us-east-1", "123456789012")
    assert [c.resource for c in checks] == ["arn:aws:events:us-east-1:123456789012:event-bus/default",
                                           "arn:aws:events:us-east-1:123456789012:event-bus/other"]
    assert checks[0].context == {"events:source": "bls-mirror", "events:detail-type": "Mirror Changed"}
    assert "EventBridge" in EVENTS_RULES["PutEvents"].source
    with pytest.raises(UnknownOperation):
        events_checks("PutRule", {}, "us-east-1", "123456789012")
    assert put_events_entry_size({"Source": "ab", "DetailType": "c", "Detail": "{}", "Resources": ["é"], "Time": 1}) == 14 + 2 + 1 + 2 + 2


def _facts(**overrides) -> RunFacts:
    return RunFacts(**{"execution": "e", "execution_arn": "arn:e", "bucket": "b", "mirror_prefix": "bls/",
                       "source_url": "https://download.bls.gov/pub/time.series/", "started_at": "2026-11-03T15:00:00Z",
                       "ended_at": "2026-11-03T15:01:00Z", **overrides})


PR = SurveyFacts("pr", "https://download.bls.gov/pub/time.series/pr/", "s3://b/bls/pr/")


def test_a_superseded_copy_and_a_copy_without_a_result_are_not_reported_as_changes():
    files = [SourceFile(n, f"u/{n}", 5, "s2") for n in ("a", "b", "c")]
    old = {"size": 4, "sha256": "0" * 64, "stamp": "s1"}
    outcome = RunOutcome(listed=["a", "b", "c"], before={"a": old, "b": old, "c": old}, to_copy=files, planned_deletions=[],
                         copies={"a": CopyOutcome("a", "1" * 64, 5), "b": CopyOutcome("b", "2" * 64, 5, superseded=True)})
    manifest = build_manifest(_facts(), [build_survey(PR, outcome)])
    section = manifest["surveys"]["pr"]
    assert [(f["name"], f["outcome"]) for f in section["files"]] == [("a", "changed"), ("b", "spared"), ("c", "failed")]
    assert manifest["totals"]["bytes_moved"] == section["totals"]["bytes_moved"] == 5 and section["survey"] == "pr"
    assert (manifest["totals"]["surveys"], manifest["totals"]["failed_surveys"]) == (1, 1)


def test_the_event_detail_names_at_most_a_bounded_number_of_files_and_fits_an_entry():
    names = [f"pr.{'x' * 200}.{i}" for i in range(EVENT_FILES_SHOWN + 50)]
    outcome = RunOutcome(listed=names, before={}, to_copy=[SourceFile(n, "u", 1, "s") for n in names], planned_deletions=[],
                         copies={n: CopyOutcome(n, "f" * 64, 1) for n in names})
    section = build_survey(PR, outcome)
    detail = event_detail(build_manifest(_facts(), [section]), section, "s3://b/m", "s3://b/c")
    assert len(detail["files"]) == EVENT_FILES_SHOWN and detail["files_not_shown"] == 50
    entry = {"Source": "bls-mirror", "DetailType": "Mirror Changed", "Detail": json.dumps(detail), "Resources": ["arn:e"]}
    assert put_events_entry_size(entry) < 256 * 1024


def test_the_rate_object_counts_each_runs_requests_and_keeps_the_last_runs(moto_s3):
    def slots(run):
        return RequestSlots(moto_s3, "mirror-bucket", "pipeline/rate/host.json", 1000.0, run)

    for _ in range(3):
        slots("run-a").take()
    slots("run-b").take()
    assert slots(None).requests_of_run("run-a") == 3 and slots(None).requests_of_run("run-b") == 1
    for index in range(RUNS_KEPT):
        slots(f"later-{index}").take()
    assert slots(None).requests_of_run("run-a") == 0 and slots(None).requests_of_run(f"later-{RUNS_KEPT - 1}") == 1
    state = json.loads(moto_s3.get_object(Bucket="mirror-bucket", Key="pipeline/rate/host.json")["Body"].read())
    assert len(state["runs"]) == RUNS_KEPT


def test_a_put_events_entry_over_the_size_limit_is_refused(bls, make_engine):
    engine = make_engine(bls.url)
    client = engine.event_bus.client_for("RecordChangesFunction")
    entry = {"Source": "bls-mirror", "DetailType": "Mirror Changed", "Detail": json.dumps({"x": "y" * 256 * 1024})}
    with pytest.raises(ClientError, match="ValidationException"):
        client.put_events(Entries=[entry])
    with pytest.raises(ClientError, match="AccessDenied"):
        engine.event_bus.client_for("CopyFileFunction").put_events(Entries=[{**entry, "Detail": "{}"}])
    assert engine.events == []


@pytest.mark.engine  # the runner's main() starts the engine
def test_the_runner_s_dry_run_prints_what_would_change_and_changes_nothing_on_disk(bls, tmp_path, capsys):
    from local_runner.cli import main
    from bls_loopback.population import POPULATION_PATH

    serve(bls)
    state = tmp_path / "state"

    def run(*extra: str) -> str:
        assert main(["--contact-email", "ops@example.com", "--source-url", tree_url(bls), "--state-dir", str(state),
                     "--population-url", bls.root + POPULATION_PATH, "--allow-private-source",
                     "--source-requests-per-second", "50", "--population-requests-per-second", "50", *extra]) == 0
        return capsys.readouterr().out

    first = run()
    manifest_line = next(line for line in first.splitlines() if line.startswith("Manifest: "))
    assert Path(manifest_line.removeprefix("Manifest: ")).is_file()
    log_line = next(line for line in first.splitlines() if line.startswith("Change log: "))
    assert json.loads(Path(log_line.removeprefix("Change log: ")).read_text())["totals"]["added"] == 4
    bls.put("pr.class", NEW_CLASS, LATER)
    bls.remove("pr.period")
    mirror = {p.name: p.read_bytes() for p in (state / "s3" / "bls" / "pr").iterdir()}

    dry = run("--dry-run")

    assert "Dry run: a real run would add 0, replace 1 and delete 1 file(s); nothing was copied or deleted" in dry
    assert "  pr/pr.class: changed" in dry and "  pr/pr.period: deleted" in dry and "Change log: " not in dry
    manifest = json.loads(Path(next(line for line in dry.splitlines() if line.startswith("Manifest: "))
                               .removeprefix("Manifest: ")).read_text())
    assert manifest["dry_run"] is True
    assert {p.name: p.read_bytes() for p in (state / "s3" / "bls" / "pr").iterdir()} == mirror
