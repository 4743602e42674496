"""Lambda as Step Functions sees it, in this process: moto's invoke routed to the real handler, under the function's
timeout, with Lambda's error payloads.

moto's Lambda backend without Docker does not run code; its `LambdaSimpleBackend.invoke` is replaced by
`routed_invoke` (applied by local_runner/moto_patches.py), which imports the function's Handler and calls it. A
handler exception becomes `x-amz-function-error: Unhandled` with `{"errorType": <class name>, ...}`, exactly what
Step Functions' Retry and Catch match on in AWS. A handler still running at its Timeout is reported as Lambda reports
it, errorType `Sandbox.Timedout`; unlike Lambda, the engine cannot freeze the handler's thread: it runs on in the
background, and the engine waits for it when it closes.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .template_model import FunctionSpec

REGION = "us-east-1"
ACCOUNT = "123456789012"

_current = threading.local()


def current_function() -> str:
    """The logical id of the function whose handler runs in this thread (set for the handler's own thread)."""
    name = getattr(_current, "function", None)
    if name is None:
        raise RuntimeError("an AWS client was asked for outside a Lambda handler's thread; create it in the handler")
    return name


@dataclass
class Invocation:
    """One Lambda invocation as the engine saw it; observers receive one when the handler returns or raises."""

    function: str  # logical id in template.yaml
    event: dict
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    seconds: float = 0.0


@dataclass
class LocalContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    timeout_seconds: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaEmulator:
    """Runs handlers for moto's invokes and keeps the record of every invocation."""

    def __init__(self, handlers: dict[str, str], timeouts: dict[str, float], observer: Callable[[Invocation], None] | None):
        """handlers: function logical id -> Handler; timeouts: logical id -> seconds."""
        self.handlers = handlers
        self.timeouts = timeouts
        self.observer = observer
        self._lock = threading.Lock()
        self._invocations: list[Invocation] = []
        self._overrunning: list[threading.Thread] = []

    @classmethod
    def for_functions(
        cls, functions: dict[str, FunctionSpec], timeouts: dict[str, float] | None, observer: Callable[[Invocation], None] | None
    ) -> "LambdaEmulator":
        """timeouts: logical id -> seconds, replacing the template's Timeout of those functions."""
        unknown = sorted(set(timeouts or {}) - set(functions))
        if unknown:
            raise ValueError(f"function_timeouts names function(s) the template lacks: {', '.join(unknown)}")
        merged = {name: float(spec.timeout) for name, spec in functions.items()}
        merged.update({k: float(v) for k, v in (timeouts or {}).items()})
        return cls({n: s.handler for n, s in functions.items()}, merged, observer)

    @staticmethod
    def create_in_moto(functions: dict[str, FunctionSpec]) -> tuple[dict[str, str], str]:
        """Create the functions in moto's Lambda (their code stays in functions/); returns logical id -> ARN, and the
        ARN of the one role they are created with (the engine enforces each function's own role itself)."""
        import boto3

        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="local-pipeline", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        arns = {}
        for spec in functions.values():
            arns[spec.logical_id] = lam.create_function(
                FunctionName=spec.logical_id,
                Runtime="python3.13",
                Role=role,
                Handler=spec.handler,
                Code={"ZipFile": b"local engine: runs the handler from functions/"},
                Timeout=spec.timeout,
            )["FunctionArn"]
        return arns, role

    def routed_invoke(self, invoke: Callable) -> Callable:
        """moto's LambdaSimpleBackend.invoke (`invoke`, which runs no code) replaced: the invoke runs the handler here."""
        emulator = self

        def routed(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: dict) -> bytes:
            return emulator.run(backend.get_function(function_name, qualifier).function_name, body, response_headers)

        return routed

    @staticmethod
    def one_client_per_region(boto_client_for: Callable) -> Callable:
        """moto's boto_client_for as its Step Functions Task states call it (lambda_eval_utils), keeping one Lambda
        client per region to invoke with.

        moto creates a new boto3 Lambda client for every Task state it runs (lambda_eval_utils.boto_client_for:
        5 to 10 ms each, one per file copied). boto_client_for builds every client alike: moto's fixed test
        credentials (it ignores the state's credentials), its fixed Config, the region and moto's endpoint; and
        botocore clients are thread-safe. So one per (region, endpoint) serves every invocation; what it calls is
        unchanged: moto's Invoke, then the handler (run)."""
        from moto.stepfunctions.parser.asl.utils import boto_client

        clients: dict[tuple, Any] = {}
        lock = threading.Lock()

        def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            key = (region, service, boto_client.botocore_stubber.enabled)
            with lock:
                if key not in clients:
                    clients[key] = boto_client_for(region=region, service=service, state_credentials=state_credentials)
                return clients[key]

        return client_for

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._invocations)

    def since(self, first: int) -> list[Invocation]:
        with self._lock:
            return self._invocations[first:]

    def run(self, function_name: str, body: Any, response_headers: dict) -> bytes:
        event = json.loads(body) if body else {}
        record = Invocation(function=function_name, event=event)
        timeout = self.timeouts[function_name]
        context = LocalContext(function_name, timeout)
        outcome: dict[str, Any] = {}

        def call() -> None:
            _current.function = function_name
            try:
                outcome["result"] = _load_handler(self.handlers[function_name])(event, context)
            except Exception as exc:  # noqa: BLE001 - every handler failure must reach the state machine
                outcome["error"] = exc

        started = time.monotonic()
        worker = threading.Thread(target=call, name=f"lambda-{function_name}", daemon=True)
        worker.start()
        worker.join(timeout)
        record.seconds = time.monotonic() - started
        if worker.is_alive():
            with self._lock:
                self._overrunning.append(worker)
            record.error_type = "Sandbox.Timedout"
            record.error_message = f"RequestId: {context.aws_request_id} Error: Task timed out after {timeout:.2f} seconds"
            payload = {"errorType": record.error_type, "errorMessage": record.error_message}
        elif "error" in outcome:
            exc = outcome["error"]
            record.error_type, record.error_message = type(exc).__name__, str(exc)
            payload = {"errorType": record.error_type, "errorMessage": record.error_message,
                       "stackTrace": traceback.format_tb(exc.__traceback__)[-3:]}
        else:
            record.result = payload = outcome.get("result")
        try:
            encoded = json.dumps(payload).encode()
        except (TypeError, ValueError) as exc:
            record.error_type, record.error_message = "Runtime.MarshalError", f"Unable to marshal response: {exc}"
            encoded = json.dumps({"errorType": record.error_type, "errorMessage": record.error_message}).encode()
        if record.error_type:
            response_headers["x-amz-function-error"] = "Unhandled"
        with self._lock:
            self._invocations.append(record)
        if self.observer is not None:
            self.observer(record)
        return encoded

    def join_overrunning(self, timeout: float = 120) -> None:
        """Wait for handlers that outlived their timeout: they must not touch the mocked AWS after it is gone."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers, self._overrunning = self._overrunning, []
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


def _load_handler(path: str) -> Callable[[dict, Any], Any]:
    module_name, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)
