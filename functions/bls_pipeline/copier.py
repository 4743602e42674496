"""Copy one source file into the mirror: streamed, length-checked, hashed, and never visible half-written.

The write is conditional on the mirror object the run planned against (its ETag, or its absence): an execution
never replaces a version it did not see. When S3 refuses the write because another execution changed the object
meanwhile, that execution's version is left in place, the copy counts as done (`superseded`), and the next run
compares it with the listing again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import queue
import threading
import uuid
from collections import deque
from contextlib import contextmanager
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Iterator

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from . import s3_limits
from .bls_listing import SourceFile
from .config import Settings
from .mirror import MirrorWriteError, object_metadata
from .s3_objects import CHANGED_MEANWHILE, error_code
from .source_http import SourceBody, SourceClient, TransientSourceError

logger = logging.getLogger(__name__)

COPY_PART_SIZE = 512 * 1024**2  # parts of a multipart copy, for objects over what one CopyObject may copy


@dataclass(frozen=True)
class CopyResult:
    name: str
    bytes: int
    sha256: str
    multipart: bool
    superseded: bool = False  # another execution changed the mirror object meanwhile; its version was left in place
    etag: str | None = None  # of the object this copy wrote (the sync index's entry, sync_index.py); None: superseded

    def to_dict(self) -> dict:
        # Every key always: the CopyFile state's ResultSelector picks name, sha256, bytes, superseded and etag.
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "multipart": self.multipart,
                "superseded": self.superseded, "etag": self.etag}


@dataclass(frozen=True, kw_only=True)
class TransferSettings:
    """How copy_file moves a file's bytes; from_settings is the one place that reads them from the run's Settings."""

    staging_prefix: str  # multipart uploads are staged under it, then published with a server-side copy
    single_put_limit: int  # files up to this size are buffered and written with one PutObject
    part_size: int  # of a multipart upload; larger for a file that would need more than S3's 10,000 parts
    upload_threads: int  # parts uploaded at once
    range_streams: int  # byte-range GETs of one large file at once; 1 reads every file as one stream

    @classmethod
    def from_settings(cls, settings: Settings) -> TransferSettings:
        return cls(staging_prefix=settings.staging_prefix, single_put_limit=settings.single_put_limit,
                   part_size=settings.part_size, upload_threads=settings.upload_threads,
                   range_streams=settings.range_streams)


@dataclass(frozen=True)
class CopyTarget:
    """What copy_file writes, and what was promised: the listed file (its URL, and the size and stamp the copy is
    checked against and records), the S3 object it becomes, and the S3 conditional-write parameters for publishing
    it (run_files.write_condition: replace only the version the plan saw, or create only if still absent)."""

    file: SourceFile
    bucket: str
    key: str
    condition: dict[str, str] = field(default_factory=dict)

    @classmethod
    def in_mirror(cls, settings: Settings, file: SourceFile, condition: dict[str, str] | None = None) -> CopyTarget:
        """The listed file's object in the mirror: its name under the mirror prefix."""
        return cls(file, settings.bucket, settings.mirror_prefix + file.name, condition or {})


def copy_file(s3: Any, source: SourceClient, target: CopyTarget, transfer: TransferSettings) -> CopyResult:
    """A file the listing shows larger than transfer.single_put_limit is read in byte ranges, transfer.range_streams
    at a time, when the source serves ranges (and range_streams > 1); otherwise, and for smaller files, as one
    stream."""
    file = target.file
    destination = _Destination(target, f"{transfer.staging_prefix}{uuid.uuid4().hex}/{file.name}")
    single_put_limit, upload_threads = transfer.single_put_limit, transfer.upload_threads
    part_size = s3_limits.part_size_for(file.size, transfer.part_size)
    if file.size > single_put_limit and transfer.range_streams > 1:
        with source.stream(file.url, (0, part_size - 1)) as first:
            if first.status == 200:  # the source ignored the range: this is the whole file
                return _copy_stream(s3, first, file, destination, single_put_limit, part_size, upload_threads)
            if first.content_range is not None and first.content_range.total not in (None, file.size):
                raise _not_the_listed_size(file, first.content_range.total)  # before any buffer is sized by it
            if _can_stitch(first, part_size):
                return _copy_in_ranges(s3, source, first, file, destination, part_size, transfer.range_streams)
        # A partial answer that cannot be stitched safely (no version to check, unknown size): read it whole.
    with source.stream(file.url) as body:
        return _copy_stream(s3, body, file, destination, single_put_limit, part_size, upload_threads)


