"""Copying one file into S3 (moto) from the loopback server: streaming, length checks, atomic publication."""

from __future__ import annotations

import base64
import hashlib
import os
from contextlib import contextmanager

import pytest

from bls_pipeline.bls_listing import SourceFile
from botocore.exceptions import ClientError

from bls_pipeline import copier, s3_limits
from bls_pipeline.config import Settings
from bls_pipeline.copier import CopyTarget, TransferSettings, copy_file
from bls_pipeline.mirror import MirrorWriteError
from bls_pipeline.run_files import write_condition
from bls_pipeline.source_http import SourceClient, TransientSourceError
from bls_loopback.server import (
    _served,
    answer_normally,
    answer_then_republish,
    range_without_version,
    short_body,
    status,
)

# A broken part loop waits forever for a buffer, and its worker threads would keep the process from exiting:
# end the whole run with a stack dump instead of hanging CI.
pytestmark = pytest.mark.timeout(120, method="thread")

BUCKET = "mirror-bucket"
MiB = 1024 * 1024


def listed(bls, name: str) -> SourceFile:
    return SourceFile(name, bls.url + name, len(bls.files[name].body), "8/6/2026 8:30 AM")


def transfer(single_put_limit: int = 8 * MiB, part_size: int = 8 * MiB, range_streams: int = 4) -> TransferSettings:
    return TransferSettings(staging_prefix="pipeline/staging/", single_put_limit=single_put_limit, part_size=part_size,
                            upload_threads=4, range_streams=range_streams)


def copy(s3, bls, name: str, single_put_limit: int = 8 * MiB, part_size: int = 8 * MiB, condition=None):
    target = CopyTarget(listed(bls, name), BUCKET, "bls/pr/" + name, condition or {})
    source = SourceClient("ops@example.com", allow_private=True)
    return copy_file(s3, source, target, transfer(single_put_limit, part_size))


@contextmanager
def refusing(s3, operation: str, code: str, message: str):
    """S3 answers every `operation` call with the error `code` while inside the block."""
    def refuse(**_):
        raise ClientError({"Error": {"Code": code, "Message": message}}, operation)

    s3.meta.events.register(f"before-call.s3.{operation}", refuse)
    try:
        yield
    finally:
        s3.meta.events.unregister(f"before-call.s3.{operation}", refuse)


def gets(bls, name: str) -> list[tuple[int, str]]:
    return [(r.status, r.byte_range) for r in bls.requests_for(name)]


def staging_leftovers(s3) -> list:
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix="pipeline/staging/").get("Contents", [])
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return objects + uploads


def test_the_transfer_settings_and_the_mirror_target_come_from_the_run_settings():
    settings = Settings(bucket=BUCKET, contact_email="ops@example.com", mirror_prefix="bls/ce/",
                        single_put_limit=6 * MiB, part_size=7 * MiB, upload_threads=3,
                        range_streams=2)
    file = SourceFile("ce.txt", "https://example.com/ce.txt", 10, "8/6/2026 8:30 AM")

    assert TransferSettings.from_settings(settings) == TransferSettings(
        staging_prefix="pipeline/staging/", single_put_limit=6 * MiB, part_size=7 * MiB, upload_threads=3,
        range_streams=2,
    )
    assert CopyTarget.in_mirror(settings, file, {"IfNoneMatch": "*"}) == CopyTarget(
        file, BUCKET, "bls/ce/ce.txt", {"IfNoneMatch": "*"},
    )
    assert CopyTarget.in_mirror(settings, file).condition == {}


def test_a_small_file_is_one_put_with_its_sha256_in_metadata_and_as_s3_checksum(moto_s3, bls):
    body = b"series_id\tyear\r\n" * 10
    bls.put("pr.small", body)

    result = copy(moto_s3, bls, "pr.small")

    got = moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.small", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    digest = hashlib.sha256(body)
    assert got["Metadata"]["sha256"] == digest.hexdigest() == result.sha256
    assert got["ChecksumSHA256"] == base64.b64encode(digest.digest()).decode()
    assert (result.bytes, result.multipart) == (len(body), False)


def test_a_large_file_streams_through_multipart_staging_and_is_published_whole(moto_s3, bls):
    body = os.urandom(11 * MiB + 12345)
    bls.put("pr.big", body)

    result = copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB)

    got = moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.big", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert got["Metadata"]["source-size"] == str(len(body))
    assert result.multipart is True
    assert staging_leftovers(moto_s3) == []


