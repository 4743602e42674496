"""moto's particulars: every change the local engine makes to moto's own code, in one table (PATCHES).

Each record names what it replaces (`target`: "module:Class.attr", or a bare module name for a module's entry in
sys.modules), why (the AWS or moto fact), whether the engine needs it to answer as AWS does (`need`: CORRECTNESS) or
only to be fast (SPEED: the same results, slower without it), the signature of moto's original as moto defines it
(or a guard of its own), and the factory of its replacement. What a replacement does stays with the engine part it
belongs to (local_runner/lambda_emulation.py runs the handlers, local_runner/athena_sql.py the queries, ...); the
patching, the guards and the records are here. applied() checks every guard, then applies the records; a moto that
differs from the one the engine was written for (requirements-dev.txt pins it) fails the engine's start, naming the
record to update, before any attribute is patched.

The switch: LOCAL_ENGINE_SPEED_PATCHES=off (read here only, in speed_patches_on, when an engine starts) applies the
correctness records alone, to tell whether a difference comes from a speed patch; "on" (or unset) applies all.

tests/test_moto_patches.py checks that no module of local_runner/ but this one patches moto, botocore or boto3.
Tests may still patch moto themselves (monkeypatch, to inject a fault or count calls): test doubles, outside that scan.
What local_runner/ changes besides, and is not a patch of moto, stays where it is:
- os.environ, patched (mock.patch.dict) for the process's AWS environment (mocked_aws.aws_environment) and for the
  SAM transform's region (cloudformation.py);
- the project's own client accessors in bls_pipeline.aws, patched so that each handler gets its function's client
  (function_clients.py);
- the interpreter's recursion limit and thread stack size, raised for moto's Map workers (mocked_aws.deep_map_workers);
- botocore event handlers, registered through botocore's own hooks on the clients the engine creates
  (s3_enforcement.py, event_bus.py, service_clients.py, s3_clients.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence
from unittest import mock

from . import mocked_aws, service_clients, step_functions_rules
from .lambda_emulation import LambdaEmulator

CORRECTNESS = "correctness"
SPEED = "speed"
SWITCH = "LOCAL_ENGINE_SPEED_PATCHES"

# moto/batch/__init__.py as written when its deferral was; a moto that changes it must fail loudly.
_BATCH_INIT = "from .models import batch_backends  # noqa: F401\n"
_SFN = "moto.stepfunctions.parser"
_STATE_MAP = f"{_SFN}.asl.component.state.exec.state_map"
_RESULT_WRITER = f"{_STATE_MAP}.result_writer.resource_eval.resource_eval_s3"
_ITEM_READER = f"{_STATE_MAP}.item_reader.eval.resource_eval_s3"
_CLIENT_FOR = ("region", "service", "state_credentials")  # moto's ...asl.utils.boto_client.boto_client_for


class MotoChanged(RuntimeError):
    """moto is not the one a record was written for."""


@dataclass(frozen=True)
class EngineParts:
    """The engine's objects that replacements act on (local_runner/engine.py); None where a subset needs none."""

    lambdas: Any = None  # LambdaEmulator
    ends: Any = None  # ExecutionEnds
    queries: Any = None  # LocalAthena
    definitions: Any = None  # ParsedDefinitions
    state_machine_s3: Callable[[Any], Any] | None = None  # a state machine's S3 client -> it, authorized


@dataclass(frozen=True)
class MotoPatch:
    target: str
    need: str  # CORRECTNESS or SPEED
    why: str
    replacement: Callable[[Any, EngineParts], Any]  # (moto's original, the engine's parts) -> what takes its place
    signature: tuple[str, ...] | None = None  # the parameters of moto's original, as moto defines it
    guard: Callable[[Any], None] | None = None  # a further check of moto's original (raises MotoChanged)
    create: bool = False  # moto lacks the attribute: the record adds it, and fails once moto has one

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def is_module(self) -> bool:
        return ":" not in self.target


