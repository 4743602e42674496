"""Bad input of every kind ends in a clear error that names the cause, and nothing mirrored is lost.

The source's wrong-but-successful answers run through the fault matrix (tests/test_fault_matrix.py, "answers that
succeed with the wrong thing"); here: the prune guard, run overrides, source addresses, the population's shape,
and buffers sized by a listing's claim.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest

from bls_pipeline.bls_listing import SourceFile, name_problem, parse_listing
from bls_pipeline.config import ConfigError, Settings
from bls_pipeline.copier import CopyTarget, TransferSettings, copy_file
from bls_pipeline.population import PopulationFormatError, parse_population
from bls_pipeline.reports import OVERLONG_LINE, bounded_lines, compute_reports
from bls_pipeline.source_http import SourceAddressError, SourceClient, TransientSourceError, check_public_address
from tests.conftest import mirror_contents

ORIGINAL = {f"pr.old.{i}": f"old {i}\r\n".encode() for i in range(4)}


def test_a_listing_that_swaps_every_file_for_new_ones_cannot_empty_the_mirror(bls, make_engine) -> None:
    """Four mirrored files; the next listing drops all four and lists four new ones. Measured after the copies the
    deletion would be 50 % (4 of 8); measured against the mirror before the run it is 100 %: refused."""
    for name, body in ORIGINAL.items():
        bls.put(name, body)
    bls.put("pr.data.0.Current", b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\n")
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    for name in ORIGINAL:
        bls.remove(name)
        bls.put(name.replace("old", "new"), b"new\r\n")

    result = engine.execute()

    assert result.error == "PruneGuardError"
    assert "would delete 4 of the 5 files the mirror under bls/pr/ held before this run" in result.cause
    mirrored = mirror_contents(engine.s3, engine.bucket)
    assert {n: mirrored[n] for n in ORIGINAL} == ORIGINAL, "nothing of the previous mirror was deleted"


@pytest.mark.parametrize(("surveys", "says"), [
    ("..", "not a survey name: '..'"),
    (".", "not a survey name: '.'"),
    ("pr/archive", "not a survey name: 'pr/archive'"),
    ("pr,", "not a survey name: ''"),
    ("pr,*", "not a survey name: '*'"),
])
def test_a_survey_name_that_could_reach_outside_its_own_mirror_folder_is_refused(surveys: str, says: str) -> None:
    """Each survey is pruned under <MirrorRoot><survey>/: a name that is a path, or nests, would prune another's."""
    settings = Settings(bucket="b", contact_email="ops@example.com")
    with pytest.raises(ConfigError, match=says.replace(".", r"\.").replace("*", r"\*")):
        settings.with_overrides({"surveys": surveys})
    with pytest.raises(ConfigError, match="not a BLS survey directory name"):
        settings.for_survey("../reports")
    assert settings.with_overrides({"surveys": "ce"}).for_survey("ce").mirror_prefix == "bls/ce/"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/pub/", "http://[::1]/pub/", "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/pub/",
    "http://192.168.0.1/pub/", "http://172.16.5.4/pub/", "http://0.0.0.0/pub/", "http://100.64.0.1/pub/",
])
def test_addresses_off_the_public_internet_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(SourceAddressError, match="not a public internet address"):
        check_public_address(url)
    check_public_address(url, allow_private=True)  # the local-testing opt-in
    check_public_address("https://93.184.215.14/pub/")  # a public address


def test_a_source_url_override_to_the_metadata_endpoint_fails_with_no_request(bls, make_engine) -> None:
    engine = make_engine(bls.url, AllowPrivateSourceAddresses="false")

    result = engine.execute({"source_url": "http://169.254.169.254/latest/meta-data/"})

    assert result.error == "SourceAddressError" and "169.254.169.254" in result.cause
    assert bls.requests == []
    assert mirror_contents(engine.s3, engine.bucket) == {}


def _records(*records: str) -> bytes:
    return ('{"data": [' + ", ".join(records) + "]}").encode()


