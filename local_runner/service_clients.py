"""Glue and Athena as a function meets them in AWS, on top of moto: each function's client is authorized against
its role (local_runner/iam.py GLUE_RULES, ATHENA_RULES), and an Athena query is also checked for what Athena does
with the caller's rights (ATHENA_CALLER_RIGHTS): writing its result file in the workgroup's result location, and
the Glue changes of its DDL. moto has no UpdateNamedQuery; the engine adds it (Athena API Reference,
UpdateNamedQuery: name, description and query string of an existing named query).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator
from unittest import mock

from botocore.exceptions import ClientError

from .function_clients import PerFunctionClients
from .iam import Check, allows, glue_arns, service_checks
from .lambda_emulation import ACCOUNT, REGION

_PARAMS = "local_service_params"
# The DDL the catalog step sends; any other statement is refused until its rights are modelled here.
_CREATE_VIEW = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+(?:\"?(\w+)\"?\.)?\"?(\w+)\"?\s", re.IGNORECASE)


class RoleCheckedServiceClients(PerFunctionClients):
    """Each function's client of one service (glue or athena), its calls checked against the function's role."""

    def __init__(self, service: str, roles: dict[str, tuple[str, list[dict]]]):
        super().__init__(roles)
        self.service = service
        self.accessor = f"{service}_client"

    def new_client(self, function: str) -> Any:
        import boto3
        from bls_pipeline.aws import CLIENT_CONFIG

        client = boto3.client(self.service, region_name=REGION, config=CLIENT_CONFIG)
        events = client.meta.events
        events.register_first(f"before-parameter-build.{self.service}", _remember)
        events.register_first(f"before-call.{self.service}", self._authorize(function))
        return client

    def _authorize(self, function: str) -> Any:
        role, statements = self.roles[function]

        def authorize(model: Any, context: dict, **_: Any) -> None:
            params = dict(context.get(_PARAMS, {}))
            if self.service == "athena":
                params.setdefault("WorkGroup", _workgroup_of(model.name, params))
            checks = service_checks(self.service, model.name, params, REGION, ACCOUNT)
            if self.service == "athena" and model.name == "StartQueryExecution":
                checks += query_caller_checks(params)
            for check in checks:
                if not allows(statements, check):
                    raise denied(role, function, model.name, check)

        return authorize


def _remember(params: dict, context: dict, **_: Any) -> None:
    context[_PARAMS] = params


def denied(role: str, function: str, operation: str, check: Check) -> ClientError:
    return ClientError({
        "Error": {"Code": "AccessDeniedException", "Message": (
            f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{function} is not authorized to perform: "
            f"{check.action} on resource: {check.resource} because no identity-based policy allows the action "
            "(local engine: local_runner/iam.py)")},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }, operation)


def _athena_backend() -> Any:
    from moto.athena.models import athena_backends

    return athena_backends[ACCOUNT][REGION]


def _workgroup_of(operation: str, params: dict) -> str | None:
    """The workgroup a call acts on: named in the call, or that of the query or named query it names."""
    if params.get("WorkGroup"):
        return params["WorkGroup"]
    backend = _athena_backend()
    if operation == "GetQueryExecution":
        execution = backend.executions.get(params.get("QueryExecutionId"))
        return execution.workgroup.name if execution is not None and execution.workgroup else None
    if operation in ("GetNamedQuery", "UpdateNamedQuery"):
        query = backend.named_queries.get(params.get("NamedQueryId"))
        return query.workgroup.name if query is not None else None
    return None


def query_caller_checks(params: dict) -> list[Check]:
    """What Athena checks with the caller's rights when it runs a query (ATHENA_CALLER_RIGHTS)."""
    workgroup = _athena_backend().work_groups.get(params.get("WorkGroup") or "primary")
    configuration = (getattr(workgroup, "configuration", None) or {}) if workgroup else {}
    location = configuration.get("ResultConfiguration", {}).get("OutputLocation") or (
        params.get("ResultConfiguration", {}).get("OutputLocation", ""))
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    checks = [Check("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}"),
              Check("s3:PutObject", f"arn:aws:s3:::{bucket}/{prefix}query-id.csv")]
    statement = params.get("QueryString", "")
    view = _CREATE_VIEW.match(statement)
    if view is None:
        raise NotImplementedError(
            f"the local engine models the Athena rights of CREATE OR REPLACE VIEW only, not of {statement[:60]!r}: "
            "add the statement's Glue and S3 checks to local_runner/service_clients.py")
    database = view.group(1) or params.get("QueryExecutionContext", {}).get("Database", "default")
    for action in ("glue:GetTable", "glue:CreateTable", "glue:UpdateTable"):
        checks += [Check(action, arn) for arn in glue_arns(REGION, ACCOUNT, database, view.group(2))]
    return checks


@contextmanager
def named_query_updates() -> Iterator[None]:
    """moto's Athena with UpdateNamedQuery."""
    from moto.athena.responses import AthenaResponse

    def update_named_query(response: Any) -> str:
        query = response.athena_backend.named_queries.get(response._get_param("NamedQueryId"))
        if query is None:
            return response.error("NamedQuery does not exist", 400)
        query.name = response._get_param("Name")
        query.description = response._get_param("Description") or ""
        query.query_string = response._get_param("QueryString")
        return "{}"

    with mock.patch.object(AthenaResponse, "update_named_query", update_named_query, create=True):
        yield