def test_a_large_file_is_read_in_byte_ranges_several_at_a_time_and_stitched_in_order(moto_s3, bls):
    body = os.urandom(41 * MiB + 1)  # 9 parts: more than the 6 in flight, so buffers are reused
    bls.put("pr.big", body)
    bls.latency = 0.2

    result = copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB)

    got = moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.big")
    assert got["Body"].read() == body
    assert got["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest() == result.sha256
    assert (result.bytes, result.multipart) == (len(body), True)
    part = 5 * MiB
    assert sorted(gets(bls, "pr.big"), key=lambda g: int(g[1][6:].split("-")[0])) == [
        (206, f"bytes={start}-{min(start + part, len(body)) - 1}") for start in range(0, len(body), part)
    ]
    assert 3 <= bls.most_in_flight <= 4  # the first part alone, then the next ones together; never more than 4
    assert staging_leftovers(moto_s3) == []


def test_a_source_that_ignores_ranges_is_read_as_one_stream(moto_s3, bls):
    body = os.urandom(11 * MiB)
    bls.put("pr.big", body)
    bls.serve_ranges = False

    result = copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB)

    assert gets(bls, "pr.big") == [(200, "bytes=0-5242879")]
    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.big")["Body"].read() == body
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    assert staging_leftovers(moto_s3) == []


def test_ranges_without_a_version_header_are_not_stitched_the_file_is_read_whole(moto_s3, bls):
    body = os.urandom(11 * MiB)
    bls.put("pr.big", body)
    bls.add_faults("pr.big", range_without_version)

    result = copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB)

    assert gets(bls, "pr.big") == [(206, "bytes=0-5242879"), (200, "")]
    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.big")["Body"].read() == body
    assert result.sha256 == hashlib.sha256(body).hexdigest()


def test_a_file_republished_during_a_ranged_copy_fails_as_transient_and_writes_nothing(moto_s3, bls):
    old = b"the good old version\r\n"
    version = moto_s3.put_object(Bucket=BUCKET, Key="bls/pr/pr.big", Body=old)["VersionId"]
    body = os.urandom(16 * MiB)
    bls.put("pr.big", body)
    bls.add_faults("pr.big", answer_then_republish(bls.files["pr.big"].modified.replace(hour=10)))

    with pytest.raises(TransientSourceError, match=r"pr.big changed while it was being copied .*nothing was written"):
        copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB)

    versions = moto_s3.list_object_versions(Bucket=BUCKET, Prefix="bls/pr/pr.big")["Versions"]
    assert [v["VersionId"] for v in versions] == [version]
    assert staging_leftovers(moto_s3) == []
    # The next attempt reads every part from the new version.
    assert copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB).sha256 == hashlib.sha256(body).hexdigest()


def test_a_part_that_fails_aborts_the_whole_upload(moto_s3, bls):
    bls.put("pr.big", os.urandom(16 * MiB))
    bls.add_faults("pr.big", answer_normally(), status(503))

    with pytest.raises(TransientSourceError, match="HTTP 503"):
        copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB)

    assert moto_s3.list_objects_v2(Bucket=BUCKET, Prefix="bls/pr/").get("KeyCount") == 0
    assert staging_leftovers(moto_s3) == []


@pytest.mark.parametrize("size,limit", [(50_000, 8 * MiB), (11 * MiB, 1 * MiB)], ids=["single-put", "multipart"])
def test_a_short_body_fails_as_transient_and_leaves_the_mirrored_version_untouched(moto_s3, bls, size, limit):
    old = b"the good old version\r\n"
    moto_s3.put_object(Bucket=BUCKET, Key="bls/pr/pr.file", Body=old)
    bls.put("pr.file", os.urandom(size))
    bls.add_faults("pr.file", short_body(missing=1000))

    with pytest.raises(TransientSourceError, match="of %d bytes" % size):
        copy(moto_s3, bls, "pr.file", single_put_limit=limit, part_size=5 * MiB)

    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.file")["Body"].read() == old
    assert len(moto_s3.list_object_versions(Bucket=BUCKET, Prefix="bls/pr/pr.file")["Versions"]) == 1
    assert staging_leftovers(moto_s3) == []


def test_a_short_body_of_a_new_file_leaves_no_object_at_all(moto_s3, bls):
    bls.put("pr.new", os.urandom(200_000))
    bls.add_faults("pr.new", short_body(missing=5))

    with pytest.raises(TransientSourceError):
        copy(moto_s3, bls, "pr.new")

    assert moto_s3.list_objects_v2(Bucket=BUCKET, Prefix="bls/pr/").get("KeyCount") == 0


@pytest.mark.parametrize("planned", ["an-older-etag", None], ids=["replaced", "created"])
def test_a_mirror_object_changed_since_the_plan_is_left_as_the_other_execution_wrote_it(moto_s3, bls, planned):
    moto_s3.put_object(Bucket=BUCKET, Key="bls/pr/pr.file", Body=b"written by another execution")
    bls.put("pr.file", b"what this execution downloaded")
    condition = write_condition({"mirror_etag": planned})

    result = copy(moto_s3, bls, "pr.file", condition=condition)

    assert result.superseded and result.to_dict()["superseded"] is True
    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.file")["Body"].read() == b"written by another execution"


