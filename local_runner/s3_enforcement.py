"""S3 as a function meets it in AWS, on top of moto: every call is authorized against the calling function's role
before moto serves it (local_runner/iam.py), and the answers real S3 gives but moto does not are given here.

What this adds to moto, each with its source in local_runner/iam.py:
- AccessDenied (403) for a call the role does not allow, including the extra s3:GetObject that conditional writes
  and conditional deletes need; DeleteObjects reports denied keys in its Errors, as S3 does.
- 403 instead of 404 for a GetObject/HeadObject of a missing key when the role has no s3:ListBucket (MISSING_KEY).
- The preconditions moto does not check: If-Match/If-None-Match on CopyObject, If-Match on CompleteMultipartUpload,
  and the ETag per key of DeleteObjects (PreconditionFailed 412, NoSuchKey 404 for If-Match on a missing key).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

from botocore.exceptions import ClientError

from .iam import Check, allows, can_tell_missing_keys, delete_objects_checks, s3_checks

_PARAMS = "local_api_params"
_DELETE_ERRORS = "local_delete_errors"
_PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold"


class FunctionS3Rules:
    """The checks for one function's S3 client; install() registers them on the client."""

    def __init__(self, function: str, role: str, statements: list[dict], account: str, oracle: Callable[[], Any]):
        """oracle: returns an S3 client without these checks, for reading the state that S3 itself would consult."""
        self.function = function
        self.role = role
        self.statements = statements
        self.principal = f"arn:aws:sts::{account}:assumed-role/{role}/{function}"
        self.oracle = oracle

    def install(self, client: Any) -> Any:
        events = client.meta.events
        events.register_first("before-parameter-build.s3", self._remember_and_filter_deletes)
        events.register_first("before-call.s3", self._authorize)
        events.register("after-call.s3.DeleteObjects", self._report_delete_errors)
        events.register("after-call.s3.GetObject", self._missing_key_is_denied)
        events.register("after-call.s3.HeadObject", self._missing_key_is_denied)
        return client

    # -- hooks ---------------------------------------------------------------------------------------------------
    def _remember_and_filter_deletes(self, params: dict, model: Any, context: dict, **_: Any) -> None:
        context[_PARAMS] = params
        if model.name != "DeleteObjects":
            return
        kept, errors = [], []
        for item in params["Delete"]["Objects"]:
            denied = next((c for c in delete_objects_checks(params, item) if not allows(self.statements, c)), None)
            if denied is not None:
                errors.append({"Key": item["Key"], "Code": "AccessDenied", "Message": self._denied_message(denied)})
            elif item.get("ETag") and (failure := self._precondition(params["Bucket"], item["Key"], item["ETag"], None)):
                errors.append({"Key": item["Key"], "Code": failure[1], "Message": failure[2]})
            else:
                kept.append(item)
        params["Delete"] = {**params["Delete"], "Objects": kept}  # a new dict: the caller's stays as it was
        context[_DELETE_ERRORS] = errors

    def _authorize(self, model: Any, context: dict, **_: Any) -> tuple[Any, dict] | None:
        operation, params = model.name, context.get(_PARAMS, {})
        if operation == "DeleteObjects":
            if not params["Delete"]["Objects"]:  # every key refused: S3 answers 200 with only Errors
                return _answer(200, {"Deleted": [], "Errors": context.pop(_DELETE_ERRORS, [])})
            return None
        for check in s3_checks(operation, params):
            if not allows(self.statements, check):
                return self._deny(operation, check)
        if operation in ("CopyObject", "CompleteMultipartUpload"):
            failure = self._precondition(params["Bucket"], params["Key"], params.get("IfMatch"), params.get("IfNoneMatch"))
            if failure is not None:
                status, code, message = failure
                return _answer(status, {"Error": {"Code": code, "Message": message, "Key": params["Key"]}})
        return None

    def _missing_key_is_denied(self, http_response: Any, parsed: dict, model: Any, context: dict, **_: Any) -> None:
        """S3's answer changed in place (no extra request): 404 becomes 403 for a role without s3:ListBucket."""
        bucket = context.get(_PARAMS, {}).get("Bucket", "")
        if http_response.status_code != 404 or can_tell_missing_keys(self.statements, bucket):
            return
        _, denied = self._deny(model.name, Check("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
        http_response.status_code = 403
        parsed.clear()
        parsed.update(denied)

    def _report_delete_errors(self, parsed: dict, context: dict, **_: Any) -> None:
        errors = context.pop(_DELETE_ERRORS, [])
        if errors:
            parsed.setdefault("Errors", []).extend(errors)

    # -- helpers -------------------------------------------------------------------------------------------------
    def _deny(self, operation: str, check: Check) -> tuple[Any, dict]:
        if operation == "HeadObject":  # a HEAD answer has no body: botocore reports the bare status
            return _answer(403, {"Error": {"Code": "403", "Message": "Forbidden"}})
        return _answer(403, {"Error": {"Code": "AccessDenied", "Message": self._denied_message(check)}})

    def _denied_message(self, check: Check) -> str:
        return (
            f"User: {self.principal} is not authorized to perform: {check.action} on resource: \"{check.resource}\" "
            f"because no identity-based policy allows the {check.action} action"
        )

    def _etag(self, bucket: str, key: str) -> str | None:
        try:
            return self.oracle().head_object(Bucket=bucket, Key=key)["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _precondition(self, bucket: str, key: str, if_match: str | None, if_none_match: str | None) -> tuple[int, str, str] | None:
        """(status, code, message) of a precondition that does not hold, or None."""
        if not if_match and not if_none_match:
            return None
        current = self._etag(bucket, key)
        if if_match:
            if current is None:
                return 404, "NoSuchKey", "The specified key does not exist."
            if if_match != "*" and if_match.strip('"') != current.strip('"'):
                return 412, "PreconditionFailed", _PRECONDITION_MESSAGE
        if if_none_match == "*" and current is not None:
            return 412, "PreconditionFailed", _PRECONDITION_MESSAGE
        return None


def _answer(status: int, parsed: dict) -> tuple[Any, dict]:
    parsed["ResponseMetadata"] = {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0}
    return SimpleNamespace(status_code=status, headers={}, content=b""), parsed
