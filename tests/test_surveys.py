"""Several surveys in one execution (Surveys: a list, or '*'), through the real state machine against a loopback
time.series tree: each survey mirrored under bls/<survey>/ with its own listing, plan, prune and guard; one survey's
failure does not stop the others and the execution fails at the end naming each; one request rate for the whole
host; state payloads that do not grow with the number of surveys."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from bls_loopback.population import POPULATION_PATH, population_json
from bls_loopback.server import BlsServer, BlsTree, peak_requests_per_second, status
from bls_pipeline.sync import MAX_FAILURE_CAUSE, CopyFailure, SurveyFailure, run_verdict
from tests.conftest import mirror_contents

LATER = dt.datetime(2026, 9, 3, 8, 30)
DATA = b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\nPRS30006032     \t2018\tQ01\t0.5\t\r\n"


def files_of(survey: str, count: int = 3) -> dict[str, bytes]:
    files = {f"{survey}.file.{n}": f"{survey} file {n}\r\n".encode() * (n + 1) for n in range(count)}
    if survey == "pr":
        files["pr.data.0.Current"] = DATA
    return files


@pytest.fixture
def tree():
    with BlsTree() as server:
        server.route(POPULATION_PATH, population_json())
        yield server


def serve(tree: BlsTree, survey: str, files: dict[str, bytes]) -> None:
    for name, body in files.items():
        tree.survey(survey).put(name, body)


def source_of(tree: BlsTree, survey: str) -> dict[str, bytes]:
    return {name: f.body for name, f in tree.survey(survey).files.items()}


def read_json(engine, location: str):
    bucket, key = location.removeprefix("s3://").split("/", 1)
    return json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def tree_requests(tree: BlsTree) -> list[str]:
    return sorted(r.path for r in tree.all_requests() if r.path.startswith(tree.base_path))


def test_three_surveys_are_mirrored_byte_identical_with_their_filters_each_under_its_own_folder(tree, make_engine):
    for survey in ("pr", "cu", "ce"):
        serve(tree, survey, files_of(survey))
    tree.survey("ce").put("ce.data.0.AllData", b"all of ce\r\n" * 100)
    tree.survey("other").put("other.txt", b"not asked for\r\n")
    engine = make_engine(tree.url, Surveys="pr,cu,ce", SurveyFilters="ce:exclude=*.AllData")

    result = engine.execute()

    assert result.succeeded, result.cause
    for survey in ("pr", "cu", "ce"):
        assert mirror_contents(engine.s3, engine.bucket, f"bls/{survey}/") == files_of(survey), survey
    assert mirror_contents(engine.s3, engine.bucket, "bls/other/") == {}
    assert "/pub/time.series/ce/ce.data.0.AllData" not in tree_requests(tree)
    assert not any(r.startswith("/pub/time.series/other/") for r in tree_requests(tree))
    mirror = result.output["mirror"]
    assert (mirror["surveys"], mirror["failed_surveys"], mirror["copied"], mirror["indexes_written"]) == (3, 0, 10, 3)
    entered = [e["stateEnteredEventDetails"]["name"] for e in engine.history(result.arn) if "stateEnteredEventDetails" in e]
    assert entered.count("CopyFiles") == 1, "one map run for every survey's copies"
    manifest = read_json(engine, result.output["changes"]["manifest"])
    assert manifest["manifest_version"] == 2 and sorted(manifest["surveys"]) == ["ce", "cu", "pr"]
    assert manifest["totals"]["added"] == 10 and manifest["totals"]["surveys"] == 3
    ce = manifest["surveys"]["ce"]
    assert ce["filters"] == {"include": [], "exclude": ["*.AllData"]} and ce["failure"] is None
    assert ce["mirror"] == f"s3://{engine.bucket}/bls/ce/" and ce["source_url"] == tree.url + "ce/"
    assert sorted(f["name"] for f in ce["files"]) == sorted(files_of("ce"))
    assert [e["detail"]["survey"] for e in engine.events] == ["ce", "cu", "pr"]  # one event per changed survey
    for survey in ("pr", "cu", "ce"):
        index = engine.s3.get_object(Bucket=engine.bucket, Key=f"pipeline/index/bls/{survey}/index.json")
        assert sorted(json.loads(index["Body"].read())["files"]) == sorted(files_of(survey))
    latest = engine.s3.get_object(Bucket=engine.bucket, Key="reports/latest/inputs.json")
    assert json.loads(latest["Body"].read())["inputs"]["data"]["key"] == "bls/pr/pr.data.0.Current"

    tree.reset_log()
    again = engine.execute()

    assert again.succeeded and again.output["mirror"]["copied"] == 0
    assert tree_requests(tree) == [f"/pub/time.series/{s}/" for s in ("ce", "cu", "pr")]  # one listing per survey


def test_star_mirrors_every_directory_the_tree_lists_with_one_more_request(tree, make_engine):
    for survey in ("ap", "cu", "la"):
        serve(tree, survey, files_of(survey, 2))
    engine = make_engine(tree.url, Surveys="*")

    result = engine.execute()

    assert result.succeeded, result.cause
    for survey in ("ap", "cu", "la"):
        assert mirror_contents(engine.s3, engine.bucket, f"bls/{survey}/") == files_of(survey, 2)
    tree.reset_log()
    serve(tree, "ce", files_of("ce", 1))  # a new survey appears in the tree

    again = engine.execute()

    assert again.succeeded, again.cause
    assert again.output["reports"]["skipped"].startswith("no s3://"), "without pr, Analytics says why in one line"
    listings = ["/pub/time.series/"] + [f"/pub/time.series/{s}/" for s in ("ap", "ce", "cu", "la")]
    assert tree_requests(tree) == sorted(listings + ["/pub/time.series/ce/ce.file.0"])
    assert mirror_contents(engine.s3, engine.bucket, "bls/ce/") == files_of("ce", 1)
    tree.reset_log()
    assert engine.execute().output["mirror"]["copied"] == 0
    assert tree_requests(tree) == sorted(listings), "a no-op: the tree's listing and one per survey"


def test_a_survey_s_directory_given_as_the_tree_is_a_config_error_before_any_download(tree, make_engine):
    """An old-style URL (.../time.series/pr/) is refused by its shape; with '*', a tree URL whose listing shows files
    but no directories is one survey's directory: refused after that one listing, nothing copied or deleted."""
    serve(tree, "pr", files_of("pr"))
    engine = make_engine(tree.url, Surveys="*")

    old_style = engine.execute({"source_url": tree.url + "pr/"})

    assert old_style.error == "ConfigError" and "names the survey directory 'pr'" in old_style.cause
    assert "Surveys=pr" in old_style.cause and tree_requests(tree) == []
    with BlsServer(base_path="/data/pr/") as directory:
        directory.put("pr.class", b"class\r\n")
        result = engine.execute({"source_url": directory.url})
        assert [r.path for r in directory.requests] == ["/data/pr/"]
    assert result.error == "ConfigError" and "shows files but no directories" in result.cause
    assert mirror_contents(engine.s3, engine.bucket, "bls/") == {}


