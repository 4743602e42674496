"""The fault matrix: each fault of the source, the population API, the data, S3 or the timing, through the real state
machine on the local engine, after a clean run has filled the mirror.

For every case: the execution ends in the expected state with a cause that names the file or the API and the
reason; every object a fault did not legitimately touch keeps its exact version (bytes and metadata); and once the
fault is gone, the next run leaves the mirror equal to the source.

One engine and one BLS-like server serve the whole module: the clean first run happens once, and each case starts
from a bucket restored to exactly what that run left (starting an engine per case would double the module's time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Iterator

import pytest

from bls_pipeline.bls_listing import parse_listing
from local_runner.engine import LocalEngine
from bls_loopback.server import (
    BlsServer,
    ServedFile,
    answer_then_republish,
    declared_short,
    drip_then_stall,
    gzip_encoded,
    html_error_page,
    no_length_cut,
    partial_without_range,
    redirect_to,
    reset_mid_body,
    short_body,
    status,
)
from bls_loopback.population import POPULATION_PATH, population_json
from tests.conftest import CONTACT, engine_parameters

MIRROR = "bls/pr/"
POPULATION_KEY = "datausa/population.json"
STAGING = "pipeline/staging/"
LATER = dt.datetime(2026, 9, 3, 8, 30)
MiB = 1024 * 1024

DATA = b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\n" + b"".join(
    f"PRS30006032     \t{y}\tQ0{q}\t{(y + q) % 7}.5\t\r\n".encode() for y in range(2010, 2022) for q in (1, 2)
)
FILES = {
    "pr.class": b"class_code\tclass_text\r\n0\tAll workers\r\n",
    "pr.data.0.Current": DATA,
    "pr.period": b"period\tperiod_abbr\tperiod_name\r\nQ01\tQTR1\t1st Quarter\r\n",
    "pr.series": b"series_id\tsector_code\r\n" + b"PRS30006032\t3000\r\n" * 50,
}
NEW_SERIES = FILES["pr.series"] + b"PRS30006033\t3000\r\n" * 20


# -- the mirror, observed ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    version_id: str
    body: bytes
    metadata: dict


def snapshot(engine) -> dict[str, Version]:
    """Every mirror object and the population file, by name (the population under its key)."""
    found = {}
    for prefix in (MIRROR, POPULATION_KEY):
        for page in engine.s3.get_paginator("list_objects_v2").paginate(Bucket=engine.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                got = engine.s3.get_object(Bucket=engine.bucket, Key=obj["Key"])
                name = obj["Key"][len(MIRROR):] if prefix == MIRROR else obj["Key"]
                found[name] = Version(got["VersionId"], got["Body"].read(), got["Metadata"])
    return found


def assert_nothing_partial(engine) -> None:
    assert engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=STAGING).get("KeyCount") == 0, "staging leftovers"
    assert engine.s3.list_multipart_uploads(Bucket=engine.bucket).get("Uploads", []) == [], "unfinished uploads"


def assert_mirror_equals_source(engine, bls: BlsServer) -> None:
    """Byte for byte, with the metadata the next run relies on; nothing else under the prefix."""
    now = snapshot(engine)
    listed = {f.name: f for f in parse_listing(bls.listing_html(), bls.url)}
    assert {n: v.body for n, v in now.items() if n != POPULATION_KEY} == {n: f.body for n, f in bls.files.items()}
    for name, served in bls.files.items():
        meta = now[name].metadata
        assert meta["source-stamp"] == listed[name].stamp, name
        assert meta["source-size"] == str(len(served.body)), name
        assert meta["sha256"] == hashlib.sha256(served.body).hexdigest(), name
    assert_nothing_partial(engine)


def cause_text(result) -> str:
    """The execution's cause as a person reads it: a Lambda error's message, or the Fail state's cause."""
    try:
        parsed = json.loads(result.cause or "")
    except json.JSONDecodeError:
        return result.cause or ""
    return parsed.get("errorMessage", result.cause) if isinstance(parsed, dict) else result.cause


