"""The local engine: template.yaml's functions and state machine inside moto, with Lambda invokes routed to the
real handlers in this process (local_runner/lambda_emulation.py), and what AWS enforces but moto does not enforced
on top: each function's IAM role on every S3 call it makes (local_runner/s3_enforcement.py, local_runner/iam.py),
and Step Functions' limits and result files (local_runner/step_functions_rules.py). This is always on: the runner,
every test and the bench run under it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from unittest import mock

from .cloudformation import Renderer, transformed
from .iam import SQS_EVENT_SOURCE_ACTIONS, Check, allows, function_roles, role_statements
from .lambda_emulation import ACCOUNT, REGION, Invocation, LambdaEmulator, LocalContext, current_function
from .s3_enforcement import FunctionS3Rules
from .step_functions_rules import MAX_EXECUTION_INPUT_BYTES, check_execution_name, check_state_names, patches
from .template_model import PROJECT_ROOT, FunctionSpec, Template, resolve, substitute_definition

__all__ = ["LocalEngine", "ExecutionResult", "Invocation", "LocalContext", "payload_sizes"]

STACK = "local"
# Marks the S3 requests the engine makes to read what S3 itself would consult (current ETags for preconditions):
# they are emulation, not the pipeline's, and the bench's request counts leave them out.
ORACLE_USER_AGENT = "local-engine-oracle"
FUNCTIONS_DIR = PROJECT_ROOT / "functions"
MAP_RECURSION_LIMIT = 100_000  # about one frame per Map item a worker handles (see _deep_map_workers)
MAP_THREAD_STACK_BYTES = 256 * 1024 * 1024
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


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
        self.extra_env = extra_env or {}
        self.functions: dict[str, FunctionSpec] = {f.logical_id: f for f in self.template.functions()}
        unknown = sorted(set(function_timeouts or {}) - set(self.functions))
        if unknown:
            raise ValueError(f"function_timeouts names function(s) the template lacks: {', '.join(unknown)}")
        timeouts = {name: float(spec.timeout) for name, spec in self.functions.items()}
        timeouts.update({k: float(v) for k, v in (function_timeouts or {}).items()})
        self.lambdas = LambdaEmulator({n: s.handler for n, s in self.functions.items()}, timeouts, observer)
        self._roles = self._render_roles()
        self._started_at: dict[str, int] = {}
        self._function_arns: dict[str, str] = {}
        self._queue_urls: dict[str, str] = {}
        self._s3_clients: dict[str, Any] = {}
        self._s3_hooks: list[tuple[str, Callable]] = []
        self._oracle: Any = None
        self._lock = threading.Lock()
        self._exit_stack = ExitStack()
        self.state_machine_arn = ""

    # -- the roles AWS would give each function --------------------------------------------------------------------
    def _render_roles(self) -> dict[str, tuple[str, list[dict]]]:
        """Function (and state machine) logical id -> (role name, its policy statements), from the template as
        `sam deploy` would create it, with this engine's parameters, bucket and queue names."""
        cfn = transformed(self.parameters, self.template.document)
        renderer = Renderer(cfn, self.parameters, bucket=self.bucket, stack=STACK, region=REGION, account=ACCOUNT)
        statements = role_statements(cfn, renderer)
        roles = {function: (role, statements[role]) for function, role in function_roles(cfn).items()}
        for logical_id, resource in cfn["Resources"].items():
            if resource["Type"] == "AWS::StepFunctions::StateMachine":
                role = resource["Properties"]["RoleArn"]["Fn::GetAtt"][0]
                roles[logical_id] = (role, statements[role])
        return roles

    def role_statements(self, logical_id: str) -> list[dict]:
        """The IAM statements the engine enforces for a function's (or the state machine's) calls."""
        return self._roles[logical_id][1]

    # -- setup -------------------------------------------------------------------------------------------
    def __enter__(self) -> "LocalEngine":
        from moto import mock_aws  # imported here: the runner's --help should not pay for moto

        env = {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **self._handler_environment(),
            **self.extra_env,
        }
        try:
            self._exit_stack.enter_context(mock.patch.dict(os.environ, env))
            self._exit_stack.enter_context(_deep_map_workers())
            for name in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL"):
                os.environ.pop(name, None)
            self._exit_stack.enter_context(mock_aws(config=MOTO_CONFIG))
            self._exit_stack.enter_context(self.lambdas.patch_moto())
            self._exit_stack.enter_context(patches(self._state_machine_s3))
            if str(FUNCTIONS_DIR) not in sys.path:
                sys.path.insert(0, str(FUNCTIONS_DIR))
            self._exit_stack.enter_context(self._functions_get_their_own_s3_client())
            self._exit_stack.callback(self.lambdas.join_overrunning)

            import boto3

            self.s3 = boto3.client("s3", region_name=REGION)
            self.sfn = boto3.client("stepfunctions", region_name=REGION)
            self.s3.create_bucket(Bucket=self.bucket)
            self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
            self._create_queues()
            self._create_functions()
            self._create_state_machine()
        except BaseException:
            self._exit_stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._exit_stack.close()

    @contextmanager
    def _functions_get_their_own_s3_client(self) -> Iterator[None]:
        """In Lambda each function has its own process and role; here they share one, so bls_pipeline.aws.s3_client
        hands each handler thread the client of its function, checked against that function's role."""
        import bls_pipeline.aws as aws

        aws.s3_client.cache_clear()
        with mock.patch.object(aws, "s3_client", lambda: self.s3_client_for(current_function())):
            yield
        aws.s3_client.cache_clear()

    def s3_client_for(self, function: str) -> Any:
        """The S3 client a function's handler gets: its calls are authorized against the function's role."""
        with self._lock:
            client = self._s3_clients.get(function)
            if client is None:
                client = self._s3_clients[function] = self._checked_s3_client(function)
            return client

    def _checked_s3_client(self, logical_id: str, client: Any = None) -> Any:
        import boto3
        from bls_pipeline.aws import CLIENT_CONFIG

        role, statements = self._roles[logical_id]
        client = client or boto3.client("s3", config=CLIENT_CONFIG)
        FunctionS3Rules(logical_id, role, statements, ACCOUNT, self._oracle_s3).install(client)
        for event, handler in self._s3_hooks:
            client.meta.events.register(event, handler)
        return client

    def _state_machine_s3(self, client: Any) -> Any:
        logical_id, _ = self.template.state_machine()
        return self._checked_s3_client(logical_id, client)

    def _oracle_s3(self) -> Any:
        """An S3 client with no checks, for what S3 itself consults (an object's current ETag, whether it exists)."""
        import boto3

        with self._lock:
            if self._oracle is None:
                from botocore.config import Config

                self._oracle = boto3.client("s3", region_name=REGION, config=Config(user_agent_extra=ORACLE_USER_AGENT))
            return self._oracle

    def on_s3(self, event: str, handler: Callable) -> Callable[[], None]:
        """Register a botocore event handler (e.g. "before-call.s3.PutObject") on every function's S3 client, now
        and for clients created later; returns the undo. Tests use it to inject S3 faults."""
        with self._lock:
            self._s3_hooks.append((event, handler))
            clients = list(self._s3_clients.values())
        for client in clients:
            client.meta.events.register(event, handler)

        def undo() -> None:
            with self._lock:
                self._s3_hooks.remove((event, handler))
                current = list(self._s3_clients.values())
            for client in current:
                client.meta.events.unregister(event, handler)

        return undo

    @property
    def invocations(self) -> list[Invocation]:
        return self.lambdas.since(0)

    @property
    def function_timeouts(self) -> dict[str, float]:
        """Logical id -> seconds each function may run before it is reported as Sandbox.Timedout."""
        return self.lambdas.timeouts

    @function_timeouts.setter
    def function_timeouts(self, timeouts: dict[str, float]) -> None:
        self.lambdas.timeouts = dict(timeouts)

    def join_overrunning(self, timeout: float = 120) -> None:
        self.lambdas.join_overrunning(timeout)

    def queue_url(self, logical_id: str) -> str:
        return self._queue_urls[logical_id]

    def _ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self._function_arns:
            return self._function_arns[name]
        if self.template.resources.get(name, {}).get("Type") == "AWS::S3::Bucket":
            return self.bucket
        if name == "AWS::StackName":
            return STACK
        if name in ("AWS::Region", "AWS::AccountId", "AWS::Partition"):
            return {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}[name]
        if name in self._queue_urls:
            return self._queue_urls[name]
        raise KeyError(f"the local engine cannot resolve Ref {name!r} (missing parameter?)")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn" and logical_id in self.functions:
            return self._function_arns[logical_id]
        if attribute == "Arn" and self.template.resources.get(logical_id, {}).get("Type") == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.bucket}"
        if attribute == "Arn" and logical_id in self._queue_urls:
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-{logical_id}"
        raise KeyError(f"the local engine cannot resolve GetAtt {logical_id}.{attribute}")

    def _handler_environment(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for spec in self.functions.values():
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
        for spec in self.functions.values():
            created = lam.create_function(
                FunctionName=spec.logical_id,
                Runtime="python3.13",
                Role=role,
                Handler=spec.handler,
                Code={"ZipFile": b"local engine: runs the handler from functions/"},
                Timeout=spec.timeout,
            )
            self._function_arns[spec.logical_id] = created["FunctionArn"]
            for queue_id in spec.sqs_queues:
                self._check_event_source_role(spec.logical_id, queue_id)
        self._role = role

    def _check_event_source_role(self, function: str, queue_id: str) -> None:
        """CreateEventSourceMapping fails unless the function's role may receive, delete and read the attributes of
        the queue's messages (Lambda Developer Guide, 'Using Lambda with Amazon SQS': execution role permissions)."""
        queue_arn = self._get_att(queue_id, "Arn")
        missing = [a for a in SQS_EVENT_SOURCE_ACTIONS if not allows(self.role_statements(function), Check(a, queue_arn))]
        if missing:
            raise PermissionError(
                f"the event source mapping of {function} on {queue_id} would fail: its role lacks {', '.join(missing)} "
                f"on {queue_arn}"
            )

    def _create_queues(self) -> None:
        """The template's SQS queues, and the bucket's S3 -> SQS notifications."""
        import boto3

        self.sqs = boto3.client("sqs", region_name=REGION)
        for logical_id, resource in self.template.resources.items():
            if resource["Type"] == "AWS::SQS::Queue":
                self._queue_urls[logical_id] = self.sqs.create_queue(QueueName=f"{STACK}-{logical_id}")["QueueUrl"]
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
        for spec in self.functions.values():
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
        check_state_names(json.loads(self.definition))
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

    # -- running -----------------------------------------------------------------------------------------
    def execute(self, execution_input: dict | None = None, name: str | None = None, timeout: float = 3600) -> ExecutionResult:
        return self.wait(self.start(execution_input, name), timeout)

    def start(self, execution_input: dict | None = None, name: str | None = None) -> str:
        """Start an execution and return its ARN; wait() collects it. Several may run at once."""
        first = self.lambdas.count
        document = json.dumps(execution_input or {})
        if len(document.encode()) > MAX_EXECUTION_INPUT_BYTES:
            raise ValueError(f"execution input of {len(document.encode())} bytes: Step Functions accepts at most 256 KiB")
        name = name or f"local-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        check_execution_name(name)
        arn = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=document)["executionArn"]
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
        invocations = self.lambdas.since(self._started_at.pop(arn, 0))
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

    def payload_sizes(self, execution_arn: str) -> dict:
        return payload_sizes(self.history(execution_arn))


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
    history (Step Functions' limit is 256 KiB for each)."""
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