@pytest.mark.parametrize(("raw", "says"), [
    (_records('{"Year": 2013, "Population": 316128839}', '{"Year": 2013, "Population": 316128839}'), "twice"),
    (_records('{"Year": 2013, "Population": true}'), "no usable Year/Population"),
    (_records('{"Year": true, "Population": 316128839}'), "no usable Year/Population"),
    (_records('{"Year": 2013, "Population": NaN}'), "NaN is not a number JSON allows"),
    (_records('{"Year": 2013, "Population": Infinity}'), "Infinity is not a number JSON allows"),
    (_records('{"Year": 2013, "Population": 1e300}'), "implausible"),
    (_records('{"Year": 2013, "Population": 316128839.5}'), "not a whole number"),
    (_records('{"Year": 2013, "Population": "316128839"}'), "no usable Year/Population"),
    (_records('{"Year": 20130, "Population": 316128839}'), "implausible"),
    (b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
])
def test_population_answers_that_are_not_us_population_data_are_refused(raw: bytes, says: str) -> None:
    with pytest.raises(PopulationFormatError, match=says):
        parse_population(raw)


def test_the_real_population_answers_still_parse() -> None:
    raw = json.dumps({"data": [{"Year": 2013, "Population": 316128839.0}, {"ID Year": 2014, "Year": "2014",
                                                                          "Population": 318857056}]}).encode()
    assert [(p.year, p.population) for p in parse_population(raw)] == [(2013, 316128839), (2014, 318857056)]


def test_a_listed_size_of_ten_terabytes_sizes_no_buffer(bls, moto_s3) -> None:
    """The listing claims 10^13 bytes for a 102-byte file: the claim is checked against what the source says it is
    sending before any buffer is sized, and nothing is written."""
    bls.put("pr.class", b"x" * 102)
    claimed = SourceFile("pr.class", bls.url + "pr.class", 10**13, "8/6/2026 8:30 AM")
    tracemalloc.start()
    try:
        with pytest.raises(TransientSourceError, match="delivered 102 bytes, but the listing states 10000000000000"):
            copy_file(moto_s3, SourceClient("ops@example.com", allow_private=True),
                      CopyTarget(claimed, "mirror-bucket", "bls/pr/pr.class"),
                      TransferSettings(staging_prefix="pipeline/staging/", single_put_limit=8 * 1024 * 1024,
                                       part_size=8 * 1024 * 1024, upload_threads=4, range_streams=4))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"{peak:,} bytes allocated for a 102-byte file"
    assert moto_s3.list_objects_v2(Bucket="mirror-bucket").get("KeyCount") == 0


# -- names, rows and lines from the source ----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "says"), [
    (".", "relative path segment"), ("..", "relative path segment"), ("pr.\x07bell", "control characters"),
    ("pr.nul\x00", "control characters"), ("p" * 256, "longer than 255 bytes"), ("é" * 128, "longer than 255 bytes"),
])
def test_names_that_cannot_be_mirror_files_are_named(name: str, says: str) -> None:
    assert says in name_problem(name)
    assert name_problem("pr.données") is None and name_problem("p" * 255) is None


def test_unmirrorable_names_are_listed_as_refused_and_a_non_ascii_name_is_mirrored(bls, make_engine) -> None:
    bls.put("pr.data.0.Current", b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\n")
    bls.put("pr.données", b"accented\r\n")
    bls.put("pr.\x07bell", b"bell\r\n")
    bls.put("p" * 300, b"long\r\n")
    engine = make_engine(bls.url)

    result = engine.execute()

    assert result.succeeded, result.cause
    [listing] = [i.result for i in result.invocations if i.function == "ListSourceFunction"]
    assert sorted(listing["refused_names"]) == sorted([f"pr: '{'p' * 80}' is longer than 255 bytes",
                                                       "pr: 'pr.\\\\x07bell' contains control characters"])
    assert mirror_contents(engine.s3, engine.bucket) == {"pr.data.0.Current": bls.files["pr.data.0.Current"].body,
                                                         "pr.données": b"accented\r\n"}
    [pr] = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=listing["plan"]["surveys_key"])["Body"].read())["surveys"]
    stored = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=pr["plan"]["refused_key"])["Body"].read())
    assert stored == {"pr.\x07bell": "contains control characters", "p" * 300: "is longer than 255 bytes"}
    head = engine.s3.head_object(Bucket=engine.bucket, Key="bls/pr/pr.données")
    assert head["Metadata"]["source-url"].endswith("/pr.donn%C3%A9es")


def test_a_listing_row_too_long_to_be_one_is_skipped_and_the_rows_after_it_are_read() -> None:
    row = ' 8/6/2026  8:30 AM          102 <A HREF="/pub/time.series/pr/pr.class">pr.class</A><br>'
    crafted = ' 8/6/2026  8:30 AM          102 <A HREF="/pub/time.series/pr/x">' + "x" * 1_000_000 + "<br>"
    files = parse_listing("<pre>" + crafted + row + "</pre>", "https://download.bls.gov/pub/time.series/pr/")
    assert [f.name for f in files] == ["pr.class"]


def test_an_overlong_data_line_is_one_bad_row_and_is_never_held_in_memory() -> None:
    header = b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\n"
    good = b"PRS30006032     \t2018\tQ01\t0.5\t\r\n"

    def chunks():
        yield header + good
        for _ in range(160):  # a 10 MiB line, in 64 KiB chunks
            yield b"9" * 65536
        yield b"\r\n" + good

    tracemalloc.start()
    try:
        lines = list(bounded_lines(chunks()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lines == [header, good, OVERLONG_LINE, good] and peak < 2 * 1024 * 1024
    reports = compute_reports(iter(lines), [])
    assert reports.bad_row_count == 1 and "longer than 65,536 bytes" in reports.bad_rows[0].reason