def copy_errors(result, name: str) -> list[str]:
    return [
        i.error_type or "" for i in result.invocations
        if i.function == "CopyFileFunction" and i.event.get("file", {}).get("name") == name
    ]


# -- faults that are not the source's: S3 answers and hung functions -----------------------------------------------
def s3_answers(engine: LocalEngine, operation: str, key: str, http_status: int, parsed: dict) -> Callable[[], None]:
    """Make the functions' S3 clients get `parsed` (with `http_status`) for `operation` on `key`, instead of asking
    S3; returns the undo."""
    seen = threading.local()

    def remember(params: dict, **_: object) -> None:
        keys = [o["Key"] for o in params["Delete"]["Objects"]] if operation == "DeleteObjects" else [params.get("Key")]
        seen.hit = key in keys

    def answer(**_: object):
        if getattr(seen, "hit", False):
            return SimpleNamespace(status_code=http_status, headers={}), parsed
        return None

    undo_remember = engine.on_s3(f"before-parameter-build.s3.{operation}", remember)
    undo_answer = engine.on_s3(f"before-call.s3.{operation}", answer)

    def undo() -> None:
        undo_remember()
        undo_answer()

    return undo


ACCESS_DENIED = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}


def hang_put(engine: LocalEngine, key: str, seconds: float) -> Callable[[], None]:
    """A PutObject of `key` that hangs for `seconds` and then dies, as a function killed at its timeout would."""

    def hang(params: dict, **_: object) -> None:
        if params.get("Key") == key:
            time.sleep(seconds)
            raise RuntimeError("the sandbox was killed")

    return engine.on_s3("before-parameter-build.s3.PutObject", hang)


# -- the cases ---------------------------------------------------------------------------------------------------
@dataclass
class Scene:
    bls: BlsServer
    engine: LocalEngine
    before: dict[str, Version]
    timeouts: dict[str, float]  # the template's
    undo: list[Callable[[], None]] = field(default_factory=list)
    s3_calls: Counter = field(default_factory=Counter)  # operations counted by count_s3_calls


@dataclass(frozen=True)
class Case:
    id: str
    fault: Callable[[Scene], None]  # changes the source and arms the fault
    status: str
    error: str | None
    says: tuple[str, ...] = ()  # what the cause must name
    updated: frozenset[str] = frozenset()  # mirror names the faulty run must still bring up to date; no others
    check: Callable[[Scene, object], None] | None = None
    retries: int = 1  # the state machine's RetryMaxAttempts
    timeouts: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.id


def change_source(scene: Scene) -> None:
    """What BLS does between two runs: a file changes and a file appears. A broken run must not do either."""
    scene.bls.put("pr.class", FILES["pr.class"] + b"1\tProduction workers\r\n", LATER)
    scene.bls.put("pr.footnote", b"footnote_code\tfootnote_text\r\nP\tpreliminary\r\n", LATER)


CHANGED = frozenset({"pr.class", "pr.footnote"})


def series_changes(*faults) -> Callable[[Scene], None]:
    """The common changes, plus a new pr.series whose downloads meet `faults`."""

    def apply(scene: Scene) -> None:
        change_source(scene)
        scene.bls.put("pr.series", NEW_SERIES, LATER)
        scene.bls.add_faults("pr.series", *faults)

    return apply


def listing_fault(*faults, override=None) -> Callable[[Scene], None]:
    def apply(scene: Scene) -> None:
        change_source(scene)
        scene.bls.add_faults("", *faults)
        if override is not None:
            scene.bls.listing_override = override

    return apply


def population_fault(*faults, route: bytes | None = None) -> Callable[[Scene], None]:
    def apply(scene: Scene) -> None:
        change_source(scene)
        scene.bls.add_faults(POPULATION_PATH, *faults)
        if route is not None:
            scene.bls.route(POPULATION_PATH, route)

    return apply


def no_file_requests(scene: Scene, result) -> None:
    assert scene.bls.file_requests() == [], "a failed listing must not lead to any download"


