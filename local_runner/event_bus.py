"""EventBridge as a function meets it in AWS, on top of moto: each function's events client is authorized against
its role (local_runner/iam.py EVENTS_RULES: events:PutEvents on the bus, per entry), a request over PutEvents'
size or entry limits is refused as EventBridge refuses it, and every event the bus accepts is recorded, so tests
and the runner can see what was published. moto then delivers it to the rules of its default bus as usual.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from .iam import MAX_PUT_EVENTS_BYTES, MAX_PUT_EVENTS_ENTRIES, allows, events_checks, put_events_entry_size
from .function_clients import PerFunctionClients
from .lambda_emulation import ACCOUNT, REGION

_PARAMS = "local_events_params"


class RoleCheckedEventBus(PerFunctionClients):
    accessor = "events_client"

    def __init__(self, roles: dict[str, tuple[str, list[dict]]]):
        super().__init__(roles)
        self._published: list[dict] = []

    @property
    def published(self) -> list[dict]:
        """The events the bus accepted, oldest first: {function, source, detail_type, detail (parsed), resources,
        event_id}."""
        with self._lock:
            return list(self._published)

    def new_client(self, function: str) -> Any:
        import boto3
        from bls_pipeline.aws import CLIENT_CONFIG

        client = boto3.client("events", region_name=REGION, config=CLIENT_CONFIG)
        events = client.meta.events
        events.register_first("before-parameter-build.events", self._remember)
        events.register_first("before-call.events", self._authorize(function))
        events.register("after-call.events.PutEvents", self._record(function))
        return client

    @staticmethod
    def _remember(params: dict, context: dict, **_: Any) -> None:
        context[_PARAMS] = params

    def _authorize(self, function: str) -> Any:
        role, statements = self.roles[function]

        def authorize(model: Any, context: dict, **_: Any) -> None:
            params = context.get(_PARAMS, {})
            for check in events_checks(model.name, params, REGION, ACCOUNT):
                if not allows(statements, check):
                    raise _error("AccessDeniedException", model.name,
                                 f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{function} is not authorized to "
                                 f"perform: {check.action} on resource: {check.resource} because no identity-based "
                                 "policy allows the action (local engine: local_runner/iam.py)")
            if model.name == "PutEvents":
                entries = params.get("Entries", [])
                size = sum(put_events_entry_size(e) for e in entries)
                if size >= MAX_PUT_EVENTS_BYTES or len(entries) > MAX_PUT_EVENTS_ENTRIES:
                    raise _error("ValidationException", model.name,
                                 f"{len(entries)} entries of {size} bytes: PutEvents takes at most "
                                 f"{MAX_PUT_EVENTS_ENTRIES} entries of less than 256 KB in all (local engine)")

        return authorize

    def _record(self, function: str) -> Any:
        def record(parsed: dict, context: dict, **_: Any) -> None:
            entries = context.get(_PARAMS, {}).get("Entries", [])
            with self._lock:
                for sent, answer in zip(entries, parsed.get("Entries", [])):
                    if "EventId" in answer:
                        self._published.append({
                            "function": function, "source": sent.get("Source"), "detail_type": sent.get("DetailType"),
                            "detail": json.loads(sent.get("Detail") or "{}"), "resources": sent.get("Resources", []),
                            "event_id": answer["EventId"],
                        })

        return record


def _error(code: str, operation: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": 400 if code == "ValidationException" else 403}}, operation)
