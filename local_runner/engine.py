"""The local engine: template.yaml's functions and state machine inside moto, with Lambda invokes routed to
the real handlers in this process.

moto's Lambda backend without Docker does not run code; `LambdaSimpleBackend.invoke` is replaced so that each
invoke imports the function's Handler and calls it. A handler exception becomes `x-amz-function-error: Unhandled`
with `{"errorType": <class name>, ...}`, exactly what Step Functions' Retry and Catch match on in AWS.

Each function runs under its Timeout from template.yaml (or a shorter one given to the engine, for tests): the
context's get_remaining_time_in_millis() counts it down, and a handler still running when it ends is reported as
Lambda reports it, errorType `Sandbox.Timedout`. Unlike Lambda, the engine cannot freeze the handler's thread: it
runs on in the background, and the engine waits for it when it closes.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from unittest import mock

from .template_model import PROJECT_ROOT, FunctionSpec, Template, resolve, substitute_definition

REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTIONS_DIR = PROJECT_ROOT / "functions"
MAP_RECURSION_LIMIT = 100_000  # about one frame per Map item a worker handles (see _deep_map_workers)
MAP_THREAD_STACK_BYTES = 256 * 1024 * 1024
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


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


class LocalEngine:
    """Context manager: inside it, moto holds the bucket, the functions and the state machine of template.yaml."""

    def __init__(
        self,
        parameters: dict[str, str],
        bucket: str = "bls-mirror-local",
        observer: Callable[[Invocation], None] | None = None,
        template: Template | None = None,
        extra_env: dict[str, str] | None = None,
        function_timeouts: dict[str, float] | None = None,
    ):
        """function_timeouts: logical id -> seconds, replacing the template's Timeout of those functions."""
        self.template = template or Template.load()
        self.parameters = {**self.template.parameter_defaults(), **{k: str(v) for k, v in parameters.items()}}
        self.bucket = bucket
        self.observer = observer
        self.extra_env = extra_env or {}
        self._functions: dict[str, FunctionSpec] = {f.logical_id: f for f in self.template.functions()}
        unknown = sorted(set(function_timeouts or {}) - set(self._functions))
        if unknown:
            raise ValueError(f"function_timeouts names function(s) the template lacks: {', '.join(unknown)}")
        self.function_timeouts = {name: float(spec.timeout) for name, spec in self._functions.items()}
        self.function_timeouts.update({k: float(v) for k, v in (function_timeouts or {}).items()})
        self._overrunning: list[threading.Thread] = []
        self._started_at: dict[str, int] = {}
        self._function_arns: dict[str, str] = {}
        self._queue_urls: dict[str, str] = {}
        self._invocations: list[Invocation] = []
        self._lock = threading.Lock()
        self._exit_stack: list[Any] = []
        self.state_machine_arn = ""

    # -- setup -------------------------------------------------------------------------------------------
    def __enter__(self) -> "LocalEngine":
        from moto import mock_aws  # imported here: the runner's --help should not pay for moto
        from moto.awslambda_simple.models import LambdaSimpleBackend

        env = {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **self._handler_environment(),
            **self.extra_env,
        }
        self._enter(mock.patch.dict(os.environ, env))
        self._enter(_deep_map_workers())
        for name in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        self._enter(mock_aws(config=MOTO_CONFIG))
        self._enter(mock.patch.object(LambdaSimpleBackend, "invoke", self._invoke_backend()))
        if str(FUNCTIONS_DIR) not in sys.path:
            sys.path.insert(0, str(FUNCTIONS_DIR))
        self._reset_cached_clients()

        import boto3

        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        self._create_queues()
        self._create_functions()
        self._create_state_machine()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.join_overrunning()
        self._reset_cached_clients()
        while self._exit_stack:
            self._exit_stack.pop().__exit__(None, None, None)

    def _enter(self, context_manager: Any) -> None:
        context_manager.__enter__()
        self._exit_stack.append(context_manager)

    def _ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self._function_arns:
            return self._function_arns[name]
        if self.template.resources.get(name, {}).get("Type") == "AWS::S3::Bucket":
            return self.bucket
        if name == "AWS::StackName":
            return "local"
        if name in ("AWS::Region", "AWS::AccountId", "AWS::Partition"):
            return {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}[name]
        if name in self._queue_urls:
            return self._queue_urls[name]
        raise KeyError(f"the local engine cannot resolve Ref {name!r} (missing parameter?)")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn" and logical_id in self._functions:
            return self._function_arns[logical_id]
        if attribute == "Arn" and self.template.resources.get(logical_id, {}).get("Type") == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.bucket}"
        if attribute == "Arn" and logical_id in self._queue_urls:
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{logical_id}"
        raise KeyError(f"the local engine cannot resolve GetAtt {logical_id}.{attribute}")

    def _handler_environment(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for spec in self._functions.values():
            for name, value in resolve(spec.environment, self._ref, self._get_att).items():
                if name in merged and merged[name] != str(value):
                    raise ValueError(f"functions disagree on {name}: the local engine shares one environment")
                merged[name] = str(value)
        return merged

    def _create_functions(self) -> None:
        import boto3

        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="local-pipeline", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        for spec in self._functions.values():
            created = lam.create_function(
                FunctionName=spec.logical_id,
                Runtime="python3.13",
                Role=role,
                Handler=spec.handler,
                Code={"ZipFile": b"local engine: runs the handler from functions/"},
                Timeout=spec.timeout,
            )
            self._function_arns[spec.logical_id] = created["FunctionArn"]
        self._role = role

    def _create_queues(self) -> None:
        """The template's SQS queues, and the bucket's S3 -> SQS notifications."""
        import boto3

        self.sqs = boto3.client("sqs", region_name=REGION)
        for logical_id, resource in self.template.resources.items():
            if resource["Type"] == "AWS::SQS::Queue":
                self._queue_urls[logical_id] = self.sqs.create_queue(QueueName=logical_id)["QueueUrl"]
        for resource in self.template.resources.values():
            if resource["Type"] != "AWS::S3::Bucket":
                continue
            notifications = resolve(
                resource.get("Properties", {}).get("NotificationConfiguration", {}), self._ref, self._get_att
            )
            queue_configs = [
                {
                    "QueueArn": q["Queue"],
                    "Events": [q["Event"]],
                    "Filter": {"Key": {"FilterRules": q["Filter"]["S3Key"]["Rules"]}} if "Filter" in q else {},
                }
                for q in notifications.get("QueueConfigurations", [])
            ]
            if queue_configs:
                self.s3.put_bucket_notification_configuration(
                    Bucket=self.bucket, NotificationConfiguration={"QueueConfigurations": queue_configs}
                )

    def purge_queues(self) -> None:
        """Drop waiting messages, e.g. the notifications that restoring a saved bucket set off (received and
        deleted one by one: SQS allows one PurgeQueue a minute)."""
        for url in self._queue_urls.values():
            while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                ])

    def drain_queues(self) -> None:
        """What Lambda's SQS event source mapping does: deliver waiting messages to their consumer function in
        batches, and delete those the function did not report as failed."""
        import boto3

        lam = boto3.client("lambda", region_name=REGION)
        for spec in self._functions.values():
            for queue_id in spec.sqs_queues:
                url = self._queue_urls[queue_id]
                while True:
                    messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
                    if not messages:
                        break
                    event = {"Records": [_sqs_record(m, self._get_att(queue_id, "Arn")) for m in messages]}
                    answer = json.loads(lam.invoke(FunctionName=spec.logical_id, Payload=json.dumps(event))["Payload"].read())
                    failed = {f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures", [])} if isinstance(answer, dict) else set()
                    for message in messages:
                        if message["MessageId"] not in failed:
                            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    if failed:
                        break  # failed messages wait for their visibility timeout, as in AWS

    def _create_state_machine(self) -> None:
        logical_id, _ = self.template.state_machine()
        self.definition = self._definition()
        self.state_machine_arn = self.sfn.create_state_machine(
            name=logical_id, definition=self.definition, roleArn=self._role
        )["stateMachineArn"]

    def _definition(self) -> str:
        _, props = self.template.state_machine()
        substitutions = resolve(props.get("DefinitionSubstitutions", {}), self._ref, self._get_att)
        text = (PROJECT_ROOT / props["DefinitionUri"]).read_text(encoding="utf-8")
        definition = substitute_definition(text, substitutions)
        json.loads(definition)  # fail here, clearly, if a substitution left the JSON broken
        return definition

    def redefine(self, **parameters: str) -> None:
        """Change parameters that reach the state machine through its DefinitionSubstitutions (e.g.
        RetryMaxAttempts) for the next executions; the functions' environment stays as it was."""
        self.parameters.update({name: str(value) for name, value in parameters.items()})
        self.definition = self._definition()
        self.sfn.update_state_machine(stateMachineArn=self.state_machine_arn, definition=self.definition)

    @staticmethod
    def _reset_cached_clients() -> None:
        aws = sys.modules.get("bls_pipeline.aws")
        if aws is not None:
            aws.s3_client.cache_clear()

    # -- invocation routing ------------------------------------------------------------------------------
    def _invoke_backend(self) -> Callable[..., bytes]:
        engine = self

        def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: dict) -> bytes:
            fn = backend.get_function(function_name, qualifier)
            return engine._run_handler(fn.function_name, body, response_headers)

        return invoke

    def _run_handler(self, function_name: str, body: Any, response_headers: dict) -> bytes:
        spec = self._functions[function_name]
        event = json.loads(body) if body else {}
        record = Invocation(function=function_name, event=event)
        timeout = self.function_timeouts[function_name]
        context = LocalContext(function_name, timeout)
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["result"] = _load_handler(spec.handler)(event, context)
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
            payload = json.dumps({"errorType": record.error_type, "errorMessage": record.error_message}).encode()
        elif "error" in outcome:
            exc = outcome["error"]
            record.error_type = type(exc).__name__
            record.error_message = str(exc)
            payload = json.dumps(
                {
                    "errorType": record.error_type,
                    "errorMessage": record.error_message,
                    "stackTrace": traceback.format_tb(exc.__traceback__)[-3:],
                }
            ).encode()
        else:
            record.result = outcome.get("result")
            try:
                payload = json.dumps(record.result).encode()
            except (TypeError, ValueError) as exc:
                record.error_type, record.error_message = "Runtime.MarshalError", f"Unable to marshal response: {exc}"
                payload = json.dumps({"errorType": record.error_type, "errorMessage": record.error_message}).encode()
        if record.error_type:
            response_headers["x-amz-function-error"] = "Unhandled"
        with self._lock:
            self._invocations.append(record)
        if self.observer is not None:
            self.observer(record)
        return payload

    def join_overrunning(self, timeout: float = 120) -> None:
        """Wait for handlers that outlived their timeout: they must not touch the mocked AWS after it is gone."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers, self._overrunning = self._overrunning, []
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    # -- running -----------------------------------------------------------------------------------------
    def execute(self, execution_input: dict | None = None, name: str | None = None, timeout: float = 3600) -> ExecutionResult:
        return self.wait(self.start(execution_input, name), timeout)

    def start(self, execution_input: dict | None = None, name: str | None = None) -> str:
        """Start an execution and return its ARN; wait() collects it. Several may run at once."""
        with self._lock:
            first = len(self._invocations)
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or f"local-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
            input=json.dumps(execution_input or {}),
        )["executionArn"]
        self._started_at[arn] = first
        return arn

    def wait(self, arn: str, timeout: float = 3600) -> ExecutionResult:
        """Wait for an execution to end, then deliver the queue messages it caused.

        The result's invocations are those since the execution started: with overlapping executions, they include
        the other executions' invocations too.
        """
        deadline = time.monotonic() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {arn} still running after {timeout} s")
            time.sleep(0.02)
        self.drain_queues()
        with self._lock:
            invocations = self._invocations[self._started_at.pop(arn, 0):]
        output = described.get("output")
        return ExecutionResult(
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            arn=arn,
            invocations=invocations,
        )

    def history(self, execution_arn: str) -> list[dict]:
        events: list[dict] = []
        for page in self.sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
            events.extend(page["events"])
        return events


@contextmanager
def _deep_map_workers() -> Iterator[None]:
    """moto's Map workers take their next item by recursing (one level per item a worker handles), so 10,000 items
    at MaxConcurrency 4 go some thousands of frames deep: raise the recursion limit, and the stack size of the
    threads moto starts, for as long as the engine runs."""
    limit, stack = sys.getrecursionlimit(), threading.stack_size()
    sys.setrecursionlimit(max(limit, MAP_RECURSION_LIMIT))
    threading.stack_size(max(stack, MAP_THREAD_STACK_BYTES))
    try:
        yield
    finally:
        threading.stack_size(stack)
        sys.setrecursionlimit(limit)


def _sqs_record(message: dict, queue_arn: str) -> dict:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def _load_handler(path: str) -> Callable[[dict, Any], Any]:
    module_name, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)
