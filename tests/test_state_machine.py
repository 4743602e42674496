"""The real statemachine/pipeline.asl.json, run by moto's engine with the real handlers, against a BLS-like server.

Faults (of the listing, the files, the population API, S3, timing) are in test_fault_matrix.py."""

from __future__ import annotations

import datetime as dt
import hashlib

from bls_loopback.server import status
from tests.conftest import mirror_contents

FILES = {
    "pr.class": b"class_code\tclass_text\r\n0\tAll workers\r\n",
    "pr.data.0.Current": b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\n"
    + b"".join(f"PRS30006032     \t{y}\tQ01\t{y % 7}.5\t\r\n".encode() for y in range(1995, 2026)),
    "pr.period": b"period\tperiod_abbr\tperiod_name\r\nQ01\tQTR1\t1st Quarter\r\n",
    "pr.series": b"series_id\tsector_code\r\n" + b"PRS30006032\t3000\r\n" * 50,
}


def serve(bls, files=FILES):
    for name, body in files.items():
        bls.put(name, body)


def test_first_run_copies_every_file_byte_identical_with_its_metadata(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)

    result = engine.execute()

    assert result.status == "SUCCEEDED", result.cause
    assert mirror_contents(engine.s3, engine.bucket) == FILES
    head = engine.s3.head_object(Bucket=engine.bucket, Key="bls/pr/pr.class")
    assert head["Metadata"]["sha256"] == hashlib.sha256(FILES["pr.class"]).hexdigest()
    assert head["Metadata"]["source-stamp"] == "8/6/2026 8:30 AM"
    assert head["Metadata"]["source-size"] == str(len(FILES["pr.class"]))
    assert result.output["mirror"] | {} == {
        "listed": 4, "unchanged": 0, "copied": 4, "copied_bytes": sum(map(len, FILES.values())),
        "deleted": 0, "deleted_files": [], "spared_files": [], "failed": 0, "failed_files": [], "blocked": False,
        "indexes_written": 1, "surveys": 1, "failed_surveys": 0,
    }
    assert (result.output["changes"]["failures"], result.output["changes"]["failure_cause"]) == (0, None)
    assert all("@" in r.user_agent for r in bls.requests_for())


def test_second_run_requests_only_the_listing_and_copies_nothing(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    versions_before = engine.s3.list_object_versions(Bucket=engine.bucket, Prefix="bls/pr/")["Versions"]
    bls.reset_log()

    result = engine.execute()

    assert result.succeeded
    assert [r.path for r in bls.requests_for()] == [bls.base_path]
    assert result.output["mirror"]["copied"] == 0 and result.output["mirror"]["unchanged"] == 4
    assert "CopyFileFunction" not in [i.function for i in result.invocations]
    versions_after = engine.s3.list_object_versions(Bucket=engine.bucket, Prefix="bls/pr/")["Versions"]
    assert len(versions_after) == len(versions_before)
    entered = [e["stateEnteredEventDetails"]["name"] for e in engine.history(result.arn) if "stateEnteredEventDetails" in e]
    assert "NothingToCopy" in entered and "CopyFiles" not in entered, "no map run is started for nothing"


def test_changed_added_and_removed_files_are_exactly_what_the_third_run_does(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    assert engine.execute().succeeded
    changed = FILES["pr.data.0.Current"] + b"PRS30006032     \t2026\tQ01\t9.9\t\r\n"
    bls.put("pr.data.0.Current", changed, dt.datetime(2026, 9, 3, 8, 30))
    bls.put("pr.footnote", b"footnote_code\tfootnote_text\r\nP\tpreliminary\r\n")
    bls.remove("pr.series")
    bls.reset_log()

    result = engine.execute()

    assert result.succeeded, result.cause
    assert sorted(r.path.rsplit("/", 1)[1] for r in bls.file_requests()) == ["pr.data.0.Current", "pr.footnote"]
    mirror = result.output["mirror"]
    assert (mirror["copied"], mirror["unchanged"], mirror["deleted"], mirror["deleted_files"]) == (2, 2, 1, ["pr/pr.series"])
    expected = {**FILES, "pr.data.0.Current": changed, "pr.footnote": bls.files["pr.footnote"].body}
    del expected["pr.series"]
    assert mirror_contents(engine.s3, engine.bucket) == expected


def test_a_new_listing_stamp_with_the_same_size_is_copied_again(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    same_size = FILES["pr.class"].replace(b"All", b"ALL")
    bls.put("pr.class", same_size, dt.datetime(2026, 10, 1, 15, 5))
    bls.reset_log()

    result = engine.execute()

    assert [r.path for r in bls.file_requests()] == [bls.base_path + "pr.class"]
    assert mirror_contents(engine.s3, engine.bucket)["pr.class"] == same_size
    head = engine.s3.head_object(Bucket=engine.bucket, Key="bls/pr/pr.class")
    assert head["Metadata"]["source-stamp"] == "10/1/2026 3:05 PM"
    assert result.output["mirror"]["copied"] == 1


def test_every_state_output_stays_small(bls, make_engine):
    serve(bls)
    bls.add_faults("pr.series", status(404))
    engine = make_engine(bls.url)
    result = engine.execute()

    outputs = [
        details["output"]
        for event in engine.history(result.arn)
        for key, details in event.items()
        if key.endswith("EventDetails") and isinstance(details, dict) and "output" in details
    ]
    assert outputs, "the history has no state outputs"
    # No state carries anything per file; the plan's keys, ids and the loopback URL make up most of the largest one.
    assert max(len(o) for o in outputs) < 3072
    assert not any("PRS30006032" in o for o in outputs), "file contents leaked into the execution history"


def test_prune_refuses_to_delete_most_of_the_mirror_unless_the_input_forces_it(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    for name in ("pr.class", "pr.period", "pr.series"):
        bls.remove(name)

    refused = engine.execute()

    assert refused.status == "FAILED" and refused.error == "PruneGuardError"
    assert refused.cause.startswith("1 of 1 survey(s) failed: pr: PruneGuardError: pruning would delete 3 of the 4")
    assert '{"force_prune": true}' in refused.cause and refused.cause.endswith("/manifest.json")
    assert mirror_contents(engine.s3, engine.bucket).keys() == FILES.keys()

    forced = engine.execute({"force_prune": True})

    assert forced.succeeded, forced.cause
    assert forced.output["mirror"]["deleted_files"] == ["pr/pr.class", "pr/pr.period", "pr/pr.series"]
    assert list(mirror_contents(engine.s3, engine.bucket)) == ["pr.data.0.Current"]
    # every deleted file is still recoverable from the bucket's versions
    versions = engine.s3.list_object_versions(Bucket=engine.bucket, Prefix="bls/pr/pr.class")
    assert versions["DeleteMarkers"] and versions["Versions"]


def test_a_bad_execution_input_fails_the_first_state_before_any_request(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)

    result = engine.execute({"force_prune": "yes"})

    assert result.status == "FAILED" and result.error == "ConfigError"
    assert "force_prune" in result.cause
    assert bls.requests_for() == []