def listing_requests(count: int) -> Callable[[Scene, object], None]:
    def check(scene: Scene, result) -> None:
        no_file_requests(scene, result)
        assert len(scene.bls.requests_for()) == count

    return check


def series_requests(statuses: list[int], errors: list[str]) -> Callable[[Scene, object], None]:
    def check(scene: Scene, result) -> None:
        assert [r.status for r in scene.bls.requests_for("pr.series")] == statuses
        assert [e for e in copy_errors(result, "pr.series") if e] == errors

    return check


def population_requests(count: int) -> Callable[[Scene, object], None]:
    def check(scene: Scene, result) -> None:
        assert len(scene.bls.requests_to(POPULATION_PATH)) == count

    return check


def empty_listing(page: str) -> tuple[int, str]:
    return 200, BlsServer().listing_html()  # the same page, with no rows: only [To Parent Directory]


def layout_only(style: str) -> Callable[[Scene], None]:
    """The listing changes its layout and gains sub-directories (<dir> rows); the files keep their stamps."""

    def apply(scene: Scene) -> None:
        change_source(scene)
        scene.bls.listing_style = style
        scene.bls.directories = ["archive", "old.files"]

    return apply


def layout_check(scene: Scene, result) -> None:
    assert sorted(r.path.rsplit("/", 1)[1] for r in scene.bls.file_requests()) == sorted(CHANGED)
    assert not any("archive" in r.path or "old.files" in r.path for r in scene.bls.requests_for())
    assert result.output["mirror"]["unchanged"] == 3


def retry_after_long(scene: Scene, result) -> None:
    series_requests([429, 200], ["TransientSourceError"])(scene, result)
    [failed] = [i for i in result.invocations if i.error_type and i.event.get("file", {}).get("name") == "pr.series"]
    assert "HTTP 429" in failed.error_message and "retry after 3600 s" in failed.error_message


def bad_data(scene: Scene) -> None:
    rows = DATA + (b"PRS30006032     \t2022\tQ01\t   (NA)\t\r\n"  # line 26: a value that is not a number
                   b"PRS30006032     \t2022\tQ02\r\n"  # line 27: columns missing
                   b"PRS30006032     \t2023\tQ01\t 9.5\t\r\n")
    scene.bls.put("pr.data.0.Current", rows, LATER)


def bad_data_check(scene: Scene, result) -> None:
    reports = result.output["reports"]
    assert (reports["bad_rows"], reports["bad_row_lines"], reports["rows_read"]) == (2, [26, 27], 27)
    latest = json.loads(scene.engine.s3.get_object(
        Bucket=scene.engine.bucket, Key="reports/latest/series_population.json")["Body"].read())
    assert [r["year"] for r in latest][-2:] == [2021, 2023], "the good rows around the bad ones are reported"


def slow_check(scene: Scene, result) -> None:
    errors = copy_errors(result, "pr.series")
    assert errors == ["TransientSourceError", "TransientSourceError"], "the function must give up before its timeout"


def killed_check(scene: Scene, result) -> None:
    assert copy_errors(result, "pr.series") == ["Sandbox.Timedout"] * 2, "a timed-out copy is tried once more"


def hard_timeout(scene: Scene) -> None:
    change_source(scene)
    scene.bls.put("pr.series", NEW_SERIES, LATER)
    scene.undo.append(hang_put(scene.engine, MIRROR + "pr.series", seconds=1.3))


def delete_refused(scene: Scene) -> None:
    change_source(scene)
    scene.bls.remove("pr.period")
    scene.undo.append(s3_answers(scene.engine, "DeleteObjects", MIRROR + "pr.period", 200, {
        "Deleted": [],
        "Errors": [{"Key": MIRROR + "pr.period", "Code": "AccessDenied", "Message": "Access Denied"}],
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }))


def put_refused(scene: Scene) -> None:
    change_source(scene)
    scene.bls.put("pr.series", NEW_SERIES, LATER)
    scene.undo.append(s3_answers(scene.engine, "PutObject", MIRROR + "pr.series", 403, ACCESS_DENIED))


