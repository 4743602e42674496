"""Each function's own S3 client, checked against its role (local_runner/s3_enforcement.py).

In Lambda each function has its own process and role; here they share one, so bls_pipeline.aws.s3_client hands each
handler thread the client of its function, and the state machine's own S3 calls (the Distributed Map's ItemReader
and ResultWriter) get the state machine role's client.
"""

from __future__ import annotations

from typing import Any, Callable

from .function_clients import PerFunctionClients
from .lambda_emulation import ACCOUNT, REGION
from .s3_enforcement import FunctionS3Rules

# Marks the S3 requests the engine makes to read what S3 itself would consult (current ETags for preconditions):
# they are emulation, not the pipeline's, and the bench's request counts leave them out.
ORACLE_USER_AGENT = "local-engine-oracle"


class RoleCheckedS3Clients(PerFunctionClients):
    accessor = "s3_client"

    def __init__(self, roles: dict[str, tuple[str, list[dict]]]):
        super().__init__(roles)
        self._hooks: list[tuple[str, Callable]] = []
        self._oracle: Any = None

    def new_client(self, function: str) -> Any:
        """The S3 client a function's handler gets: its calls are authorized against the function's role."""
        return self.checked(function)

    def checked(self, logical_id: str, client: Any = None) -> Any:
        """`client` (or a new S3 client) with the role of `logical_id` enforced on every call."""
        import boto3
        from bls_pipeline.aws import CLIENT_CONFIG

        role, statements = self.roles[logical_id]
        client = client or boto3.client("s3", config=CLIENT_CONFIG)
        FunctionS3Rules(logical_id, role, statements, ACCOUNT, self._oracle_s3).install(client)
        for event, handler in self._hooks:
            client.meta.events.register(event, handler)
        return client

    def _oracle_s3(self) -> Any:
        """An S3 client with no checks, for what S3 itself consults (an object's current ETag, whether it exists)."""
        import boto3

        with self._lock:
            if self._oracle is None:
                from botocore.config import Config

                self._oracle = boto3.client("s3", region_name=REGION, config=Config(user_agent_extra=ORACLE_USER_AGENT))
            return self._oracle

    def on_every_client(self, event: str, handler: Callable) -> Callable[[], None]:
        """Register a botocore event handler on every function's S3 client, now and for clients created later;
        returns the undo."""
        with self._lock:
            self._hooks.append((event, handler))
            clients = list(self._clients.values())
        for client in clients:
            client.meta.events.register(event, handler)

        def undo() -> None:
            with self._lock:
                self._hooks.remove((event, handler))
                current = list(self._clients.values())
            for client in current:
                client.meta.events.unregister(event, handler)

        return undo
