"""The real statemachine/pipeline.asl.json, run by moto's engine with the real handlers, against a BLS-like server."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from tests.bls_server import status
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
        "deleted": 0, "deleted_files": [], "failed": 0, "failed_files": [], "failure_cause": "",
    }
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
    assert (mirror["copied"], mirror["unchanged"], mirror["deleted"], mirror["deleted_files"]) == (2, 2, 1, ["pr.series"])
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


def test_a_503_twice_is_retried_and_the_file_arrives(bls, make_engine):
    serve(bls)
    bls.add_faults("pr.period", status(503), status(503))
    engine = make_engine(bls.url)

    result = engine.execute()

    assert result.succeeded, result.cause
    assert [r.status for r in bls.requests_for("pr.period")] == [503, 503, 200]
    assert mirror_contents(engine.s3, engine.bucket)["pr.period"] == FILES["pr.period"]
    copy_errors = [i.error_type for i in result.invocations if i.function == "CopyFileFunction" and i.error_type]
    assert copy_errors == ["TransientSourceError", "TransientSourceError"]


def test_a_404_is_not_retried_and_fails_the_execution_by_name_after_the_others_are_copied(bls, make_engine):
    serve(bls)
    bls.add_faults("pr.series", status(404))
    engine = make_engine(bls.url)

    result = engine.execute()

    assert result.status == "FAILED"
    assert result.error == "CopyFailed"
    assert "pr.series" in result.cause and "SourceNotFound" in result.cause
    assert len(bls.requests_for("pr.series")) == 1
    copied = mirror_contents(engine.s3, engine.bucket)
    assert copied == {k: v for k, v in FILES.items() if k != "pr.series"}
    # the failed file is retried by the next run, and the run then succeeds
    bls.reset_log()
    healed = engine.execute()
    assert healed.succeeded
    assert [r.path for r in bls.file_requests()] == [bls.base_path + "pr.series"]


def test_a_listing_without_file_rows_fails_before_anything_is_copied_or_deleted(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    before = mirror_contents(engine.s3, engine.bucket)
    bls.listing_override = lambda page: (200, "<html><body><h1>Service Unavailable</h1></body></html>")
    bls.reset_log()

    result = engine.execute()

    assert result.status == "FAILED"
    assert result.error == "ListingError"
    assert "no file rows" in result.cause
    assert bls.file_requests() == []
    assert mirror_contents(engine.s3, engine.bucket) == before


def test_a_403_says_bls_refused_and_why_and_is_not_retried(bls, make_engine):
    serve(bls)
    bls.add_faults("", status(403))
    engine = make_engine(bls.url)

    result = engine.execute()

    assert result.status == "FAILED" and result.error == "SourceRefused"
    message = json.loads(result.cause)["errorMessage"]
    assert "BLS refused the request" in message and "contact e-mail" in message and "data-team@example.com" in message
    assert len(bls.requests_for()) == 1


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
    assert max(len(o) for o in outputs) < 2048
    assert not any("PRS30006032" in o for o in outputs), "file contents leaked into the execution history"


def test_prune_refuses_to_delete_most_of_the_mirror_unless_the_input_forces_it(bls, make_engine):
    serve(bls)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    for name in ("pr.class", "pr.period", "pr.series"):
        bls.remove(name)

    refused = engine.execute()

    assert refused.status == "FAILED" and refused.error == "PruneGuardError"
    assert "would delete 3 of the 4" in refused.cause and '{\\"force_prune\\": true}' in refused.cause
    assert mirror_contents(engine.s3, engine.bucket).keys() == FILES.keys()

    forced = engine.execute({"force_prune": True})

    assert forced.succeeded, forced.cause
    assert forced.output["mirror"]["deleted_files"] == ["pr.class", "pr.period", "pr.series"]
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