LARGE = {"SINGLE_PUT_LIMIT_BYTES": str(64 * 1024), "PART_SIZE_BYTES": str(5 * MiB)}


def count_s3_calls(scene: Scene, *operations: str) -> None:
    def count(model, **_: object) -> None:
        scene.s3_calls[model.name] += 1

    for operation in operations:
        scene.undo.append(scene.engine.on_s3(f"before-parameter-build.s3.{operation}", count))


def large_series(*faults) -> Callable[[Scene], None]:
    def apply(scene: Scene) -> None:
        change_source(scene)
        scene.bls.put("pr.series", os.urandom(6 * MiB), LATER)
        scene.bls.add_faults("pr.series", *faults)
        count_s3_calls(scene, "CreateMultipartUpload", "AbortMultipartUpload")

    return apply


def multipart_aborted(scene: Scene, result) -> None:
    assert scene.s3_calls == {"CreateMultipartUpload": 2, "AbortMultipartUpload": 2}


def ranged_copy_retried(scene: Scene, result) -> None:
    """The first attempt read its two ranges from two versions and gave up; the retry read both from the new one."""
    assert scene.s3_calls == {"CreateMultipartUpload": 2, "AbortMultipartUpload": 1}
    assert [r.status for r in scene.bls.requests_for("pr.series")] == [206] * 4
    assert [e for e in copy_errors(result, "pr.series") if e] == ["TransientSourceError"]


# -- answers that succeed with the wrong thing: the good mirrored data file keeps its exact version ------------------
NEW_DATA = DATA + b"PRS30006032     \t2022\tQ01\t4.5\t\r\n"
DATA_YEARS = list(range(2010, 2022))


def data_changes(*faults) -> Callable[[Scene], None]:
    """BLS publishes a new pr.data.0.Current; what arrives for it is `faults` (one per attempt)."""

    def apply(scene: Scene) -> None:
        change_source(scene)
        scene.bls.put("pr.data.0.Current", NEW_DATA, LATER)
        scene.bls.add_faults("pr.data.0.Current", *faults)

    return apply


def data_redirected(where: Callable[[BlsServer], str]) -> Callable[[Scene], None]:
    def apply(scene: Scene) -> None:
        data_changes(redirect_to(where(scene.bls)))(scene)

    return apply


def reports_from_the_good_data(scene: Scene, result) -> None:
    latest = json.loads(scene.engine.s3.get_object(
        Bucket=scene.engine.bucket, Key="reports/latest/series_population.json")["Body"].read())
    assert [r["year"] for r in latest] == DATA_YEARS, "the reports are computed from the good file, not the bad answer"


def asked_once(scene: Scene, result) -> None:
    reports_from_the_good_data(scene, result)
    assert len(scene.bls.requests_for("pr.data.0.Current")) == 1, "a refused redirect is neither followed nor retried"


def absurd_values(scene: Scene) -> None:
    rows = DATA + (b"PRS30006032     \t2022\tQ01\t1e5000\t\r\n"  # line 26
                   b"PRS30006032     \t2022\tQ02\t1e999999999\t\r\n"  # line 27
                   b"PRS30006032     \t2023\tQ01\t 9.5\t\r\n")
    scene.bls.put("pr.data.0.Current", rows, LATER)


def absurd_values_check(scene: Scene, result) -> None:
    reports = result.output["reports"]
    assert (reports["bad_rows"], reports["bad_row_lines"]) == (2, [26, 27])
    latest = json.loads(scene.engine.s3.get_object(
        Bucket=scene.engine.bucket, Key="reports/latest/series_population.json")["Body"].read())
    assert [r["year"] for r in latest][-2:] == [2021, 2023]


def population_records(records: list[str]) -> bytes:
    return ('{"data": [' + ", ".join(records) + "]}").encode()


WRONG = ("pr.data.0.Current: TransientSourceError", "nothing was written")