@dataclass(frozen=True)
class _Destination:
    """Where one copy attempt writes: its target, and the staging object of this attempt."""

    target: CopyTarget
    staging_key: str

    @property
    def bucket(self) -> str:
        return self.target.bucket

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def condition(self) -> dict[str, str]:
        return self.target.condition


def _not_the_listed_size(file: SourceFile, received: int) -> TransientSourceError:
    return TransientSourceError(
        f"{file.url} delivered {received} bytes, but the listing states {file.size}; nothing was written (temporary; "
        "retried with backoff; if it persists, the source serves another body than it lists and the file fails "
        "each run until they agree)"
    )


def _copy_stream(
    s3: Any, body: SourceBody, file: SourceFile, target: _Destination, single_put_limit: int, part_size: int,
    upload_threads: int,
) -> CopyResult:
    """The rule for every write of a mirror object: the bytes received are exactly the listed size, over a complete
    transfer (checked against Content-Length by SourceBody), or nothing is written."""
    body.max_bytes = file.size
    if body.expected is not None and body.expected != file.size:
        raise _not_the_listed_size(file, body.expected)
    if file.size <= single_put_limit:
        data = body.read_all()
        if len(data) != file.size:
            raise _not_the_listed_size(file, len(data))
        digest = body.sha256()
        published = _write(target, "PutObject", lambda: s3.put_object(
            Bucket=target.bucket,
            Key=target.key,
            Body=data,
            ContentType=body.content_type,
            Metadata=object_metadata(file, len(data), digest.hexdigest()),
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
            **target.condition,
        ))
        return CopyResult(file.name, len(data), digest.hexdigest(), multipart=False, superseded=published is None,
                          etag=published)
    try:
        s3.upload_fileobj(body, target.bucket, target.staging_key, ExtraArgs={"ContentType": body.content_type},
                          Config=_transfer_config(part_size, upload_threads))
    except (ClientError, S3UploadFailedError) as exc:
        raise _staging_refused(file, target, exc) from exc
    if body.received != file.size:
        _remove_staging(s3, target)
        raise _not_the_listed_size(file, body.received)
    return _publish(s3, file, target, body.received, body.sha256().hexdigest(), body.content_type, upload_threads)


def _transfer_config(part_size: int, upload_threads: int) -> TransferConfig:
    config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=upload_threads)
    # s3transfer reads a stream ahead by up to this many parts (default 10); holding only the parts in flight keeps
    # memory near upload_threads x part_size whatever the file's size. boto3's constructor does not take it.
    config.max_in_memory_upload_chunks = upload_threads
    return config


def _can_stitch(first: SourceBody, part_size: int) -> bool:
    """Parts read separately make one file only if every answer can be checked to come from the same version."""
    answered = first.content_range
    return (
        answered is not None and answered.total is not None and first.validator is not None
        and answered.first == 0 and answered.last == min(part_size, answered.total) - 1
        and s3_limits.part_count(answered.total, part_size) <= s3_limits.MAX_PARTS
    )


def _copy_in_ranges(
    s3: Any, source: SourceClient, first: SourceBody, file: SourceFile, target: _Destination, part_size: int,
    threads: int,
) -> CopyResult:
    """Large files from a source that serves byte ranges: each multipart part is its own ranged GET, `threads` at
    a time, so one slow connection does not set the pace; while a part uploads, the next one downloads. s3transfer
    reads only from one stream, hence this loop."""
    try:
        with multipart_upload(s3, target.bucket, target.staging_key, ContentType=first.content_type,
                              ChecksumAlgorithm="CRC32") as upload:
            sha256_hex = _upload_ranges(s3, source, first, file, target, upload, part_size, threads)
    except ClientError as exc:
        raise _staging_refused(file, target, exc) from exc
    return _publish(s3, file, target, first.content_range.total, sha256_hex, first.content_type, threads)