def check_signature(target: str, found: Any, expected: Sequence[str]) -> None:
    """The guard: `found` (moto's function at `target`, as its class holds it) takes `expected` parameters."""
    function = found.__func__ if isinstance(found, (staticmethod, classmethod)) else found
    parameters = list(inspect.signature(function).parameters)
    if parameters != list(expected):
        raise MotoChanged(
            f"moto's {target} takes {parameters}, not {list(expected)}: this moto is not the one the local engine was "
            "written for (see requirements-dev.txt); update its record in local_runner/moto_patches.py"
        )


def _is_moto_s_client_builder(found: Any) -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client

    if found is not boto_client.boto_client_for:
        raise MotoChanged("moto's lambda_eval_utils.boto_client_for is not boto_client.boto_client_for any more: the "
                          "record keeping one Lambda client per region (local_runner/moto_patches.py) may not hold")


def _athena_backend_starts_as_known(_: Any) -> None:
    from moto.athena.models import AthenaBackend

    check_signature("moto.athena.models:AthenaBackend.start_query_execution", AthenaBackend.start_query_execution,
                    ("self", "query", "context", "config", "workgroup", "execution_parameters"))


def _batch_init_as_known(spec: Any) -> None:
    if spec is None or spec.origin is None or Path(spec.origin).read_text(encoding="utf-8") != _BATCH_INIT:
        raise MotoChanged("moto/batch/__init__.py is not the one local_runner/moto_patches.py defers (see "
                          "requirements-dev.txt): check that deferring it is still safe and update _BATCH_INIT")