CASES = [
    # -- the listing: nothing may be copied or deleted --------------------------------------------------------------
    Case("listing-403", listing_fault(status(403)), "FAILED", "SourceBlocked",
         ("HTTP 403: it blocks this client", "contact information", CONTACT), check=listing_requests(1)),
    Case("listing-500", listing_fault(status(500), status(500)), "FAILED", "TransientSourceError",
         ("HTTP 500 from http://127.0.0.1", "/pub/time.series/pr/", "retried with backoff"), check=listing_requests(2)),
    Case("listing-html-error-page",
         listing_fault(override=lambda page: (200, "<html><body><h1>Service Unavailable</h1></body></html>")),
         "FAILED", "ListingError", ("has no file rows", "nothing was copied or deleted", "Service Unavailable"),
         check=no_file_requests),
    Case("listing-empty", listing_fault(override=empty_listing), "FAILED", "ListingError",
         ("lists no files at all", "nothing was copied or deleted"), check=no_file_requests),
    Case("listing-dir-rows", layout_only("iis"), "SUCCEEDED", None, updated=CHANGED, check=layout_check),
    Case("listing-other-spacing", layout_only("loose"), "SUCCEEDED", None, updated=CHANGED, check=layout_check),
    Case("listing-file-then-404", series_changes(status(404)), "FAILED", "CopyFailed",
         ("pr.series: SourceNotFound", "does not exist at the source"), updated=CHANGED,
         check=series_requests([404], ["SourceNotFound"])),
    # -- one file's download ------------------------------------------------------------------------------------
    Case("file-503-twice", series_changes(status(503), status(503)), "SUCCEEDED", None,
         updated=CHANGED | {"pr.series"}, retries=2,
         check=series_requests([503, 503, 200], ["TransientSourceError", "TransientSourceError"])),
    Case("file-429-short-retry-after", series_changes(status(429, {"Retry-After": "1"})), "SUCCEEDED", None,
         updated=CHANGED | {"pr.series"}, check=series_requests([429, 200], [])),
    Case("file-429-long-retry-after", series_changes(status(429, {"Retry-After": "3600"})), "SUCCEEDED", None,
         updated=CHANGED | {"pr.series"}, check=retry_after_long),
    Case("file-reset-mid-body", series_changes(reset_mid_body(500), reset_mid_body(500)), "FAILED", "CopyFailed",
         ("pr.series: TransientSourceError", f"broke after 500 of {len(NEW_SERIES)} bytes", "reset the connection"),
         updated=CHANGED,
         check=series_requests([200, 200], ["TransientSourceError", "TransientSourceError"])),
    Case("file-short-body", series_changes(short_body(10), short_body(10)), "FAILED", "CopyFailed",
         ("pr.series: TransientSourceError", f"{len(NEW_SERIES) - 10} of {len(NEW_SERIES)} bytes",
          "before the end of the body (Content-Length)"), updated=CHANGED),
    Case("file-short-body-multipart", large_series(short_body(1000), short_body(1000)), "FAILED", "CopyFailed",
         ("pr.series: TransientSourceError", f"of {6 * MiB} bytes", "before the end of the body"), updated=CHANGED,
         env=LARGE, check=multipart_aborted),
    Case("file-republished-during-ranged-copy", large_series(answer_then_republish(LATER.replace(hour=10))),
         "SUCCEEDED", None, updated=CHANGED | {"pr.series"}, env={**LARGE, "RANGE_STREAMS": "4"},
         check=ranged_copy_retried),
    Case("file-slow-near-timeout", series_changes(drip_then_stall(1.4, 3), drip_then_stall(1.4, 3)),
         "FAILED", "CopyFailed",
         ("pr.series: TransientSourceError", "source too slow", "before its time limit"), updated=CHANGED,
         timeouts={"CopyFileFunction": 2.0}, check=slow_check),
    Case("function-killed-at-timeout", hard_timeout, "FAILED", "CopyFailed",
         ("pr.series: Sandbox.Timedout", "Task timed out after 1.00 seconds"), updated=CHANGED,
         timeouts={"CopyFileFunction": 1.0},
         check=killed_check),
    # -- the population API: the stored file stays ----------------------------------------------------------------
    Case("population-502", population_fault(status(502), status(502)), "FAILED", "TransientSourceError",
         ("HTTP 502 from http://127.0.0.1", POPULATION_PATH), updated=CHANGED, check=population_requests(2)),
    Case("population-html-200", population_fault(status(200)), "FAILED", "PopulationFormatError",
         ("DataUSA did not answer with JSON", "<html>", "datausa/population.json was left as it was"), updated=CHANGED, check=population_requests(1)),
    Case("population-unknown-shape",
         population_fault(route=b'{"error": "cube acs_yg_total_population_1 not found"}'), "FAILED",
         "PopulationFormatError", ("no 'data' list", "['error']", "unknown shape", POPULATION_PATH), updated=CHANGED),
    Case("population-empty-data", population_fault(route=b'{"data": [], "page": {"total": 0}}'), "FAILED",
         "PopulationFormatError", ("empty 'data' list", "population.json was left as it was"), updated=CHANGED),
    Case("population-404", population_fault(status(404)), "FAILED", "SourceNotFound",
         ("HTTP 404", POPULATION_PATH, "does not exist"), updated=CHANGED),
    # -- the data: bad rows are skipped, counted and named; the reports are made ----------------------------------
    Case("data-bad-rows", bad_data, "SUCCEEDED", None, updated=frozenset({"pr.data.0.Current"}), check=bad_data_check),
    # -- S3 refuses a write or a delete ---------------------------------------------------------------------------
    Case("s3-put-refused", put_refused, "FAILED", "CopyFailed",
         ("pr.series: MirrorWriteError", "PutObject of s3://bls-mirror-local/bls/pr/pr.series", "AccessDenied"),
         updated=CHANGED),
    Case("s3-delete-refused", delete_refused, "FAILED", "MirrorWriteError",
         ("refused to delete", "s3://bls-mirror-local/bls/pr/pr.period", "AccessDenied"), updated=CHANGED),
    # -- answers that succeed with the wrong thing ---------------------------------------------------------------------
    Case("data-no-length-cut-short", data_changes(no_length_cut(300), no_length_cut(300)), "FAILED", "CopyFailed",
         (*WRONG, "delivered 300 bytes, but the listing states"), updated=CHANGED, check=reports_from_the_good_data),
    Case("data-content-length-too-small", data_changes(declared_short(40), declared_short(40)), "FAILED", "CopyFailed",
         (*WRONG, "but the listing states"), updated=CHANGED, check=reports_from_the_good_data),
    Case("data-206-to-a-whole-file-request", data_changes(partial_without_range, partial_without_range), "FAILED",
         "CopyFailed", (*WRONG, "206 Partial Content to a request for the whole file"), updated=CHANGED,
         check=reports_from_the_good_data),
    Case("data-gzip-encoded", data_changes(gzip_encoded, gzip_encoded), "FAILED", "CopyFailed",
         (*WRONG, "Content-Encoding 'gzip'"), updated=CHANGED, check=reports_from_the_good_data),
    Case("data-html-page-with-200", data_changes(html_error_page, html_error_page), "FAILED", "CopyFailed",
         (*WRONG, "but the listing states"), updated=CHANGED, check=reports_from_the_good_data),
    Case("data-redirected-to-another-host",
         data_redirected(lambda bls: bls.root.replace("127.0.0.1", "localhost") + "/pub/time.series/pr/pr.data.0.Current"),
         "FAILED", "CopyFailed", ("pr.data.0.Current: SourceAddressError", "redirected to another scheme or host"),
         updated=CHANGED, check=asked_once),
    Case("data-redirected-to-link-local", data_redirected(lambda bls: "http://169.254.169.254/latest/meta-data/"),
         "FAILED", "CopyFailed", ("pr.data.0.Current: SourceAddressError", "169.254.169.254"),
         updated=CHANGED, check=asked_once),
    Case("data-absurd-values", absurd_values, "SUCCEEDED", None, updated=frozenset({"pr.data.0.Current"}),
         check=absurd_values_check),
    Case("population-duplicate-year", population_fault(route=population_records(
        ['{"Year": 2013, "Population": 316128839}', '{"Year": 2013, "Population": 316128840}'])), "FAILED",
        "PopulationFormatError", ("lists the year 2013 twice", POPULATION_PATH, "left as it was"), updated=CHANGED),
    Case("population-nan", population_fault(route=population_records(['{"Year": 2013, "Population": NaN}'])),
         "FAILED", "PopulationFormatError", ("NaN is not a number JSON allows", "left as it was"), updated=CHANGED),
    Case("population-thousands", population_fault(route=population_records(['{"Year": 2013, "Population": 316128}'])),
         "FAILED", "PopulationFormatError", ("implausible year or population", "left as it was"), updated=CHANGED),
]


