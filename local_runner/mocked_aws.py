"""moto as the local engine starts it: the AWS environment its clients see, its configuration, and stacks deep enough
for moto's Map workers."""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator
from unittest import mock

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


def mocked_aws() -> Any:
    from moto import mock_aws

    return mock_aws(config=MOTO_CONFIG)


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
