"""Glue and Athena as a function meets them in AWS, on top of moto: each function's client is authorized against
its role (local_runner/iam.py GLUE_RULES, ATHENA_RULES), and an Athena query is also checked for what Athena does
with the caller's rights (ATHENA_CALLER_RIGHTS, query_caller_checks): the result location's rights (QUERY_RESULTS),
for every query; the Glue objects the statement reads, through its views, and for a SELECT the S3 data of the tables
it reads (TABLE_DATA_READS); the Glue changes of a DDL. The queries themselves run in local_runner/athena_sql.py.
moto has no UpdateNamedQuery and no DeleteNamedQuery; the engine adds them (update_named_query, delete_named_query,
added to moto's AthenaResponse by local_runner/moto_patches.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from botocore.exceptions import ClientError

from .function_clients import PerFunctionClients
from .iam import Check, allows, glue_arns, query_result_checks, service_checks
from .lambda_emulation import ACCOUNT, REGION

_PARAMS = "local_service_params"


class RoleCheckedServiceClients(PerFunctionClients):
    """Each function's client of one service (glue or athena), its calls checked against the function's role."""

    def __init__(self, service: str, roles: dict[str, tuple[str, list[dict]]], queries: Any = None):
        """queries: for athena, the engine's LocalAthena (local_runner/athena_sql.py), which knows each query's
        result file."""
        super().__init__(roles)
        self.service = service
        self.accessor = f"{service}_client"
        self.queries = queries

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
            elif self.service == "athena" and model.name == "GetQueryResults":
                checks += self._result_read_checks(params)
            for check in checks:
                if not allows(statements, check):
                    raise denied(role, function, model.name, check)

        return authorize

    def _result_read_checks(self, params: dict) -> list[Check]:
        """GetQueryResults also reads the result file with the caller's rights (GET_QUERY_RESULTS)."""
        outcome = self.queries.outcomes.get(params.get("QueryExecutionId")) if self.queries is not None else None
        if outcome is None:
            return []
        return [Check("s3:GetObject", "arn:aws:s3:::" + outcome.output.removeprefix("s3://"))]


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
    if operation in ("GetQueryExecution", "GetQueryResults"):
        execution = backend.executions.get(params.get("QueryExecutionId"))
        return execution.workgroup.name if execution is not None and execution.workgroup else None
    if operation in ("GetNamedQuery", "UpdateNamedQuery", "DeleteNamedQuery"):
        query = backend.named_queries.get(params.get("NamedQueryId"))
        return query.workgroup.name if query is not None else None
    return None


def query_caller_checks(params: dict) -> list[Check]:
    """What Athena checks with the caller's rights when it runs a query (ATHENA_CALLER_RIGHTS).

    Every query: the result location (QUERY_RESULTS). A statement the engine runs (local_runner/athena_sql.py) also
    needs glue:GetTable on each table and view it names, through its views (a name Glue lacks too: the check comes
    before the lookup fails), and glue:GetDatabase on their databases and a DDL's; a SELECT, the S3 reads of each
    table's data (TABLE_DATA_READS); CREATE [OR REPLACE] VIEW, glue:GetTable, CreateTable and UpdateTable on the view;
    DROP VIEW, glue:GetTable and DeleteTable (GLUE_DELETES). A statement the engine refuses, or one that does not
    parse, needs only the result location's rights: it fails before it reads or changes anything.
    """
    from . import athena_sql

    query = params.get("QueryString", "")
    location = athena_sql.result_location(params.get("WorkGroup"), params.get("ResultConfiguration"))
    checks: list[Check] = []
    if location is not None:  # without one, StartQueryExecution itself is refused
        # The id Athena will give the query is not known yet: a fresh one of its shape stands for it.
        _, key = athena_sql.result_key(location, str(uuid.uuid4()), athena_sql.statement_type(query) == "DDL")
        checks += query_result_checks(location, key)
    context = params.get("QueryExecutionContext") or {}
    database = context.get("Database") or athena_sql.DEFAULT_DATABASE
    try:
        statement = athena_sql.parse_statement(query, database, params.get("ExecutionParameters"))
        reads = athena_sql.catalog_reads(statement)
    except athena_sql.AthenaQueryError:
        return checks
    named = [*((o.database, o.name) for o in reads.objects), *reads.missing]
    for database in dict.fromkeys([d for d, _ in named] + ([statement.target[0]] if statement.target else [])):
        checks += [Check("glue:GetDatabase", arn) for arn in glue_arns(REGION, ACCOUNT, database)]
    for found in named:
        checks += [Check("glue:GetTable", arn) for arn in glue_arns(REGION, ACCOUNT, *found)]
    if statement.kind == "SELECT":
        for found in reads.objects:
            if not found.is_view:
                checks += _table_data_checks(found)
    elif statement.kind == "CREATE VIEW":
        for action in ("glue:GetTable", "glue:CreateTable", "glue:UpdateTable"):
            checks += [Check(action, arn) for arn in glue_arns(REGION, ACCOUNT, *statement.target)]
    else:
        for action in ("glue:GetTable", "glue:DeleteTable"):
            checks += [Check(action, arn) for arn in glue_arns(REGION, ACCOUNT, *statement.target)]
    return checks


def _table_data_checks(table: Any) -> list[Check]:
    from . import athena_sql

    try:
        files = athena_sql.table_files(table)
    except athena_sql.AthenaQueryError:
        return []  # the query fails on it before reading anything more
    return ([Check("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": prefix}) for bucket, prefix in files.listed]
            + [Check("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}") for bucket, key in files.manifests + files.data])


def update_named_query(response: Any) -> str:
    """AthenaResponse.update_named_query, which moto 5.2.5 lacks (Athena API Reference, UpdateNamedQuery: name,
    description and query string of an existing named query)."""
    query = response.athena_backend.named_queries.get(response._get_param("NamedQueryId"))
    if query is None:
        return response.error("NamedQuery does not exist", 400)
    query.name = response._get_param("Name")
    query.description = response._get_param("Description") or ""
    query.query_string = response._get_param("QueryString")
    return "{}"


def delete_named_query(response: Any) -> str:
    """AthenaResponse.delete_named_query, which moto 5.2.5 lacks (Athena API Reference, DeleteNamedQuery: deletes the
    named query; an unknown id is InvalidRequestException)."""
    if response.athena_backend.named_queries.pop(response._get_param("NamedQueryId"), None) is None:
        return response.error("NamedQuery does not exist", 400)
    return "{}"