def test_one_survey_s_failure_does_not_stop_the_others_and_the_execution_fails_at_the_end_naming_each(tree, make_engine):
    surveys = ("pr", "cu", "ce", "la")
    for survey in surveys:
        serve(tree, survey, files_of(survey, 4))
    engine = make_engine(tree.url, Surveys=",".join(surveys), RetryMaxAttempts="1")
    assert engine.execute().succeeded
    before = {s: mirror_contents(engine.s3, engine.bucket, f"bls/{s}/") for s in surveys}
    # ce: its listing answers 404. cu: 3 of its 4 files are gone (the prune guard refuses). pr: one new file cannot
    # be read (404), another changed and is copied. la: a file changed, one added, one removed: all fine.
    tree.survey("ce").add_faults("", status(404))
    tree.survey("ce").put("ce.file.9", b"never listed\r\n")
    for n in (0, 1, 2):
        tree.survey("cu").remove(f"cu.file.{n}")
    tree.survey("cu").put("cu.new", b"new in cu\r\n", LATER)
    tree.survey("pr").put("pr.missing", b"listed, then 404\r\n", LATER)
    tree.survey("pr").add_faults("pr.missing", status(404))
    tree.survey("pr").put("pr.file.0", b"pr changed\r\n", LATER)
    tree.survey("la").put("la.file.1", b"la changed\r\n", LATER)
    tree.survey("la").put("la.new", b"la added\r\n", LATER)
    tree.survey("la").remove("la.file.3")

    result = engine.execute()

    assert result.status == "FAILED" and result.error == "SurveysFailed", (result.error, result.cause)
    cause = result.cause
    assert cause.startswith("3 of 4 survey(s) failed, 1 file(s) could not be copied after retries: ")
    assert "ce: SourceNotFound: HTTP 404" in cause and "/pub/time.series/ce/" in cause
    assert "cu: PruneGuardError: pruning would delete 3 of the 4 files the mirror under bls/cu/" in cause
    assert "pr: 1 file(s) could not be copied after retries: pr.missing: SourceNotFound" in cause
    run = result.arn.rsplit(":", 1)[-1]
    assert cause.endswith(f"; see s3://{engine.bucket}/pipeline/runs/{run}/manifest.json")
    # The others are mirrored exactly; the failed parts are left as they were.
    assert mirror_contents(engine.s3, engine.bucket, "bls/la/") == source_of(tree, "la")
    assert mirror_contents(engine.s3, engine.bucket, "bls/ce/") == before["ce"]
    assert mirror_contents(engine.s3, engine.bucket, "bls/cu/") == {**before["cu"], "cu.new": b"new in cu\r\n"}
    pr = mirror_contents(engine.s3, engine.bucket, "bls/pr/")
    assert pr == {**before["pr"], "pr.file.0": b"pr changed\r\n"} and "pr.missing" not in pr
    # The run went on to the population and the reports, then failed.
    entered = [e["stateEnteredEventDetails"]["name"] for e in engine.history(result.arn) if "stateEnteredEventDetails" in e]
    assert entered[-3:] == ["Analytics", "CheckCopies", "MirrorFailed"]
    manifest = read_json(engine, f"s3://{engine.bucket}/pipeline/runs/{run}/manifest.json")
    assert manifest["failure"] == {"error": "SurveysFailed", "cause": cause}
    sections = manifest["surveys"]
    assert (sections["ce"]["failure"]["step"], sections["ce"]["files"]) == ("ListSource", [])
    assert sections["cu"]["failure"]["error"] == "PruneGuardError"
    assert {f["name"]: f["outcome"] for f in sections["cu"]["files"]}["cu.new"] == "added"
    assert sections["pr"]["failure"] is None and sections["pr"]["totals"]["failed"] == 1
    assert sections["la"]["failure"] is None and (sections["la"]["totals"]["changed"], sections["la"]["totals"]["added"],
                                                  sections["la"]["totals"]["deleted"]) == (1, 1, 1)
    assert manifest["totals"]["failed_surveys"] == 3
    events = {e["detail"]["survey"] for e in engine.events[-3:]}
    assert {"la", "pr", "cu"} <= events  # the surveys that changed still tell their subscribers

    tree.survey("ce").clear_faults()
    tree.survey("pr").clear_faults()
    healed = engine.execute({"force_prune": True})

    assert healed.succeeded, healed.cause
    for survey in surveys:
        assert mirror_contents(engine.s3, engine.bucket, f"bls/{survey}/") == source_of(tree, survey), survey