# -- the stage: one server, one engine, a bucket restored before each case -----------------------------------------
@dataclass
class Stage:
    bls: BlsServer
    engine: LocalEngine
    filled: dict[str, dict]  # key -> the object the clean first run left: body, metadata, content type
    timeouts: dict[str, float]


def serve_fresh(bls: BlsServer) -> None:
    bls.files = {name: ServedFile(body, dt.datetime(2026, 8, 6, 8, 30)) for name, body in FILES.items()}
    bls.clear_faults()
    bls.listing_override = None
    bls.listing_style = "iis"
    bls.directories = []
    bls.route(POPULATION_PATH, population_json())


def bucket_objects(engine: LocalEngine) -> dict[str, dict]:
    found = {}
    for page in engine.s3.get_paginator("list_objects_v2").paginate(Bucket=engine.bucket):
        for obj in page.get("Contents", []):
            got = engine.s3.get_object(Bucket=engine.bucket, Key=obj["Key"])
            found[obj["Key"]] = {"body": got["Body"].read(), "metadata": got["Metadata"], "type": got["ContentType"]}
    return found


def restore_bucket(engine: LocalEngine, filled: dict[str, dict]) -> None:
    s3, bucket = engine.s3, engine.bucket
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if doomed:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for key, obj in filled.items():
        s3.put_object(Bucket=bucket, Key=key, Body=obj["body"], Metadata=obj["metadata"], ContentType=obj["type"])
    engine.purge_queues()  # restoring the population file is not a new one