PATCHES: tuple[MotoPatch, ...] = (
    MotoPatch(
        "moto.batch", SPEED,
        "moto's Step Functions parser imports moto.batch.utils, whose package __init__ imports Batch's and EC2's "
        "backends (1 to 2 s); the pipeline runs no Batch task, so the __init__ runs on first use (for the process)",
        lambda spec, _: mocked_aws.deferred_batch_package(spec), guard=_batch_init_as_known),
    MotoPatch(
        "moto.core.utils:create_loader", SPEED,
        "moto makes a botocore Loader per service model, each listing some 400 service directories again; one "
        "loader serves every model, with the same search paths and extras",
        lambda original, _: mocked_aws.one_loader(original), signature=()),
    MotoPatch(
        "moto.core.base_backend:AccountSpecificBackend.get_session", SPEED,
        "moto asks a boto3 Session of its own for each service's regions, loading the model again; boto3's "
        "default session has it loaded and the same regions",
        lambda original, _: mocked_aws.default_session(original), signature=("cls",)),
    MotoPatch(
        "moto.s3.responses:S3Response.put_object", CORRECTNESS,
        "S3 decides conditional writes of one object atomically (the first to finish wins); moto checks "
        "If-Match/If-None-Match and writes in two steps, so both of two racing writers could win",
        lambda original, _: mocked_aws.serialized_conditional_puts(original), signature=("self",)),
    MotoPatch(
        f"{_SFN}.models:StepFunctionsParserBackend._validate_definition", SPEED,
        "moto parses a definition with its ANTLR grammar to validate it (0.1 to 0.2 s); the one parse is kept "
        "(ParsedDefinitions), and a definition moto refuses is still refused by moto",
        lambda original, parts: parts.definitions.validating(original), signature=("definition",)),
    MotoPatch(
        f"{_SFN}.backend.execution_worker:ExecutionWorker._get_evaluation_entrypoint", SPEED,
        "moto parses the definition again for each execution; each gets a fresh program unpickled from the one "
        "parse, as moto's parser makes it",
        lambda original, parts: parts.definitions.executing(original), signature=("self",)),
    MotoPatch(
        "moto.awslambda_simple.models:LambdaSimpleBackend.invoke", CORRECTNESS,
        "moto's Lambda without Docker runs no code; the invoke runs the function's real handler under its "
        "Timeout, with Lambda's error payloads (x-amz-function-error, errorType)",
        lambda original, parts: parts.lambdas.routed_invoke(original),
        signature=("self", "function_name", "qualifier", "body", "headers", "response_headers")),
    MotoPatch(
        f"{_SFN}.asl.component.state.exec.state_task.lambda_eval_utils:boto_client_for", SPEED,
        "moto creates a boto3 Lambda client for every Task state it runs (5 to 10 ms each, all alike); one per "
        "region serves every invoke",
        lambda original, _: LambdaEmulator.one_client_per_region(original), signature=_CLIENT_FOR,
        guard=_is_moto_s_client_builder),
    MotoPatch(
        f"{_SFN}.backend.execution:BaseExecutionWorkerCommunication.terminated", SPEED,
        "the engine waits for an execution's end woken by moto's worker instead of polling DescribeExecution "
        "(each poll a botocore call competing for the GIL)",
        lambda original, parts: parts.ends.notifying(original), signature=("self",)),
    *(MotoPatch(
        f"{module}:boto_client_for", CORRECTNESS,
        f"the Distributed Map's {part} calls S3 with the state machine's role in AWS; moto's S3 client checks no "
        "role, so its calls are authorized against the role here",
        lambda original, parts: step_functions_rules.checked_client_for(original, parts.state_machine_s3),
        signature=_CLIENT_FOR) for module, part in ((_RESULT_WRITER, "ResultWriter"), (_ITEM_READER, "ItemReader"))),
    MotoPatch(
        f"{_RESULT_WRITER}:ResourceEvalS3._handle_put_object", CORRECTNESS,
        "ResultWriter writes manifest.json and SUCCEEDED_0.json under <Prefix>/<map run id>/ in AWS; moto writes "
        "an empty manifest only",
        lambda original, _: step_functions_rules.write_results,
        signature=("env", "resource_runtime_part", "state_credentials")),
    MotoPatch(
        f"{_STATE_MAP}.result_writer.result_writer_decl:ResultWriter._eval_body", CORRECTNESS,
        "ResultWriter's Parameters paths read the Map state's input in AWS; moto evaluates them on the Map's "
        "results",
        lambda original, _: step_functions_rules.result_writer_reads_the_state_input, signature=("self", "env")),
    MotoPatch(
        f"{_SFN}.asl.component.state.fail.cause_decl:Cause._eval_body", CORRECTNESS,
        "Step Functions refuses a Fail state's cause over 32,768 characters (ExecutionFailedEventDetails.cause); "
        "moto accepts any length",
        lambda original, _: step_functions_rules.cause_within_limit(original), signature=("self", "env")),
    MotoPatch(
        "moto.athena.responses:AthenaResponse.update_named_query", CORRECTNESS,
        "moto 5.2.5 has no UpdateNamedQuery, which the catalog step calls (name, description and query string of "
        "an existing named query)",
        lambda original, _: service_clients.update_named_query, create=True),
    MotoPatch(
        "moto.athena.responses:AthenaResponse.delete_named_query", CORRECTNESS,
        "moto 5.2.5 has no DeleteNamedQuery, which the catalog step calls (an unknown id is "
        "InvalidRequestException)",
        lambda original, _: service_clients.delete_named_query, create=True),
    MotoPatch(
        "moto.athena.responses:AthenaResponse.start_query_execution", CORRECTNESS,
        "moto's Athena runs no query (each one \"succeeds\"); the query runs in DuckDB over moto's Glue and S3 "
        "and writes its result file, as Athena does",
        lambda original, parts: parts.queries.moto_start_query_execution(original), signature=("self",),
        guard=_athena_backend_starts_as_known),
    MotoPatch(
        "moto.athena.responses:AthenaResponse.get_query_execution", CORRECTNESS,
        "moto answers SUCCEEDED for every query; the state, statement type, result location and error are those "
        "of the query as it ran in DuckDB",
        lambda original, parts: parts.queries.moto_get_query_execution(original), signature=("self",)),
    MotoPatch(
        "moto.athena.responses:AthenaResponse.get_query_results", CORRECTNESS,
        "moto's results have no rows of the query; the rows are the query's, paged as Athena pages them (the "
        "column names first, at most 1,000 rows a page, NextToken)",
        lambda original, parts: parts.queries.moto_get_query_results(original), signature=("self",)),
)
_BY_TARGET = {record.target: record for record in PATCHES}
_MISSING = object()
_active: list[str] = []  # the attribute targets applied() holds patched now
_installed: dict[str, Any] = {}  # module target -> the module a module record put in sys.modules (for the process)


