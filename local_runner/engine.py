"""The local engine: template.yaml's functions and state machine inside moto, with Lambda invokes routed to the
real handlers in this process (local_runner/lambda_emulation.py), Athena's queries run for real in DuckDB over
moto's Glue catalog and S3 (local_runner/athena_sql.py: moto's own Athena runs none), and what AWS enforces but moto
does not enforced on top: each function's IAM role on every S3, EventBridge, Glue and Athena call it makes
(local_runner/s3_clients.py, local_runner/event_bus.py, which also records the events published,
local_runner/service_clients.py), and Step Functions' limits and result files
(local_runner/step_functions_rules.py). Every change to moto's own code is a record of local_runner/moto_patches.py.
This is always on: the runner, every test and the bench run under it.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import ExitStack
from typing import Any, Callable

from .athena_sql import LocalAthena
from .cloudformation import rendered_roles
from .event_bus import RoleCheckedEventBus
from .executions import ExecutionEnds, ExecutionResult, history, payload_sizes
from .lambda_emulation import ACCOUNT, REGION, Invocation, LambdaEmulator, LocalContext
from .mocked_aws import PARSED_DEFINITIONS, aws_environment, deep_map_workers, mocked_aws
from .moto_patches import EngineParts, applied
from .s3_clients import RoleCheckedS3Clients
from .service_clients import RoleCheckedServiceClients
from .sqs_event_sources import QueueEventSources
from .startup import paused_gc, thaw_gc
from .step_functions_rules import MAX_EXECUTION_INPUT_BYTES, check_execution_name, check_state_names
from .template_model import FunctionSpec, StackResolver, Template

__all__ = ["LocalEngine", "ExecutionResult", "Invocation", "LocalContext", "payload_sizes"]


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
        self.lambdas = LambdaEmulator.for_functions(self.functions, function_timeouts, observer)
        self.resolver = StackResolver(self.template, self.parameters, bucket, REGION, ACCOUNT)
        roles = rendered_roles(self.template.document, self.parameters, bucket, self.resolver.stack_name, REGION, ACCOUNT)
        self.s3_clients = RoleCheckedS3Clients(roles)
        self.event_bus = RoleCheckedEventBus(roles)
        self.glue_clients = RoleCheckedServiceClients("glue", roles)
        self.queries = LocalAthena()  # DuckDB is imported, and its connection made, on the first query only
        self.athena_clients = RoleCheckedServiceClients("athena", roles, self.queries)
        self.queues = QueueEventSources(self.resolver, self.functions, self.role_statements)
        self._started_at: dict[str, int] = {}
        self._ends = ExecutionEnds()
        self._exit_stack = ExitStack()
        self.state_machine_arn = ""

    def __enter__(self) -> "LocalEngine":
        try:
            with paused_gc():
                self._start()
        except BaseException:
            thaw_gc()
            raise
        return self

    def _start(self) -> None:
        setup = self._exit_stack
        try:
            setup.enter_context(aws_environment({**self.resolver.handler_environment(), **self.extra_env}))
            setup.enter_context(deep_map_workers())
            setup.enter_context(mocked_aws())
            setup.enter_context(applied(EngineParts(
                lambdas=self.lambdas, ends=self._ends, queries=self.queries, definitions=PARSED_DEFINITIONS,
                state_machine_s3=self._state_machine_s3,
            )))
            setup.enter_context(self.s3_clients.given_to_handlers())
            setup.enter_context(self.event_bus.given_to_handlers())
            setup.enter_context(self.glue_clients.given_to_handlers())
            setup.enter_context(self.athena_clients.given_to_handlers())
            setup.callback(self.queries.close)
            setup.callback(self.lambdas.join_overrunning)

            import boto3

            self.s3 = boto3.client("s3", region_name=REGION)
            self.sfn = boto3.client("stepfunctions", region_name=REGION)
            self.glue = boto3.client("glue", region_name=REGION)  # unchecked, as self.s3: the engine's own
            self.athena = boto3.client("athena", region_name=REGION)  # likewise
            self.s3.create_bucket(Bucket=self.bucket)
            self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
            self.queues.create(self.s3)
            self._create_query_catalog()
            arns, role = LambdaEmulator.create_in_moto(self.functions)
            self.resolver.function_arns.update(arns)
            self._create_state_machine(role)
        except BaseException:
            setup.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            self._exit_stack.close()
        finally:
            thaw_gc()

    def _create_state_machine(self, role: str) -> None:
        logical_id, _ = self.template.state_machine()
        self.definition = self.resolver.state_machine_definition()
        check_state_names(json.loads(self.definition))
        self.state_machine_arn = self.sfn.create_state_machine(
            name=logical_id, definition=self.definition, roleArn=role
        )["stateMachineArn"]

    def _create_query_catalog(self) -> None:
        """The template's Glue database and Athena workgroup (SQL over the mirror), as CloudFormation creates them."""
        for resource in self.template.resources.values():
            if resource["Type"] == "AWS::Glue::Database":
                database = self.resolver.resolve(resource["Properties"]["DatabaseInput"])
                self.glue.create_database(DatabaseInput=database)
            elif resource["Type"] == "AWS::Athena::WorkGroup":
                properties = resource["Properties"]
                configuration = self.resolver.resolve(properties["WorkGroupConfiguration"])
                # A Number parameter reaches the property as a string; CloudFormation converts it to the API's long.
                configuration["BytesScannedCutoffPerQuery"] = int(configuration["BytesScannedCutoffPerQuery"])
                self.athena.create_work_group(
                    Name=self.resolver.resolve(properties["Name"]), Configuration=configuration)

    def _state_machine_s3(self, client: Any) -> Any:
        logical_id, _ = self.template.state_machine()
        return self.s3_clients.checked(logical_id, client)

    # -- what tests, the runner and the bench read or change ------------------------------------------------------
    def role_statements(self, logical_id: str) -> list[dict]:
        """The IAM statements the engine enforces for a function's (or the state machine's) calls."""
        return self.s3_clients.roles[logical_id][1]

    def s3_client_for(self, function: str) -> Any:
        """The S3 client a function's handler gets: its calls are authorized against the function's role."""
        return self.s3_clients.client_for(function)

    def glue_client_for(self, function: str) -> Any:
        """The Glue client a function's handler gets, authorized against its role (local_runner/service_clients.py)."""
        return self.glue_clients.client_for(function)

    def athena_client_for(self, function: str) -> Any:
        """The Athena client a function's handler gets, authorized against its role, queries' caller rights too."""
        return self.athena_clients.client_for(function)

    def on_s3(self, event: str, handler: Callable) -> Callable[[], None]:
        """Register a botocore event handler (e.g. "before-call.s3.PutObject") on every function's S3 client, now
        and for clients created later; returns the undo. Tests use it to inject S3 faults."""
        return self.s3_clients.on_every_client(event, handler)

    @property
    def events(self) -> list[dict]:
        """The EventBridge events the functions published, oldest first (local_runner/event_bus.py)."""
        return self.event_bus.published

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

    @property
    def sqs(self) -> Any:
        return self.queues.sqs

    def queue_url(self, logical_id: str) -> str:
        return self.queues.queue_url(logical_id)

    def purge_queues(self) -> None:
        """Drop waiting messages, e.g. the notifications that restoring a saved bucket set off."""
        self.queues.purge()

    def drain_queues(self) -> None:
        """What Lambda's SQS event source mapping does: deliver waiting messages to their consumer function."""
        self.queues.deliver()

    def redefine(self, **parameters: str) -> None:
        """Change parameters that reach the state machine through its DefinitionSubstitutions (e.g.
        RetryMaxAttempts) for the next executions; the functions' environment stays as it was."""
        self.parameters.update({name: str(value) for name, value in parameters.items()})
        self.definition = self.resolver.state_machine_definition()
        self.sfn.update_state_machine(stateMachineArn=self.state_machine_arn, definition=self.definition)

    # -- running -----------------------------------------------------------------------------------------------
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
        described = self._ends.wait(self.sfn, arn, timeout)
        self.drain_queues()
        return ExecutionResult.of(described, self.lambdas.since(self._started_at.pop(arn, 0)))

    def history(self, execution_arn: str) -> list[dict]:
        return history(self.sfn, execution_arn)

    def payload_sizes(self, execution_arn: str) -> dict:
        return payload_sizes(self.history(execution_arn))