def test_a_garbage_listing_of_one_survey_is_named_and_the_others_succeed_in_a_dry_run_too(tree, make_engine):
    for survey in ("pr", "cu"):
        serve(tree, survey, files_of(survey))
    tree.survey("cu").listing_override = lambda page: (200, "<html><body>Service Unavailable</body></html>")
    engine = make_engine(tree.url, Surveys="pr,cu")

    dry = engine.execute({"dry_run": True})

    assert dry.status == "FAILED" and dry.error == "ListingError", dry.cause
    assert dry.cause.startswith("1 of 2 survey(s) failed: cu: ListingError: the listing at ") and "has no file rows" in dry.cause
    assert mirror_contents(engine.s3, engine.bucket, "bls/") == {}

    result = engine.execute()

    assert result.error == "ListingError"
    assert mirror_contents(engine.s3, engine.bucket, "bls/pr/") == files_of("pr")
    assert mirror_contents(engine.s3, engine.bucket, "bls/cu/") == {}


def test_three_surveys_at_one_request_per_second_never_see_two_requests_in_one_second(tree, make_engine, capsys):
    for survey in ("pr", "cu", "ce"):
        serve(tree, survey, files_of(survey, 2))
    tree.max_requests_per_second = 1  # BLS blocks a faster client, whatever directory it asks
    tree.survey("cu").add_faults("", status(503))  # a listing retried inside ListSource, under the same rate
    tree.survey("ce").add_faults("ce.file.1", status(503))  # a copy retried by the state machine
    engine = make_engine(tree.url, Surveys="pr,cu,ce", SourceRequestsPerSecond="1", PopulationRequestsPerSecond="1",
                         CopyConcurrency="4")
    started = time.monotonic()

    result = engine.execute()

    times = [r.at for r in tree.all_requests()]
    peak = peak_requests_per_second(times)
    with capsys.disabled():
        print(f"\n3 surveys at 1/s: {len(times)} requests in {time.monotonic() - started:.1f} s, peak {peak}")
    assert result.succeeded, (result.error, result.cause)
    assert not tree.blocked and peak <= 1
    # 3 listings and a repeat, 7 files and a repeat, the population
    assert len(times) == 3 + 1 + 7 + 1 + 1
    for survey in ("pr", "cu", "ce"):
        assert mirror_contents(engine.s3, engine.bucket, f"bls/{survey}/") == source_of(tree, survey)