def speed_patches_on() -> bool:
    """Whether the SPEED records apply: LOCAL_ENGINE_SPEED_PATCHES unset or "on"; "off" applies CORRECTNESS alone."""
    value = os.environ.get(SWITCH, "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"{SWITCH}={os.environ[SWITCH]!r}: expected on or off")
    return value == "on"


def chosen(targets: Iterable[str] | None = None) -> tuple[MotoPatch, ...]:
    """The records applied() applies: all, or those of `targets`; the SPEED ones only while speed_patches_on()."""
    records = PATCHES if targets is None else tuple(_BY_TARGET[target] for target in targets)
    speed = speed_patches_on()
    return tuple(record for record in records if speed or record.need != SPEED)


def owner_of(record: MotoPatch) -> tuple[Any, str]:
    """The object that holds the record's target and the attribute's name (imports moto's module)."""
    module, _, path = record.target.partition(":")
    owner: Any = importlib.import_module(module)
    *owners, attribute = path.split(".")
    for name in owners:
        owner = getattr(owner, name)
    return owner, attribute


def current(record: MotoPatch) -> Any:
    """What the record's target holds now, as its owner holds it (a staticmethod as a staticmethod); for a module
    record, its entry in sys.modules (None before it is imported)."""
    if record.is_module:
        return sys.modules.get(record.target)
    owner, attribute = owner_of(record)
    return inspect.getattr_static(owner, attribute, None)


def active() -> tuple[str, ...]:
    """The targets patched now: those applied() holds, and the modules a module record installed (for the process)."""
    modules = [target for target, module in _installed.items() if sys.modules.get(target) is module]
    return tuple(dict.fromkeys([*modules, *_active]))


@contextmanager
def applied(parts: EngineParts | None = None, targets: Iterable[str] | None = None) -> Iterator[tuple[MotoPatch, ...]]:
    """While open, the chosen records (all, or `targets`; see chosen) replace moto's code.

    Module records come first, as the other guards import moto's modules, which would import the module themselves;
    each lasts for the process (moto's modules imported meanwhile hold it), and does nothing where the module is
    imported already. Then every other record's guard is checked before any of them applies."""
    parts = parts or EngineParts()
    records = chosen(targets)
    for record in records:
        if record.is_module and record.target not in sys.modules:
            spec = _checked_original(record)
            sys.modules[record.target] = _installed[record.target] = record.replacement(spec, parts)
    checked = [(record, _checked_original(record)) for record in records if not record.is_module]
    with ExitStack() as stack:
        for record, original in checked:
            stack.enter_context(_patched(record, original, parts))
            _active.append(record.target)
            stack.callback(_active.remove, record.target)
        yield records


def atomic_conditional_puts() -> Any:
    """S3's atomic conditional writes alone, for moto without the engine (the tests' moto_s3 fixture)."""
    return applied(targets=("moto.s3.responses:S3Response.put_object",))


def _checked_original(record: MotoPatch) -> Any:
    if record.is_module:
        original = importlib.util.find_spec(record.target)
    else:
        owner, attribute = owner_of(record)
        original = inspect.getattr_static(owner, attribute, _MISSING)
        if record.create:
            if original is not _MISSING:
                raise MotoChanged(f"moto's {record.target} exists now: drop the local engine's record of it "
                                  "(local_runner/moto_patches.py)")
        elif original is _MISSING:
            raise MotoChanged(f"moto has no {record.target}: update its record in local_runner/moto_patches.py")
        if record.signature is not None:
            check_signature(record.target, original, record.signature)
    if record.guard is not None:
        record.guard(None if original is _MISSING else original)
    return original


def _patched(record: MotoPatch, held: Any, parts: EngineParts) -> Any:
    """mock.patch.object of the record's target: the replacement made from moto's original as Python hands it out
    (a function, or a classmethod bound to its class), wrapped again as a static or class method where moto's is."""
    owner, attribute = owner_of(record)
    original = None if held is _MISSING else getattr(owner, attribute)
    new = record.replacement(original, parts)
    if isinstance(held, (staticmethod, classmethod)):
        new = type(held)(new)
    return mock.patch.object(owner, attribute, new, create=record.create)
