"""One AWS client per function, handed to that function's handler.

In Lambda each function has its own process and role; here they share one, so the pipeline's client factory in
bls_pipeline.aws (`accessor`) is patched to hand each handler thread the client of its function, which a subclass
builds (and checks against the function's role) in `new_client`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator
from unittest import mock

from .lambda_emulation import current_function


class PerFunctionClients:
    accessor: str  # the name of the lru-cached client factory in bls_pipeline.aws

    def __init__(self, roles: dict[str, tuple[str, list[dict]]]) -> None:
        """roles: function (or state machine) logical id -> (role name, its policy statements)."""
        self.roles = roles
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def new_client(self, function: str) -> Any:
        raise NotImplementedError

    @contextmanager
    def given_to_handlers(self) -> Iterator[None]:
        """While open, bls_pipeline.aws.<accessor>() returns the client of the function whose handler calls it."""
        import bls_pipeline.aws as aws

        getattr(aws, self.accessor).cache_clear()
        with mock.patch.object(aws, self.accessor, lambda: self.client_for(current_function())):
            yield
        getattr(aws, self.accessor).cache_clear()

    def client_for(self, function: str) -> Any:
        with self._lock:
            client = self._clients.get(function)
            if client is None:
                client = self._clients[function] = self.new_client(function)
            return client
