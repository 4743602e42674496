"""The sync index (functions/bls_pipeline/sync_index.py), through the real state machine: a run that changes nothing
costs a constant number of S3 requests whatever the file count, and an index that no longer describes the mirror
(deleted, stale, corrupt, or the mirror edited behind its back) costs HEADs, never a wrong mirror."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter

from bls_loopback.population import POPULATION_PATH, population_json
from bls_loopback.server import BlsTree
from bls_pipeline.bls_listing import SourceFile
from bls_pipeline.mirror import object_metadata
from tests.conftest import mirror_contents

INDEX_KEY = "pipeline/index/bls/pr/index.json"


def serve(bls, count: int) -> dict[str, bytes]:
    survey = bls.base_path.rstrip("/").rsplit("/", 1)[1]
    files = {f"{survey}.file.{n:04d}": f"file {n}\r\n".encode() for n in range(count)}
    for name, body in files.items():
        bls.put(name, body)
    return files


def count_s3_requests(engine) -> tuple[Counter, callable]:
    """Every S3 request any function makes, by operation (the state machine's own ItemReader/ResultWriter aside, and
    the request-slot reservations under pipeline/rate/: one GET and PUT per source request, plus one more pair when a
    busy machine wakes a client late or two reservations race, so their count is the machine's, not the mirror's);
    "HeadMirror" counts the HEADs of the mirrored <survey>.file.* objects (Analytics HEADs its data file)."""
    counted: Counter = Counter()

    def count(params, model, **_):
        if params.get("Key", "").startswith("pipeline/rate/"):
            return
        counted[model.name] += 1
        if model.name == "HeadObject" and ".file." in params.get("Key", ""):
            counted["HeadMirror"] += 1

    return counted, engine.on_s3("before-parameter-build.s3", count)


SURVEYS = ("pr", "cu", "ce")


def seed_mirror(engine, tree: BlsTree, survey: str, count: int) -> None:
    """Serve `count` files and put them into bls/<survey>/ as the pipeline would have copied them (same bytes and
    metadata), without 1,000 copies through the engine; the next run finds no index, HEADs them and writes it."""
    directory = tree.survey(survey)
    for name, body in serve(directory, count).items():
        file = SourceFile(name, directory.url + name, len(body), "8/6/2026 8:30 AM")
        engine.s3.put_object(Bucket=engine.bucket, Key=f"bls/{survey}/{name}", Body=body,
                             Metadata=object_metadata(file, len(body), hashlib.sha256(body).hexdigest()))


def noop_run_requests(engine, tree: BlsTree, files: int, run: dict) -> tuple[Counter, list[str]]:
    for survey in SURVEYS:
        seed_mirror(engine, tree, survey, files)
    first = engine.execute(run)
    assert first.succeeded, first.cause
    assert first.output["mirror"]["copied"] == 0 and first.output["mirror"]["indexes_written"] == len(SURVEYS)
    tree.reset_log()
    counted, undo = count_s3_requests(engine)
    result = engine.execute(run)
    undo()
    assert result.succeeded, result.cause
    assert result.output["mirror"]["copied"] == 0 and result.output["mirror"]["unchanged"] == files * len(SURVEYS)
    return counted, sorted(r.path for r in tree.all_requests() if r.path.startswith(tree.base_path))


def test_a_no_op_run_of_three_surveys_makes_the_same_s3_requests_for_10_and_1000_files_each(make_engine) -> None:
    with BlsTree() as small_tree, BlsTree() as large_tree:
        small_tree.route(POPULATION_PATH, population_json())
        engine = make_engine(small_tree.url, Surveys=",".join(SURVEYS))
        small, small_source = noop_run_requests(engine, small_tree, 10, {})
        # The same deployment, another tree (and so other mirrors' indexes, bls/<survey>/ again): 100 times the files.
        engine.s3.delete_objects(Bucket=engine.bucket, Delete={"Objects": [
            {"Key": o["Key"]} for o in engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix="bls/")["Contents"]]})
        for survey in SURVEYS:
            engine.s3.delete_object(Bucket=engine.bucket, Key=f"pipeline/index/bls/{survey}/index.json")
        large, large_source = noop_run_requests(engine, large_tree, 1000, {"source_url": large_tree.url})

    listings = sorted(f"/pub/time.series/{s}/" for s in SURVEYS)
    assert small_source == large_source == listings  # one listing per survey, nothing else
    assert small == large, (small, large)
    assert "HeadMirror" not in large  # every recorded stamp came from the index
    # ListSource sees what exists, PruneMirror what to prune: one page each, per survey; the catalog step lists which
    # surveys are mirrored, which have catalog records, and whether the population file exists (one request each,
    # per run)
    assert large["ListObjectsV2"] == 2 * len(SURVEYS) + 3
    # per survey: its listing and index, its plan files (written by ListSource, read by PruneMirror and RecordChanges);
    # per run: the combined items, surveys.json, the manifest, the rate slots, the population and the reports; the
    # catalog step lists its survey records and reads each survey's index and record, and its population and
    # named-query records
    assert sum(large.values()) <= 22 * len(SURVEYS) + 13, large


def test_each_survey_costs_a_fixed_number_of_s3_requests(make_engine) -> None:
    """One more survey in a no-op run adds the same number of S3 requests, whatever its file count."""
    with BlsTree() as tree:
        tree.route(POPULATION_PATH, population_json())
        for survey, count in (("pr", 5), ("cu", 40), ("ce", 200)):
            serve(tree.survey(survey), count)
        engine = make_engine(tree.url, Surveys="pr,cu,ce")
        totals = []
        for surveys in ("pr", "pr,cu", "pr,cu,ce"):
            assert engine.execute({"surveys": surveys}).succeeded
            counted, undo = count_s3_requests(engine)
            assert engine.execute({"surveys": surveys}).succeeded
            undo()
            totals.append(sum(counted.values()))
    assert totals[1] - totals[0] == totals[2] - totals[1] > 0, totals


def test_the_first_run_writes_the_index_and_a_no_op_run_leaves_it_as_it_was(bls, make_engine) -> None:
    serve(bls, 3)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    index = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=INDEX_KEY)["Body"].read())
    head = engine.s3.head_object(Bucket=engine.bucket, Key="bls/pr/pr.file.0001")
    assert index["mirror"] == "bls/pr/" and sorted(index["files"]) == ["pr.file.0000", "pr.file.0001", "pr.file.0002"]
    entry = index["files"]["pr.file.0001"]
    assert (entry["stamp"], entry["sha256"], entry["etag"], entry["size"]) == (
        head["Metadata"]["source-stamp"], head["Metadata"]["sha256"], head["ETag"], head["ContentLength"])
    versions = len(engine.s3.list_object_versions(Bucket=engine.bucket, Prefix=INDEX_KEY)["Versions"])

    result = engine.execute()

    assert result.output["mirror"]["indexes_written"] == 0
    assert len(engine.s3.list_object_versions(Bucket=engine.bucket, Prefix=INDEX_KEY)["Versions"]) == versions


def test_a_deleted_index_falls_back_to_heads_and_yields_the_exact_mirror(bls, make_engine) -> None:
    files = serve(bls, 5)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    engine.s3.delete_object(Bucket=engine.bucket, Key=INDEX_KEY)
    bls.put("pr.file.0002", b"changed\r\n", dt.datetime(2026, 9, 3, 8, 30))
    bls.remove("pr.file.0004")
    counted, undo = count_s3_requests(engine)

    result = engine.execute()

    undo()
    assert result.succeeded, result.cause
    assert counted["HeadMirror"] == 5  # no index: every mirrored object is read
    assert (result.output["mirror"]["copied"], result.output["mirror"]["deleted"]) == (1, 1)
    assert mirror_contents(engine.s3, engine.bucket) == {name: f.body for name, f in bls.files.items()}
    assert files.keys() - bls.files.keys() == {"pr.file.0004"}
    assert result.output["mirror"]["indexes_written"] == 1
    counted, undo = count_s3_requests(engine)
    assert engine.execute().output["mirror"]["copied"] == 0
    undo()
    assert counted["HeadMirror"] == 0  # the rewritten index serves again


def test_a_stale_index_and_a_mirror_edited_behind_its_back_still_yield_the_exact_mirror(bls, make_engine) -> None:
    serve(bls, 6)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    stale = engine.s3.get_object(Bucket=engine.bucket, Key=INDEX_KEY)["Body"].read()
    bls.put("pr.file.0000", b"second version\r\n", dt.datetime(2026, 9, 3, 8, 30))
    assert engine.execute().output["mirror"]["copied"] == 1
    # The index of the first run comes back (a restored old version): it describes pr.file.0000 as it was.
    engine.s3.put_object(Bucket=engine.bucket, Key=INDEX_KEY, Body=stale)
    time.sleep(1.1)  # LastModified has one-second resolution in listings: the edits below land in a later second
    # Out of band: one object's recorded stamp replaced (same bytes, same ETag), one deleted, one foreign added.
    key = "bls/pr/pr.file.0001"
    head = engine.s3.head_object(Bucket=engine.bucket, Key=key)
    engine.s3.copy_object(Bucket=engine.bucket, Key=key, CopySource={"Bucket": engine.bucket, "Key": key},
                          Metadata={**head["Metadata"], "source-stamp": "1/1/2000 1:00 AM"}, MetadataDirective="REPLACE")
    assert engine.s3.head_object(Bucket=engine.bucket, Key=key)["ETag"] == head["ETag"]
    engine.s3.delete_object(Bucket=engine.bucket, Key="bls/pr/pr.file.0002")
    engine.s3.put_object(Bucket=engine.bucket, Key="bls/pr/not-listed", Body=b"x")
    bls.reset_log()

    result = engine.execute()

    assert result.succeeded, result.cause
    copied = sorted(r.path.rsplit("/", 1)[1] for r in bls.file_requests())
    assert copied == ["pr.file.0001", "pr.file.0002"]  # pr.file.0000 matches the listing: its HEAD said so
    assert result.output["mirror"]["deleted_files"] == ["pr/not-listed"]
    assert mirror_contents(engine.s3, engine.bucket) == {name: f.body for name, f in bls.files.items()}
    bls.reset_log()
    assert engine.execute().output["mirror"]["copied"] == 0
    assert [r.path for r in bls.requests_for()] == [bls.base_path]


def test_a_corrupt_index_is_no_index(bls, make_engine) -> None:
    serve(bls, 3)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    engine.s3.put_object(Bucket=engine.bucket, Key=INDEX_KEY, Body=b"{not json")
    bls.put("pr.file.0001", b"changed\r\n", dt.datetime(2026, 9, 3, 8, 30))

    result = engine.execute()

    assert result.succeeded, result.cause
    assert result.output["mirror"]["copied"] == 1 and result.output["mirror"]["indexes_written"] == 1
    assert mirror_contents(engine.s3, engine.bucket) == {name: f.body for name, f in bls.files.items()}
    assert json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=INDEX_KEY)["Body"].read())["index_version"] == 1