def test_the_version_the_plan_saw_is_replaced(moto_s3, bls):
    etag = moto_s3.put_object(Bucket=BUCKET, Key="bls/pr/pr.file", Body=b"old")["ETag"]
    bls.put("pr.file", b"new")

    result = copy(moto_s3, bls, "pr.file", condition=write_condition({"mirror_etag": etag}))

    assert not result.superseded
    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.file")["Body"].read() == b"new"


def test_s3_refusing_the_write_names_the_object_and_the_error(moto_s3, bls):
    bls.put("pr.file", b"data")

    with refusing(moto_s3, "PutObject", "AccessDenied", "Access Denied"):
        with pytest.raises(MirrorWriteError, match=r"PutObject of s3://mirror-bucket/bls/pr/pr.file: AccessDenied"):
            copy(moto_s3, bls, "pr.file")


@pytest.fixture
def copy_object_limit_of_6_mib(monkeypatch):
    """S3 copies at most 5 GiB per CopyObject; a smaller limit puts the multipart copy within a test's reach."""
    monkeypatch.setattr(s3_limits, "MAX_SINGLE_WRITE_SIZE", 6 * MiB)
    monkeypatch.setattr(copier, "COPY_PART_SIZE", 5 * MiB)


def recorded_operations(s3) -> list[str]:
    operations: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: operations.append(model.name))
    return operations


def test_a_file_over_the_copy_object_limit_is_published_by_a_multipart_copy(moto_s3, bls, copy_object_limit_of_6_mib):
    body = os.urandom(16 * MiB + 3)
    bls.put("pr.huge", body)
    operations = recorded_operations(moto_s3)

    result = copy(moto_s3, bls, "pr.huge", single_put_limit=1 * MiB, part_size=5 * MiB,
                  condition=write_condition({"mirror_etag": None}))

    got = moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.huge")
    assert got["Body"].read() == body
    assert got["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest() == result.sha256
    assert got["Metadata"]["source-size"] == str(len(body))
    assert operations.count("UploadPartCopy") == 4 and "CopyObject" not in operations
    assert not result.superseded
    assert staging_leftovers(moto_s3) == [] and moto_s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_multipart_copy_onto_an_object_created_meanwhile_leaves_that_object(moto_s3, bls, copy_object_limit_of_6_mib):
    bls.put("pr.huge", os.urandom(11 * MiB))
    condition = write_condition({"mirror_etag": None})  # the plan saw no object ...
    moto_s3.put_object(Bucket=BUCKET, Key="bls/pr/pr.huge", Body=b"written by another execution")  # ... then one came

    result = copy(moto_s3, bls, "pr.huge", single_put_limit=1 * MiB, part_size=5 * MiB, condition=condition)

    assert result.superseded
    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.huge")["Body"].read() == b"written by another execution"
    assert staging_leftovers(moto_s3) == [] and moto_s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_range_streams_1_reads_a_large_file_as_one_stream(moto_s3, bls):
    body = os.urandom(11 * MiB)
    bls.put("pr.big", body)

    result = copy_file(moto_s3, SourceClient("ops@example.com", allow_private=True),
                       CopyTarget(listed(bls, "pr.big"), BUCKET, "bls/pr/pr.big"),
                       transfer(single_put_limit=1 * MiB, part_size=5 * MiB, range_streams=1))

    assert gets(bls, "pr.big") == [(200, "")]
    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.big")["Body"].read() == body
    assert result.sha256 == hashlib.sha256(body).hexdigest()


def unreadable_content_range(handler, _: bytes) -> None:
    body = _served(handler).body
    first, last = handler._requested_range(len(body))
    handler.send_body(206, body[first:last + 1], "text/plain", _served(handler).modified,
                      headers={"Content-Range": f"{first}-{last} of {len(body)}"})


def test_a_partial_answer_whose_content_range_cannot_be_read_is_never_taken_for_the_whole_file(moto_s3, bls):
    body = os.urandom(11 * MiB)
    bls.put("pr.big", body)
    bls.add_faults("pr.big", unreadable_content_range)

    result = copy(moto_s3, bls, "pr.big", single_put_limit=6 * MiB, part_size=5 * MiB)

    assert gets(bls, "pr.big") == [(206, "bytes=0-5242879"), (200, "")]
    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.big")["Body"].read() == body
    assert result.bytes == len(body)


def other_bytes_than_asked(handler, _: bytes) -> None:
    served = _served(handler)
    handler.send_body(206, served.body[:1000], "text/plain", served.modified,
                      headers={"Content-Range": f"bytes 0-999/{len(served.body)}"})


def fewer_bytes_than_the_range_says(handler, _: bytes) -> None:
    """The right Content-Range, but a body (and Content-Length) of only its first 1,000 bytes."""
    served = _served(handler)
    first, last = handler._requested_range(len(served.body))
    handler.send_body(206, served.body[first:first + 1000], "text/plain", served.modified,
                      headers={"Content-Range": f"bytes {first}-{last}/{len(served.body)}"})


@pytest.mark.parametrize(("fault", "says"), [
    (other_bytes_than_asked, r"pr.big answered bytes \d+-\d+ with bytes 0-999; it may have changed"),
    (fewer_bytes_than_the_range_says, r"pr.big sent 1000 bytes for bytes \d+-\d+ \(\d+ bytes\); nothing was written"),
], ids=["other-range", "short-range"])
def test_an_answer_with_other_bytes_than_the_range_asked_fails_the_copy_and_writes_nothing(moto_s3, bls, fault, says):
    bls.put("pr.big", os.urandom(16 * MiB))
    bls.add_faults("pr.big", answer_normally(), fault)

    with pytest.raises(TransientSourceError, match=says):
        copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB)

    assert moto_s3.list_objects_v2(Bucket=BUCKET, Prefix="bls/pr/").get("KeyCount") == 0
    assert staging_leftovers(moto_s3) == []