def _upload_ranges(
    s3: Any, source: SourceClient, first: SourceBody, file: SourceFile, target: _Destination, upload: MultipartUpload,
    part_size: int, threads: int,
) -> str:
    """The parts of _copy_in_ranges, and the SHA-256 of the whole file. Parts are hashed in file order as they
    arrive, so at most 1.5 x `threads` parts are held in memory."""
    total = first.content_range.total
    count = max(1, s3_limits.part_count(total, part_size))

    # Parts downloading or uploading: enough for uploads to overlap the next downloads, few enough that a 256 MB
    # function copies a file of any size (8 MiB parts: 48 MiB of buffers).
    in_flight_limit = threads + threads // 2
    # The source sees at most `threads` GETs of this file at once: the first one is open already and holds a slot
    # until its body is read.
    source_slots = threading.Semaphore(threads - 1)
    # One buffer per part in flight, reused: memory stays at in_flight_limit x part_size, without allocator churn.
    free_buffers: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(min(in_flight_limit, count)):
        free_buffers.put(bytearray(part_size))

    def transfer(index: int) -> tuple[bytearray, int, dict]:
        buffer = free_buffers.get()
        start = index * part_size
        last = min(start + part_size, total) - 1
        if index == 0:
            try:
                filled = first.read_into(buffer)
            finally:
                source_slots.release()
        else:
            with source_slots, source.stream(file.url, (start, last)) as body:
                _check_same_version(body, first, start, last)
                filled = body.read_into(buffer)
        if filled != last - start + 1:
            raise TransientSourceError(
                f"{file.url} sent {filled} bytes for bytes {start}-{last} ({last - start + 1} bytes); nothing was "
                "written (temporary; retried with backoff)"
            )
        try:
            answer = s3.upload_part(Bucket=target.bucket, Key=target.staging_key, UploadId=upload.id, PartNumber=index + 1,
                                    Body=_BufferReader(memoryview(buffer)[:filled]), ChecksumAlgorithm="CRC32")
        except ClientError as exc:
            raise _staging_refused(file, target, exc) from exc
        return buffer, filled, {"PartNumber": index + 1, "ETag": answer["ETag"], "ChecksumCRC32": answer["ChecksumCRC32"]}

    digest = hashlib.sha256()
    parts: list[dict] = []
    pool = ThreadPoolExecutor(max_workers=in_flight_limit, thread_name_prefix="range")
    try:
        in_flight: deque[Future] = deque()
        for index in range(count):
            in_flight.append(pool.submit(transfer, index))
            while len(in_flight) >= in_flight_limit or (index == count - 1 and in_flight):
                buffer, filled, part = in_flight.popleft().result()
                digest.update(memoryview(buffer)[:filled])
                parts.append(part)
                free_buffers.put(buffer)
        upload.complete(parts)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure, the parts not started are not read
    return digest.hexdigest()


class _BufferReader(io.RawIOBase):
    """A seekable file over a part's buffer, so that sending it copies nothing (bytes() of it would)."""

    def __init__(self, buffer: memoryview):
        super().__init__()
        self._view = memoryview(buffer)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, into: Any) -> int:
        count = max(0, min(len(into), len(self._view) - self._position))
        into[:count] = self._view[self._position:self._position + count]
        self._position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


def _check_same_version(body: SourceBody, first: SourceBody, start: int, last: int) -> None:
    answered = body.content_range
    if answered is None or (answered.first, answered.last) != (start, last):
        raise TransientSourceError(
            f"{body.url} answered bytes {start}-{last} with "
            f"{'the whole file' if answered is None else f'bytes {answered.first}-{answered.last}'}; it may have "
            "changed while being copied. Nothing was written (temporary; retried with backoff)"
        )
    if answered.total != first.content_range.total or body.validator != first.validator:
        raise TransientSourceError(
            f"{body.url} changed while it was being copied (size {first.content_range.total} -> {answered.total}, "
            f"version {first.validator!r} -> {body.validator!r}); nothing was written (temporary; the next attempt "
            "copies the new version)"
        )


@dataclass
class MultipartUpload:
    """A multipart upload that multipart_upload started; complete() publishes its parts."""

    s3: Any
    bucket: str
    key: str
    id: str
    completed: bool = False

    def complete(self, parts: list[dict], **condition: str) -> dict:
        answer = self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.id,
                                                   MultipartUpload={"Parts": parts}, **condition)
        self.completed = True
        return answer