@pytest.fixture(scope="module")
def stage() -> Iterator[Stage]:
    with BlsServer() as bls:
        serve_fresh(bls)
        with LocalEngine(engine_parameters(bls.url, RetryMaxAttempts="1"),
                         extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as engine:
            first = engine.execute()
            assert first.succeeded, first.cause
            assert_mirror_equals_source(engine, bls)
            yield Stage(bls, engine, bucket_objects(engine), dict(engine.function_timeouts))


@pytest.fixture
def scene(stage: Stage) -> Iterator[Scene]:
    """The state a clean first run left, and the undo list for faults armed outside the server."""
    serve_fresh(stage.bls)
    restore_bucket(stage.engine, stage.filled)
    stage.bls.reset_log()
    scene = Scene(stage.bls, stage.engine, snapshot(stage.engine), stage.timeouts)
    yield scene
    remove_faults(scene)
    set_retries(stage.engine, 1)


def set_retries(engine: LocalEngine, attempts: int) -> None:
    if engine.parameters["RetryMaxAttempts"] != str(attempts):
        engine.redefine(RetryMaxAttempts=str(attempts))


def remove_faults(scene: Scene) -> None:
    scene.bls.clear_faults()
    scene.bls.listing_override = None
    scene.bls.listing_style = "iis"
    scene.bls.route(POPULATION_PATH, population_json())
    if scene.bls.files["pr.data.0.Current"].body != DATA:
        scene.bls.put("pr.data.0.Current", DATA, LATER + dt.timedelta(days=1))
    while scene.undo:
        scene.undo.pop()()
    scene.engine.join_overrunning()
    scene.engine.function_timeouts = dict(scene.timeouts)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_fault_fails_clearly_damages_nothing_and_the_next_run_heals(case: Case, scene: Scene, monkeypatch):
    engine, bls = scene.engine, scene.bls
    set_retries(engine, case.retries)
    engine.function_timeouts.update(case.timeouts)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    case.fault(scene)

    result = engine.execute()

    assert (result.status, result.error) == (case.status, case.error), result.cause
    cause = cause_text(result)
    for phrase in case.says:
        assert phrase in cause, f"the cause does not say {phrase!r}: {cause}"
    assert "errorType" not in cause, "the Map's Catch should have kept only the error's message"
    after = snapshot(engine)
    for name, version in scene.before.items():
        if name not in case.updated:
            assert after.get(name) == version, f"{name} was touched by the faulty run"
    for name in case.updated:
        assert after[name].body == bls.files[name].body, f"{name} should have been copied: the other files go on"
    assert set(after) - set(scene.before) <= case.updated, "the faulty run left objects it should not have"
    assert_nothing_partial(engine)
    if case.check is not None:
        case.check(scene, result)

    remove_faults(scene)
    healed = engine.execute()

    assert healed.succeeded, healed.cause
    assert_mirror_equals_source(engine, bls)
    assert snapshot(engine)[POPULATION_KEY] == scene.before[POPULATION_KEY]


# -- two executions on the same mirror -------------------------------------------------------------------------------
def mirror_versions(engine: LocalEngine) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for page in engine.s3.get_paginator("list_object_versions").paginate(Bucket=engine.bucket, Prefix=MIRROR):
        for version in page.get("Versions", []):
            body = engine.s3.get_object(Bucket=engine.bucket, Key=version["Key"], VersionId=version["VersionId"])["Body"].read()
            found.setdefault(version["Key"][len(MIRROR):], []).append(body)
    return found


def test_two_executions_started_together_both_succeed_and_leave_the_mirror_equal_to_the_source(scene: Scene):
    """Both plan the same copies and deletion. For each file one write lands; the other execution's conditional
    write finds the object already replaced and leaves it. Neither can leave a partial or foreign object."""
    engine, bls = scene.engine, scene.bls
    change_source(scene)
    bls.put("pr.series", NEW_SERIES, LATER)
    bls.remove("pr.period")

    first, second = engine.start(), engine.start()
    results = [engine.wait(first), engine.wait(second)]

    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"], [r.cause for r in results]
    assert_mirror_equals_source(engine, bls)
    for name, bodies in mirror_versions(engine).items():
        good = {scene.before[name].body} if name in scene.before else set()
        good |= {bls.files[name].body} if name in bls.files else set()
        assert set(bodies) <= good, f"{name} had a version that is neither the old nor the new file"
    assert engine.execute().succeeded
    assert_mirror_equals_source(engine, bls)


def test_an_execution_that_listed_earlier_never_undoes_what_a_later_one_copied(scene: Scene):
    """Execution A lists, then stalls writing pr.series; meanwhile BLS changes pr.series again and adds pr.new, and
    execution B copies both. When A goes on, its write of the older pr.series is refused (the object is not the
    version A planned against) and its prune spares pr.new (written after A listed)."""
    engine, bls = scene.engine, scene.bls
    bls.put("pr.series", NEW_SERIES, LATER)
    stalled, go_on = threading.Event(), threading.Event()

    def stall_first_write(params: dict, **_: object) -> None:
        if params.get("Key") == MIRROR + "pr.series" and not stalled.is_set():
            stalled.set()
            go_on.wait(30)

    scene.undo.append(engine.on_s3("before-parameter-build.s3.PutObject", stall_first_write))
    older = engine.start()
    assert stalled.wait(30), "execution A never reached its copy of pr.series"
    bls.put("pr.series", NEW_SERIES + b"PRS30006034\t3000\r\n", LATER + dt.timedelta(days=1))
    bls.put("pr.new", b"new file\r\n", LATER + dt.timedelta(days=1))

    newer = engine.execute()
    go_on.set()
    result = engine.wait(older)

    assert newer.succeeded and result.succeeded, (newer.cause, result.cause)
    assert result.output["mirror"]["spared_files"] == ["pr/pr.new"]
    assert_mirror_equals_source(engine, bls)
