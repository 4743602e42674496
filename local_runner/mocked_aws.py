"""moto as the local engine starts it: the AWS environment its clients see, its configuration, stacks deep enough
for moto's Map workers, and what replaces some of moto's own code to make the start and the runs faster: a Batch
package whose __init__ runs on first use, one loader of botocore's models, and the state machine definition parsed
once (ParsedDefinitions). Those replacements are applied, each with its guard, by local_runner/moto_patches.py.

moto's Step Functions parser imports moto.batch.utils for its Batch task, and moto/batch/__init__.py imports Batch's
backend, which imports EC2's (1 to 2 s, most of the engine's start). The pipeline runs no Batch task, so moto.batch
is registered as its package with the __init__ not yet run (deferred_batch_package): moto.batch.utils imports alone,
and the first use of anything else in moto.batch (e.g. moto loading the Batch backend) runs the real __init__ then.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import sys
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

from moto import mock_aws

from .lambda_emulation import REGION

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
MAP_RECURSION_LIMIT = 100_000  # about one frame per Map item a worker handles (see deep_map_workers)
MAP_THREAD_STACK_BYTES = 256 * 1024 * 1024


@contextmanager
def aws_environment(variables: dict[str, str]) -> Iterator[None]:
    """Local credentials and region, and `variables`, in os.environ; no profile, CA bundle or endpoint of the
    user's leaks in."""
    credentials = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
    with mock.patch.dict(os.environ, {**credentials, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, **variables}):
        for name in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        yield


def serialized_conditional_puts(put_object: Callable) -> Callable:
    """moto's S3Response.put_object with conditional PutObjects served one at a time.

    moto checks a PutObject's If-Match / If-None-Match and writes the object in two steps, so two threads can both
    pass the check and both "win". S3 decides conditional writes on one object atomically: "if multiple conditional
    writes occur for the same object name, the first write operation to finish succeeds" (S3 User Guide, "How to
    prevent object overwrites with conditional writes"). The request-rate slots rely on that."""
    lock = threading.RLock()

    def serialized(response: Any) -> Any:
        if response.headers.get("If-Match") or response.headers.get("If-None-Match"):
            with lock:
                return put_object(response)
        return put_object(response)

    return serialized


def one_loader(create_loader: Callable[[], Any]) -> Callable[[], Any]:
    """moto's create_loader, making its loader once: botocore's service models (JSON files of up to a few MB) read
    once where moto read them up to three times.

    moto reads each service's model (botocore's, with moto's extras) through a new botocore Loader
    (moto.core.utils.create_loader) per model, and a new Loader lists every service directory on disk again before
    it loads anything (Loader.list_available_services: some 400 directories, 20 to 30 ms, five times a run). One
    loader, made by moto's create_loader, serves them all while the engine runs: the same search paths, the same
    extras, the same models (moto caches each model for the process anyway)."""
    loader = create_loader()
    return lambda: loader


def default_session(own_session: Callable[[], Any]) -> Callable[[type], Any]:
    """AccountSpecificBackend.get_session answering with boto3's default session.

    moto asks a boto3 Session of its own which regions each service has, when it creates the service's backend, and
    that session loads the whole service model again for it. The engine's clients come from boto3's default session,
    which has loaded those models already (the engine creates a client before any backend exists), so moto asks
    that one: the same botocore data files, the same regions."""
    import boto3

    def session(cls: type) -> Any:
        return boto3.DEFAULT_SESSION or own_session()

    return session


def mocked_aws() -> Any:
    return mock_aws(config=MOTO_CONFIG)