def largest_payload(engine, result) -> int:
    sizes = [len(details[key]) for event in engine.history(result.arn) for name, details in event.items()
             if name.endswith("EventDetails") and isinstance(details, dict)
             for key in ("input", "output") if isinstance(details.get(key), str)]
    assert sizes, "the history has no state inputs or outputs"
    return max(sizes)


def test_the_largest_state_payload_stays_small_and_does_not_grow_with_the_number_of_surveys(tree, make_engine):
    names = [f"s{n:02d}" for n in range(10)]
    for survey in names:
        serve(tree, survey, files_of(survey, 8))
    engine = make_engine(tree.url)

    three = engine.execute({"surveys": ",".join(names[:3])})
    ten = engine.execute({"surveys": ",".join(names)})

    assert three.succeeded and ten.succeeded, (three.cause, ten.cause)
    small, large = largest_payload(engine, three), largest_payload(engine, ten)
    assert small < 8 * 1024, small
    # Only totals, S3 keys and the first 20 names travel (24 files in three surveys already fill them): seven more
    # surveys and 56 more files add only the longer "surveys" value of the execution input (28 characters).
    assert large - small <= 2 * 28 + 8, (small, large)


def test_the_cause_names_the_first_failures_then_how_many_more_and_the_manifest_however_many_fail():
    manifest = "s3://bucket/pipeline/runs/run/manifest.json"
    surveys = [SurveyFailure(f"s{n:02d}", "ListSource", "ListingError", "x" * 5000) for n in range(60)]
    files = [CopyFailure(f"f{n}", "SourceNotFound", "HTTP 404 " + "y" * 2000, "pr") for n in range(3000)]

    error, cause = run_verdict(61, surveys, files, manifest)

    assert error == "SurveysFailed" and len(cause) <= MAX_FAILURE_CAUSE
    assert cause.startswith("61 of 61 survey(s) failed, 3000 file(s) could not be copied after retries: s00: ListingError")
    assert cause.endswith(f"; and {60 + 3000 - 20} more, see {manifest}")
    assert run_verdict(2, [], [CopyFailure("a", "SourceBlocked", "HTTP 403", "pr")], manifest)[0] == "SourceBlocked"
    assert run_verdict(2, [], [CopyFailure("a", "SourceNotFound", "HTTP 404", "pr")], manifest)[0] == "CopyFailed"
    assert run_verdict(2, surveys[:2], [], manifest)[0] == "ListingError"
    assert run_verdict(2, [], [], manifest) is None
