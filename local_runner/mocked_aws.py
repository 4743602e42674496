"""moto as the local engine starts it: the AWS environment its clients see, its configuration, stacks deep enough
for moto's Map workers, and without the import of EC2's backend that moto's Step Functions parser would pay for.

moto's Step Functions parser imports moto.batch.utils for its Batch task, and moto/batch/__init__.py imports Batch's
backend, which imports EC2's (1 to 2 s, most of the engine's start). The pipeline runs no Batch task, so moto.batch
is registered as its package with the __init__ not yet run: moto.batch.utils imports alone, and the first use of
anything else in moto.batch (e.g. moto loading the Batch backend) runs the real __init__ then.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

from moto import mock_aws

from .lambda_emulation import REGION

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
MAP_RECURSION_LIMIT = 100_000  # about one frame per Map item a worker handles (see deep_map_workers)
MAP_THREAD_STACK_BYTES = 256 * 1024 * 1024
# moto/batch/__init__.py as written when the deferral below was; a moto that changes it must fail loudly here.
_BATCH_INIT = "from .models import batch_backends  # noqa: F401\n"


@contextmanager
def aws_environment(variables: dict[str, str]) -> Iterator[None]:
    """Local credentials and region, and `variables`, in os.environ; no profile, CA bundle or endpoint of the
    user's leaks in."""
    credentials = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
    with mock.patch.dict(os.environ, {**credentials, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, **variables}):
        for name in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        yield


@contextmanager
def atomic_conditional_puts() -> Iterator[None]:
    """moto checks a PutObject's If-Match / If-None-Match and writes the object in two steps, so two threads can
    both pass the check and both "win". S3 decides conditional writes on one object atomically: "if multiple
    conditional writes occur for the same object name, the first write operation to finish succeeds" (S3 User
    Guide, "How to prevent object overwrites with conditional writes"). The request-rate slots rely on that, so
    conditional PutObjects are served one at a time here."""
    import inspect

    from moto.s3.responses import S3Response

    original = S3Response.put_object
    if list(inspect.signature(original).parameters) != ["self"]:
        raise RuntimeError("moto's S3Response.put_object changed its signature: update local_runner/mocked_aws.py")
    lock = threading.RLock()

    def put_object(response: Any) -> Any:
        if response.headers.get("If-Match") or response.headers.get("If-None-Match"):
            with lock:
                return original(response)
        return original(response)

    with mock.patch.object(S3Response, "put_object", put_object):
        yield


def mocked_aws() -> Any:
    _defer_batch_package_init()
    return mock_aws(config=MOTO_CONFIG)


def _defer_batch_package_init() -> None:
    if "moto.batch" in sys.modules:
        return
    spec = importlib.util.find_spec("moto.batch")
    if spec is None or spec.origin is None or Path(spec.origin).read_text(encoding="utf-8") != _BATCH_INIT:
        raise RuntimeError(
            "moto/batch/__init__.py is not the one local_runner/mocked_aws.py defers (see requirements-dev.txt): "
            "check that deferring it is still safe and update _BATCH_INIT"
        )
    package = importlib.util.module_from_spec(spec)

    def run_init_on_first_use(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = run_init_on_first_use  # type: ignore[attr-defined]
    sys.modules["moto.batch"] = package


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
