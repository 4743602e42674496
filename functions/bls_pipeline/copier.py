"""Copy one source file into the mirror: streamed, length-checked, hashed, and never visible half-written."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import urllib3
from boto3.s3.transfer import TransferConfig

from .bls_listing import SourceFile
from .mirror import object_metadata
from .source_http import SourceClient, TransientSourceError


@dataclass(frozen=True)
class CopyResult:
    name: str
    bytes: int
    sha256: str
    multipart: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "multipart": self.multipart}


class VerifiedBody:
    """File-like reader over an HTTP body that hashes what passes and fails on a body shorter or longer than declared."""

    def __init__(self, response: urllib3.BaseHTTPResponse, url: str):
        self._response = response
        self._url = url
        self.expected = _content_length(response)
        self.received = 0
        self._sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self._response.read(None if size is None or size < 0 else size)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientSourceError(
                f"download of {self._url} broke after {self.received} of {self._describe_expected()} bytes: {exc}"
            ) from exc
        self.received += len(chunk)
        self._sha256.update(chunk)
        if self.expected is not None and self.received > self.expected:
            raise TransientSourceError(f"{self._url} sent more than its Content-Length of {self.expected} bytes")
        if not chunk and self.expected is not None and self.received < self.expected:
            raise TransientSourceError(
                f"download of {self._url} ended after {self.received} of {self.expected} bytes (Content-Length)"
            )
        return chunk

    def read_all(self) -> bytes:
        parts = []
        while chunk := self.read(1024 * 1024):
            parts.append(chunk)
        return b"".join(parts)

    def sha256(self) -> hashlib._Hash:
        return self._sha256

    def _describe_expected(self) -> str:
        return "unknown" if self.expected is None else str(self.expected)


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
) -> CopyResult:
    with source.stream(file.url) as response:
        body = VerifiedBody(response, file.url)
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        if body.expected is not None and body.expected <= single_put_limit:
            data = body.read_all()
            digest = body.sha256()
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata=object_metadata(file, len(data), digest.hexdigest()),
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
            )
            return CopyResult(file.name, len(data), digest.hexdigest(), multipart=False)
        return _copy_via_staging(
            s3, body, file, bucket, key, f"{staging_prefix}{uuid.uuid4().hex}/{file.name}",
            content_type, TransferConfig(
                multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=upload_threads
            ),
        )


def _copy_via_staging(
    s3: Any, body: VerifiedBody, file: SourceFile, bucket: str, key: str, staging_key: str,
    content_type: str, transfer: TransferConfig,
) -> CopyResult:
    """Large files: multipart upload to a staging key (aborted on any failure), then one server-side copy that
    publishes the complete object under the mirror key with its final metadata, which only then is known."""
    s3.upload_fileobj(body, bucket, staging_key, ExtraArgs={"ContentType": content_type}, Config=transfer)
    try:
        sha256_hex = body.sha256().hexdigest()
        s3.copy(
            {"Bucket": bucket, "Key": staging_key},
            bucket,
            key,
            ExtraArgs={
                "ContentType": content_type,
                "Metadata": object_metadata(file, body.received, sha256_hex),
                "MetadataDirective": "REPLACE",
            },
            Config=transfer,
        )
    finally:
        s3.delete_object(Bucket=bucket, Key=staging_key)
    return CopyResult(file.name, body.received, sha256_hex, multipart=True)


def _content_length(response: urllib3.BaseHTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
