"""The two things the integration tests run against: a stack deployed in an AWS account, and the local engine with
a loopback BLS-like server. The tests see only this surface, so the same assertions run in `make test` (local)
and in `make integration STACK=<name>` (AWS)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Run:
    name: str
    status: str
    output: dict | None
    error: str | None
    cause: str | None
    started: float  # time.time() when the execution was started


class Deployment(Protocol):
    s3: Any
    bucket: str
    mirror_prefix: str
    athena: Any
    database: str
    workgroup: str

    def execute(self, execution_input: dict | None = None) -> Run: ...

    def wait_for_reports(self, run: Run) -> dict[str, Any]:
        """reports/<execution>/ or reports/latest/ written by this run (or by the queue path it set off)."""
        ...


def latest_reports(s3: Any, bucket: str, run: Run, timeout: float, poll: float) -> dict[str, Any]:
    """The report objects under reports/latest/ written after the run started, once all three are there."""
    names = ("population_stats.json", "best_year_by_series.json", "series_population.json")
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for name in names:
            try:
                head = s3.head_object(Bucket=bucket, Key=f"reports/latest/{name}")
            except s3.exceptions.ClientError:
                continue
            if head["LastModified"].timestamp() >= run.started - 5:
                found[name] = head
        if len(found) == len(names) or time.monotonic() > deadline:
            return found
        time.sleep(poll)


def athena_query(athena: Any, database: str, workgroup: str, sql: str, timeout: float, poll: float) -> list[list]:
    """Run one query in the stack's workgroup and return its rows (strings or None), the header row left out."""
    query_id = athena.start_query_execution(QueryString=sql, WorkGroup=workgroup,
                                            QueryExecutionContext={"Database": database})["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    while True:
        status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
        if status["State"] == "SUCCEEDED":
            break
        if status["State"] in ("FAILED", "CANCELLED") or time.monotonic() > deadline:
            raise AssertionError(f"{sql!r}: {status['State']}: {status.get('StateChangeReason', '')}")
        time.sleep(poll)
    rows: list[list] = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        rows += [[cell.get("VarCharValue") for cell in row["Data"]] for row in page["ResultSet"]["Rows"]]
    return rows[1:]


class AwsDeployment:
    """A deployed stack, found by name: its outputs name the bucket and the state machine."""

    def __init__(self, stack_name: str, execution_timeout: float = 1800):
        import boto3

        self.stack_name = stack_name
        self.execution_timeout = execution_timeout
        stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
        self.bucket = outputs["MirrorBucketName"]
        self.state_machine_arn = outputs["StateMachineArn"]
        self.mirror_prefix = parameters.get("MirrorRoot", "bls/") + "pr/"  # the survey the checks read: pr
        self.database = outputs["QueryDatabaseName"]
        self.workgroup = outputs["QueryWorkGroupName"]
        self.s3 = boto3.client("s3")
        self.sfn = boto3.client("stepfunctions")
        self.athena = boto3.client("athena")

    def execute(self, execution_input: dict | None = None) -> Run:
        name = f"integration-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        started = time.time()
        arn = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                       input=json.dumps(execution_input or {}))["executionArn"]
        deadline = time.monotonic() + self.execution_timeout
        while (described := self.sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {arn} still running after {self.execution_timeout} s")
            time.sleep(10)
        output = described.get("output")
        return Run(name, described["status"], json.loads(output) if output else None, described.get("error"),
                   described.get("cause"), started)

    def wait_for_reports(self, run: Run) -> dict[str, Any]:
        return latest_reports(self.s3, self.bucket, run, timeout=600, poll=10)

    def query(self, sql: str) -> list[list]:
        return athena_query(self.athena, self.database, self.workgroup, sql, timeout=300, poll=2)


class LocalDeployment:
    """The local engine (moto, the real ASL, the real handlers, the roles enforced) against a loopback source."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.s3 = engine.s3
        self.bucket = engine.bucket
        self.mirror_prefix = engine.parameters.get("MirrorRoot", "bls/") + "pr/"
        self.database = engine.parameters.get("CatalogDatabase", "bls_mirror")
        self.workgroup = engine.resolver.ref("QueryWorkGroup")
        # The engine's own client, as self.s3 is and as AwsDeployment queries with the operator's credentials: no
        # function of the stack reads query results (the catalog step's role has no athena:GetQueryResults).
        self.athena = engine.athena

    def execute(self, execution_input: dict | None = None) -> Run:
        started = time.time()
        name = f"integration-{uuid.uuid4().hex[:12]}"
        result = self.engine.execute(execution_input, name=name)
        return Run(name, result.status, result.output, result.error, result.cause, started)

    def wait_for_reports(self, run: Run) -> dict[str, Any]:
        return latest_reports(self.s3, self.bucket, run, timeout=0, poll=0)

    def query(self, sql: str) -> list[list]:
        return athena_query(self.athena, self.database, self.workgroup, sql, timeout=0, poll=0)
