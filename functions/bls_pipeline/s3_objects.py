"""Small objects in S3 read and written whole: JSON, with one meaning of "missing", and the error codes that mean
another writer changed an object meanwhile.

Missing. S3 answers a GET or HEAD of a key that does not exist with 404 (NoSuchKey; a HEAD, which has no body, with
the bare status) only to a caller that may list the bucket there (s3:ListBucket covering the key); to any other
caller it answers 403 (AccessDenied), exactly as it answers a read the caller's role does not allow (S3 API
Reference, GetObject and HeadObject, "Permissions"). So every read here that may find nothing says, with
`denied_is_missing`, what a 403 means to it:

* denied_is_missing=False: a 404 is missing and a 403 is a denial, raised. For a caller whose role lists the key's
  prefix, so that S3 tells the two apart (Analytics, FetchPopulation).
* denied_is_missing=True: a 404 and a 403 are both missing. For a caller whose role may not list the key's prefix,
  so that S3 cannot tell it a missing key from a denied read (ListSource reading the sync index, every function
  reading the request-rate object, RecordChanges reading pruned.json), and for the catalog step, whose reads only
  decide whether to write (a record, a copy, its section of the run manifest): a denied read costs a rewrite.
  The 403 read as missing is logged (INFO), since it may be a denied read.

A file a run must have (the plan ListSource wrote, the Map's results) is read with get_json: there is no "missing"
for it, and S3's error is raised as it came.

Unreadable. A body that is not JSON is never read as missing here: get_json, read_json and JsonObject.value raise
ValueError (json.JSONDecodeError, UnicodeDecodeError), and each caller that can go on without the object says so
where it catches it (the reports are computed again, the catalog rebuilds, the index is no index, the request-rate
object is rewritten by the next reservation).

Written: compact JSON (indent for the files people read) with ContentType application/json.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

MISSING = frozenset({"NoSuchKey", "404", "NotFound"})  # what S3 answers for a missing key to a caller that may list
DENIED = frozenset({"AccessDenied", "403"})  # a denied read, or a missing key to a caller that may not list
# S3's answers to a conditional write or delete (If-Match, If-None-Match; DeleteObjects with an ETag per key) when
# the object is no longer the version the caller saw (S3 User Guide, "How to prevent object overwrites with
# conditional writes", "How to perform conditional deletes"): replaced meanwhile (412), another conditional write to
# it in flight (409), or the version seen is gone (404 on If-Match). Another execution changed it: never an error.
CHANGED_MEANWHILE = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
JSON_TYPE = "application/json"


def error_code(exc: ClientError) -> str | None:
    return exc.response.get("Error", {}).get("Code")


def is_missing(exc: ClientError, *, denied_is_missing: bool) -> bool:
    """Whether S3's error says the key is missing, by the rule of this module's docstring."""
    code = error_code(exc)
    return code in MISSING or (denied_is_missing and code in DENIED)


def _get(s3: Any, bucket: str, key: str, denied_is_missing: bool) -> dict | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if not is_missing(exc, denied_is_missing=denied_is_missing):
            raise
        if error_code(exc) in DENIED:
            logger.info("s3://%s/%s answered 403, read as missing (missing, or not readable)", bucket, key)
        return None


def read_bytes(s3: Any, bucket: str, key: str, *, denied_is_missing: bool) -> bytes | None:
    """The object's body; None when it is missing."""
    answer = _get(s3, bucket, key, denied_is_missing)
    return None if answer is None else answer["Body"].read()


@dataclass(frozen=True)
class JsonObject:
    """An object as read, with its ETag (the version a conditional write replaces)."""

    body: bytes
    etag: str

    def value(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return json.loads(self.body)


def read_json_object(s3: Any, bucket: str, key: str, *, denied_is_missing: bool) -> JsonObject | None:
    """The object and its ETag; None when it is missing. Its body is decoded by JsonObject.value."""
    answer = _get(s3, bucket, key, denied_is_missing)
    return None if answer is None else JsonObject(answer["Body"].read(), answer["ETag"])


def read_json(s3: Any, bucket: str, key: str, *, denied_is_missing: bool) -> Any:
    """The object's JSON; None when it is missing; ValueError when its body is not JSON."""
    body = read_bytes(s3, bucket, key, denied_is_missing=denied_is_missing)
    return None if body is None else json.loads(body)


def get_json(s3: Any, bucket: str, key: str) -> Any:
    """The JSON of an object that must exist: any error of S3's, a missing key's included, is raised as it came."""
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def json_body(value: Any, *, indent: int | None = None, sort_keys: bool = False) -> bytes:
    """Compact JSON, or indented by `indent` for the files people read."""
    separators = (",", ":") if indent is None else None
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys).encode()


def write_json(s3: Any, bucket: str, key: str, value: Any, *, indent: int | None = None, sort_keys: bool = False) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json_body(value, indent=indent, sort_keys=sort_keys), ContentType=JSON_TYPE)


def write_if_changed(s3: Any, bucket: str, key: str, body: bytes, content_type: str, *, denied_is_missing: bool) -> bool:
    """Write only what differs from the object there (missing: written); whether it was written."""
    if read_bytes(s3, bucket, key, denied_is_missing=denied_is_missing) == body:
        return False
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return True


def write_json_if_changed(s3: Any, bucket: str, key: str, value: Any, *, denied_is_missing: bool,
                          sort_keys: bool = False) -> bool:
    return write_if_changed(s3, bucket, key, json_body(value, sort_keys=sort_keys), JSON_TYPE,
                            denied_is_missing=denied_is_missing)


class ChangedMeanwhile(ClientError):
    """S3 refused a conditional write because the object is no longer the version the caller read
    (CHANGED_MEANWHILE): another writer changed it."""


def replace_json(s3: Any, bucket: str, key: str, value: Any, etag: str | None) -> str:
    """Write the object only over the version read (its ETag; None: only while it is still missing); the new ETag.
    ChangedMeanwhile when another writer changed it since; any other refusal is raised as it came."""
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        answer = s3.put_object(Bucket=bucket, Key=key, Body=json_body(value), ContentType=JSON_TYPE, **condition)
    except ClientError as exc:
        if error_code(exc) in CHANGED_MEANWHILE:
            raise ChangedMeanwhile(exc.response, exc.operation_name) from exc
        raise
    return answer["ETag"]
