"""Copy one source file into the mirror: streamed, length-checked, hashed, and never visible half-written.

The write is conditional on the mirror object the run planned against (its ETag, or its absence): an execution
never replaces a version it did not see. When S3 refuses the write because another execution changed the object
meanwhile, that execution's version is left in place, the copy counts as done (`superseded`), and the next run
compares it with the listing again.
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from .bls_listing import SourceFile
from .mirror import MirrorWriteError, object_metadata
from .source_http import SourceBody, SourceClient

logger = logging.getLogger(__name__)

# S3 answers these to a conditional write when the object changed since the run listed the mirror (412), another
# conditional write to it is in flight (409), or the object the plan saw is gone (404 on If-Match).
_CHANGED_MEANWHILE = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})


@dataclass(frozen=True)
class CopyResult:
    name: str
    bytes: int
    sha256: str
    multipart: bool
    superseded: bool = False  # another execution changed the mirror object meanwhile; its version was left in place

    def to_dict(self) -> dict:
        result = {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "multipart": self.multipart}
        if self.superseded:
            result["superseded"] = True
        return result


def copy_file(
    s3: Any,
    source: SourceClient,
    file: SourceFile,
    bucket: str,
    key: str,
    staging_prefix: str,
    single_put_limit: int,
    part_size: int,
    upload_threads: int = 4,
    condition: dict[str, str] | None = None,
) -> CopyResult:
    """condition: S3 conditional-write parameters (mirror.write_condition) for publishing under the mirror key."""
    condition = condition or {}
    with source.stream(file.url) as body:
        if body.expected is not None and body.expected <= single_put_limit:
            data = body.read_all()
            digest = body.sha256()
            published = _write(bucket, key, "PutObject", bool(condition), lambda: s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=data,
                ContentType=body.content_type,
                Metadata=object_metadata(file, len(data), digest.hexdigest()),
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
                **condition,
            ))
            return CopyResult(file.name, len(data), digest.hexdigest(), multipart=False, superseded=not published)
        return _copy_via_staging(
            s3, body, file, bucket, key, f"{staging_prefix}{uuid.uuid4().hex}/{file.name}", condition,
            _transfer_config(part_size, upload_threads),
        )


def _transfer_config(part_size: int, upload_threads: int) -> TransferConfig:
    config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=upload_threads)
    # s3transfer reads a stream ahead by up to this many parts (default 10); holding only the parts in flight keeps
    # memory near upload_threads x part_size whatever the file's size. boto3's constructor does not take it.
    config.max_in_memory_upload_chunks = upload_threads
    return config


def _copy_via_staging(
    s3: Any, body: SourceBody, file: SourceFile, bucket: str, key: str, staging_key: str, condition: dict,
    transfer: TransferConfig,
) -> CopyResult:
    """Large files: multipart upload to a staging key (aborted on any failure), then one server-side copy that
    publishes the complete object under the mirror key with its final metadata, which only then is known."""
    try:
        s3.upload_fileobj(body, bucket, staging_key, ExtraArgs={"ContentType": body.content_type}, Config=transfer)
    except (ClientError, S3UploadFailedError) as exc:
        raise MirrorWriteError(
            f"S3 refused the multipart upload of {file.name} to s3://{bucket}/{staging_key}: {exc}. The mirror keeps "
            "its previous version of the file; check the function's permission to write the staging prefix, then rerun."
        ) from exc
    try:
        sha256_hex = body.sha256().hexdigest()
        published = _write(bucket, key, "CopyObject", bool(condition), lambda: s3.copy_object(
            CopySource={"Bucket": bucket, "Key": staging_key},
            Bucket=bucket,
            Key=key,
            ContentType=body.content_type,
            Metadata=object_metadata(file, body.received, sha256_hex),
            MetadataDirective="REPLACE",
            ChecksumAlgorithm="SHA256",
            **condition,
        ))
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=staging_key)
        except ClientError as exc:  # the bucket's lifecycle rule expires staging objects; the copy itself stands
            logger.warning("could not delete staging object %s: %s", staging_key, exc)
    return CopyResult(file.name, body.received, sha256_hex, multipart=True, superseded=not published)


def _write(bucket: str, key: str, operation: str, conditional: bool, call: Any) -> bool:
    """Run one conditional write of a mirror object; False when S3 refused it because the object changed since the
    run was planned."""
    try:
        call()
        return True
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if conditional and code in _CHANGED_MEANWHILE:
            logger.warning(
                "s3://%s/%s changed since this run listed the mirror (another execution wrote or deleted it); "
                "left as it is, the next run reconciles it", bucket, key,
            )
            return False
        raise MirrorWriteError(
            f"S3 refused the {operation} of s3://{bucket}/{key}: {code or 'error'}: {error.get('Message', exc)}. "
            "The mirror keeps its previous version of the file; check the function's permission to write there "
            "(and the bucket policy), then rerun."
        ) from exc