def deferred_batch_package(spec: Any) -> Any:
    """The moto.batch package, its __init__ (spec's) run on the first use of one of its names."""
    package = importlib.util.module_from_spec(spec)

    def run_init_on_first_use(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = run_init_on_first_use  # type: ignore[attr-defined]
    return package


@contextmanager
def deep_map_workers() -> Iterator[None]:
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


class ParsedDefinitions:
    """moto's Step Functions engine parses a definition with its ANTLR grammar twice per run: when the state machine
    is created (to validate it) and again when each execution starts, into a fresh tree of its evaluation
    components (the "program"). Parsing this project's definition costs 0.1 to 0.2 s each time. Here each
    definition is parsed once by moto's own parser, and its program kept pickled: in memory, and on disk between
    processes (next to the SAM transform's cache), under a key of the definition and the versions of moto, the
    ANTLR runtime and Python. Every execution still gets its own fresh program (unpickled, as a new parse would
    make it) and runs it on moto's engine; a definition is still refused exactly when moto's parser refuses it
    (a refused one is never cached, so moto parses it and raises its own InvalidDefinition).

    The program is pickled straight after the parse, before anything evaluates it: components keep per-evaluation
    state (EvalComponent.heap_key) that must not be shared between executions."""

    def __init__(self) -> None:
        self._pickled: dict[str, bytes] = {}  # key -> pickled program, for every engine of this process
        self._lock = threading.Lock()

    @staticmethod
    def key(definition: str) -> str:
        return hashlib.sha256(json.dumps([_parser_versions(), definition]).encode()).hexdigest()

    def pickled_program(self, definition: str) -> bytes | None:
        """The definition's program as moto's parser makes it, pickled; None if it cannot be pickled (then moto
        parses it itself every time). Raises what moto's parser raises for a definition it refuses."""
        key = self.key(definition)
        with self._lock:
            found = self._pickled.get(key)
        if found is None:
            found = self._read(key)
        if found is None:
            from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

            program, _ = AmazonStateLanguageParser.parse(definition)
            try:
                found = pickle.dumps(program, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - a moto whose components do not pickle: no cache, same results
                return None
            self._write(key, found)
        with self._lock:
            self._pickled[key] = found
        return found

    @staticmethod
    def _path(key: str) -> Path:
        from .cloudformation import _cache_dir

        return _cache_dir() / f"asl-program-{key}.pickle"

    def _read(self, key: str) -> bytes | None:
        if _parser_versions() is None:
            return None
        try:
            data = self._path(key).read_bytes()
            pickle.loads(data)  # a damaged file is parsed again and rewritten
            return data
        except Exception:  # noqa: BLE001 - missing, unreadable or from another layout: parse again
            return None

    def _write(self, key: str, data: bytes) -> None:
        if _parser_versions() is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_bytes(data)
            os.replace(partial, path)
        except OSError:
            pass  # no cache: the next process parses again

    def validating(self, validate: Callable[[str], None]) -> Callable[[str], None]:
        """moto's StepFunctionsParserBackend._validate_definition (`validate`), parsing each definition once here."""
        definitions = self

        def validate_once(definition: str) -> None:
            try:
                definitions.pickled_program(definition)
            except Exception:
                validate(definition)  # moto's own InvalidDefinition for what its parser refuses
                raise

        return validate_once

    def executing(self, entrypoint: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """moto's ExecutionWorker._get_evaluation_entrypoint (`entrypoint`), each execution's fresh program unpickled
        from the one parse."""
        definitions = self

        def fresh_program(worker: Any) -> Any:
            pickled = definitions.pickled_program(worker._evaluation_details.state_machine_details.definition)
            return entrypoint(worker) if pickled is None else pickle.loads(pickled)

        return fresh_program


@lru_cache(maxsize=None)
def _parser_versions() -> tuple[str, ...] | None:
    """What a pickled program depends on besides its definition: moto's components, the parser runtime, Python;
    None where the installed versions cannot be told (then nothing is kept on disk)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("moto"), version("antlr4-python3-runtime"), sys.version, str(pickle.HIGHEST_PROTOCOL)
    except PackageNotFoundError:
        return None


PARSED_DEFINITIONS = ParsedDefinitions()