@pytest.mark.parametrize("operation", ["UploadPart", "CompleteMultipartUpload"])
def test_s3_refusing_a_part_or_the_completion_aborts_the_upload_and_names_the_file(moto_s3, bls, operation):
    bls.put("pr.big", os.urandom(16 * MiB))

    with refusing(moto_s3, operation, "AccessDenied", "Access Denied"):
        with pytest.raises(MirrorWriteError, match=r"multipart upload of pr.big to s3://mirror-bucket/pipeline/staging/"):
            copy(moto_s3, bls, "pr.big", single_put_limit=1 * MiB, part_size=5 * MiB)

    assert moto_s3.list_objects_v2(Bucket=BUCKET, Prefix="bls/pr/").get("KeyCount") == 0
    assert staging_leftovers(moto_s3) == []


def test_a_failed_multipart_copy_is_aborted_and_leaves_the_mirrored_version(moto_s3, bls, copy_object_limit_of_6_mib):
    version = moto_s3.put_object(Bucket=BUCKET, Key="bls/pr/pr.huge", Body=b"old")["VersionId"]
    bls.put("pr.huge", os.urandom(16 * MiB))
    operations = recorded_operations(moto_s3)

    with refusing(moto_s3, "UploadPartCopy", "SlowDown", "Please reduce your request rate."):
        with pytest.raises(MirrorWriteError, match=r"UploadPartCopy of s3://mirror-bucket/bls/pr/pr.huge: SlowDown"):
            copy(moto_s3, bls, "pr.huge", single_put_limit=1 * MiB, part_size=5 * MiB)

    assert "AbortMultipartUpload" in operations
    versions = moto_s3.list_object_versions(Bucket=BUCKET, Prefix="bls/pr/pr.huge")["Versions"]
    assert [v["VersionId"] for v in versions] == [version]
    assert staging_leftovers(moto_s3) == []


def test_a_multipart_upload_whose_block_raises_is_aborted_and_the_error_goes_on(moto_s3):
    operations = recorded_operations(moto_s3)

    with pytest.raises(RuntimeError, match="a part failed"):
        with copier.multipart_upload(moto_s3, BUCKET, "pipeline/staging/x/pr.big") as upload:
            moto_s3.upload_part(Bucket=BUCKET, Key=upload.key, UploadId=upload.id, PartNumber=1, Body=b"part")
            raise RuntimeError("a part failed")

    assert operations == ["CreateMultipartUpload", "UploadPart", "AbortMultipartUpload"]
    assert moto_s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_completed_multipart_upload_is_not_aborted_and_one_left_incomplete_is(moto_s3):
    operations = recorded_operations(moto_s3)

    with copier.multipart_upload(moto_s3, BUCKET, "bls/pr/pr.done") as upload:
        etag = moto_s3.upload_part(Bucket=BUCKET, Key=upload.key, UploadId=upload.id, PartNumber=1, Body=b"all")["ETag"]
        upload.complete([{"PartNumber": 1, "ETag": etag}])
    with copier.multipart_upload(moto_s3, BUCKET, "bls/pr/pr.refused"):
        pass  # e.g. a conditional completion S3 refused

    assert operations == ["CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "CreateMultipartUpload",
                          "AbortMultipartUpload"]
    assert moto_s3.get_object(Bucket=BUCKET, Key="bls/pr/pr.done")["Body"].read() == b"all"
    assert moto_s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