@contextmanager
def multipart_upload(s3: Any, bucket: str, key: str, **create_args: Any) -> Iterator[MultipartUpload]:
    """CreateMultipartUpload, and AbortMultipartUpload unless the block completes the upload: when it raises (the
    error goes on), and when S3 refused a conditional completion. S3 keeps (and bills) the parts until then."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_args)["UploadId"]
    upload = MultipartUpload(s3, bucket, key, upload_id)
    try:
        yield upload
    finally:
        if not upload.completed:
            try:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload.id)
            except ClientError as exc:  # the bucket's lifecycle rule aborts incomplete uploads after a day
                logger.warning("could not abort the multipart upload of %s: %s", key, exc)


def _staging_refused(file: SourceFile, target: _Destination, exc: Exception) -> MirrorWriteError:
    return MirrorWriteError(
        f"S3 refused the multipart upload of {file.name} to s3://{target.bucket}/{target.staging_key}: {exc}. The "
        "mirror keeps its previous version of the file; check the function's permission to write the staging "
        "prefix, then rerun."
    )


def _publish(
    s3: Any, file: SourceFile, target: _Destination, size: int, sha256_hex: str, content_type: str, threads: int = 4,
) -> CopyResult:
    """A server-side copy publishes the complete staged object under the mirror key, with its final metadata,
    which only then is known; the staging object is removed either way."""
    metadata = object_metadata(file, size, sha256_hex)
    try:
        if size > s3_limits.MAX_SINGLE_WRITE_SIZE:
            published = _publish_in_parts(s3, target, size, metadata, content_type, threads)
        else:
            published = _write(target, "CopyObject", lambda: s3.copy_object(
                CopySource={"Bucket": target.bucket, "Key": target.staging_key},
                Bucket=target.bucket,
                Key=target.key,
                ContentType=content_type,
                Metadata=metadata,
                MetadataDirective="REPLACE",
                ChecksumAlgorithm="SHA256",
                **target.condition,
            ))
    finally:
        _remove_staging(s3, target)
    return CopyResult(file.name, size, sha256_hex, multipart=True, superseded=published is None, etag=published)


def _remove_staging(s3: Any, target: _Destination) -> None:
    try:
        s3.delete_object(Bucket=target.bucket, Key=target.staging_key)
    except ClientError as exc:  # the bucket's lifecycle rule expires staging objects; the copy itself stands
        logger.warning("could not delete staging object %s: %s", target.staging_key, exc)


def _publish_in_parts(
    s3: Any, target: _Destination, size: int, metadata: dict[str, str], content_type: str, threads: int,
) -> str | None:
    """Objects over CopyObject's 5 GiB limit: a multipart copy (UploadPartCopy, `threads` parts at a time), whose
    Complete carries the write condition."""
    try:
        with multipart_upload(s3, target.bucket, target.key, ContentType=content_type, Metadata=metadata) as upload:
            try:
                parts = _copy_parts(s3, target, upload, size, threads)
            except ClientError as exc:
                raise _mirror_refused(target, "UploadPartCopy", exc) from exc
            return _write(target, "CompleteMultipartUpload", lambda: upload.complete(parts, **target.condition))
    except ClientError as exc:  # only CreateMultipartUpload's: the others are translated above
        raise _mirror_refused(target, "CreateMultipartUpload", exc) from exc


def _copy_parts(s3: Any, target: _Destination, upload: MultipartUpload, size: int, threads: int) -> list[dict]:
    part_size = s3_limits.part_size_for(size, COPY_PART_SIZE)

    def copy_part(index: int) -> dict:
        first = index * part_size
        answer = s3.upload_part_copy(
            Bucket=target.bucket, Key=target.key, UploadId=upload.id, PartNumber=index + 1,
            CopySource={"Bucket": target.bucket, "Key": target.staging_key},
            CopySourceRange=f"bytes={first}-{min(first + part_size, size) - 1}",
        )
        return {"PartNumber": index + 1, "ETag": answer["CopyPartResult"]["ETag"]}

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="part-copy")
    try:
        futures = [pool.submit(copy_part, index) for index in range(s3_limits.part_count(size, part_size))]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((future for future in finished if future.exception() is not None), None)
        if failed is not None:
            failed.result()
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure, the parts not started are not copied


def _mirror_refused(target: _Destination, operation: str, exc: ClientError) -> MirrorWriteError:
    error = exc.response.get("Error", {})
    return MirrorWriteError(
        f"S3 refused the {operation} of s3://{target.bucket}/{target.key}: {error.get('Code') or 'error'}: "
        f"{error.get('Message', exc)}. The mirror keeps its previous version of the file; check the function's "
        "permission to write there (and the bucket policy), then rerun."
    )


def _write(target: _Destination, operation: str, call: Any) -> str | None:
    """Run one conditional write of a mirror object; the new object's ETag, or None when S3 refused the write because
    the object changed since the run was planned."""
    try:
        answer = call() or {}
        return str(answer.get("ETag") or answer.get("CopyObjectResult", {}).get("ETag") or "")
    except ClientError as exc:
        # CHANGED_MEANWHILE: the object changed since the run listed the mirror, or the version the plan saw is gone.
        if target.condition and error_code(exc) in CHANGED_MEANWHILE:
            logger.warning(
                "s3://%s/%s changed since this run listed the mirror (another execution wrote or deleted it); "
                "left as it is, the next run reconciles it", target.bucket, target.key,
            )
            return None
        raise _mirror_refused(target, operation, exc) from exc
