"""A state machine execution as the engine reports it: waiting for its end, its result, its history and the largest
payloads in it (Step Functions' limit is 256 KiB for each)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .lambda_emulation import Invocation

_LOOK_AGAIN_SECONDS = 1.0  # a safety net, should an execution end by a path that does not report it


@dataclass
class ExecutionResult:
    status: str
    output: dict | None
    error: str | None
    cause: str | None
    arn: str
    invocations: list[Invocation] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    @classmethod
    def of(cls, described: dict, invocations: list[Invocation]) -> "ExecutionResult":
        """From DescribeExecution's answer."""
        output = described.get("output")
        return cls(
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            arn=described["executionArn"],
            invocations=invocations,
        )


class ExecutionEnds:
    """Waits for an execution to end, woken by moto's execution worker when it reports the end, instead of polling
    DescribeExecution (each poll is a botocore call that competes with the execution for the GIL)."""

    def __init__(self) -> None:
        self._ended = threading.Condition()

    def notifying(self, terminated: Callable[[Any], None]) -> Callable[[Any], None]:
        """moto's BaseExecutionWorkerCommunication.terminated (`terminated`), then a notice to this object's waiters.
        Without it (LOCAL_ENGINE_SPEED_PATCHES=off) wait() looks again every _LOOK_AGAIN_SECONDS."""
        ended = self._ended

        def notified(communication: Any) -> None:
            try:
                terminated(communication)
            finally:
                with ended:
                    ended.notify_all()

        return notified

    def wait(self, sfn: Any, arn: str, timeout: float) -> dict:
        """DescribeExecution's answer once the execution is no longer RUNNING."""
        deadline = time.monotonic() + timeout
        with self._ended:
            while True:
                described = sfn.describe_execution(executionArn=arn)
                if described["status"] != "RUNNING":
                    return described
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"execution {arn} still running after {timeout} s")
                self._ended.wait(min(remaining, _LOOK_AGAIN_SECONDS))


def history(sfn: Any, arn: str) -> list[dict]:
    events: list[dict] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return events

# Event detail fields that carry a state's or a task's JSON payload.
_PAYLOAD_FIELDS = {
    "executionStartedEventDetails": "input",
    "executionSucceededEventDetails": "output",
    "stateEnteredEventDetails": "input",
    "stateExitedEventDetails": "output",
    "lambdaFunctionScheduledEventDetails": "input",
    "lambdaFunctionSucceededEventDetails": "output",
    "taskScheduledEventDetails": "parameters",
    "taskSucceededEventDetails": "output",
}


def payload_sizes(history: list[dict]) -> dict:
    """The largest payload per state (input or output, UTF-8 bytes) and the largest overall, from an execution's
    history."""
    largest: dict[str, dict] = {}
    for event in history:
        for details_key, field_name in _PAYLOAD_FIELDS.items():
            details = event.get(details_key)
            if not details or field_name not in details:
                continue
            size = len(details[field_name].encode())
            state = details.get("name") or details.get("resource") or event["type"]
            if size > largest.get(state, {}).get("bytes", -1):
                largest[state] = {"bytes": size, "event": event["type"], "field": field_name}
    overall = max(largest.items(), key=lambda kv: kv[1]["bytes"], default=(None, {"bytes": 0}))
    return {"by_state": largest, "largest_state": overall[0], "largest_bytes": overall[1]["bytes"]}
