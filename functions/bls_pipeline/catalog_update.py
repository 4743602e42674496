"""The catalog step: keeps the SQL catalog over the mirror current in Glue and Athena (catalog.py defines it).

For each survey mirrored under the mirror's first folder (one delimited listing finds them), the survey's tables,
their symlink manifests and their views are rebuilt when its files changed (their names or ETags, from its sync index:
one request whatever the file count), when the catalog's definitions changed (the SQL files, catalog.py), or when
Glue lacks one of its tables; otherwise the survey costs the index read and one read of its record
(catalog/state/<survey>.json). The normalized population copy and its table
follow the population file's ETag; the named report queries follow their SQL. So the step is idempotent, a first
mirror of a survey gets its tables in the same execution, and a run that changed nothing changes nothing here.

Views are made by Athena DDL (CREATE OR REPLACE VIEW), waited for; a failed DDL fails the step and leaves the
survey's record unwritten, so the next run tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, Callable

from botocore.exceptions import ClientError

from . import catalog
from .config import INDEX_PREFIX, Settings
from .population import normalized_population_key, parse_population, population_json_lines
from .sync_index import index_key, read_index

log = logging.getLogger(__name__)

STATE_PREFIX = catalog.CATALOG_PREFIX + "state/"
HEADER_BYTES = 64 * 1024  # a BLS header row is under 1 KiB; a file without a line end in this span is no table
DDL_TIMEOUT_SECONDS = 120.0
# Athena User Guide, "Service Quotas": 20 active DDL queries per account and Region by default; a survey's views are
# started that many at a time (a BLS survey has up to about 80 files, each with its view).
MAX_ACTIVE_DDL = 20
# A survey is not started with less time left than this (the function's timeout is 900 s): the largest surveys'
# rebuild (their header reads, tables and view DDL) takes well under it.
SURVEY_TIME_RESERVE = 180.0
NAMED_QUERY_PREFIX = "bls-mirror "  # the report queries' names in the workgroup: "bls-mirror best_year_by_series"


class CatalogUpdateError(RuntimeError):
    """Athena refused or failed a view's DDL, or a named query could not be kept."""


def definitions_digest() -> str:
    """Changes whenever the catalog's definitions do: the SQL files and the module that renders them."""
    digest = hashlib.sha256()
    for path in sorted([*catalog.SQL_DIR.glob("*.sql"), catalog.SQL_DIR.parent / "catalog.py"]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def update_catalog(settings: Settings, s3: Any, glue: Any, athena: Any,
                   time_left: Callable[[], float] = lambda: float("inf"),
                   sleep: Callable[[float], None] = time.sleep) -> dict:
    """Bring the catalog up to date; returns counts, the surveys whose tables were (re)built, and how many surveys
    are left for another invocation: a survey is not started with less than SURVEY_TIME_RESERVE seconds left (at
    least one is always done, so each invocation makes progress; the state machine calls again while some remain)."""
    bucket, database = settings.bucket, settings.catalog_database
    digest = definitions_digest()
    in_glue = _glue_table_names(glue, database)
    summary: dict[str, Any] = {
        "population": _update_population(settings, s3, glue, digest, in_glue),
        "named_queries": _update_named_queries(settings, s3, athena, digest),
        "surveys": 0, "rebuilt": [], "tables_created": 0, "tables_updated": 0, "views": 0, "remaining": 0,
    }
    ddl = _AthenaDdl(athena, settings.query_workgroup, database, sleep)
    surveys = mirrored_surveys(s3, bucket, settings.mirror_prefix)
    for position, survey in enumerate(surveys):
        if summary["rebuilt"] and time_left() < SURVEY_TIME_RESERVE:
            summary["remaining"] = len(surveys) - position
            break
        summary["surveys"] += 1
        prefix = f"{settings.mirror_prefix}{survey}/"
        files = _survey_files(s3, bucket, prefix)
        record_key = f"{STATE_PREFIX}{survey}.json"
        record = _read_json(s3, bucket, record_key)
        wanted = {"files": files, "definitions": digest}
        if record and {k: record.get(k) for k in wanted} == wanted and set(record.get("tables", [])) <= in_glue:
            continue
        tables = catalog.survey_tables(survey, prefix, {name: _first_line(s3, bucket, prefix + name) for name in files})
        for key, body in catalog.manifests(tables, bucket).items():
            _put_if_changed(s3, bucket, key, body, "text/plain")
        outcome = catalog.apply_tables(glue, database, [catalog.glue_table_input(t, bucket) for t in tables])
        made = ddl.run_all(catalog.views(survey, tables))
        _write_json(s3, bucket, record_key, {**wanted, "tables": [t.name for t in tables], "views": made})
        summary["rebuilt"].append(survey)
        summary["tables_created"] += len(outcome["created"])
        summary["tables_updated"] += len(outcome["updated"])
        summary["views"] += len(made)
    return summary


def mirrored_surveys(s3: Any, bucket: str, mirror_root: str) -> list[str]:
    """The folders directly under the mirror's root (bls/pr/ -> pr), one delimited listing per 1,000."""
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=mirror_root, Delimiter="/"):
        found += [p["Prefix"][len(mirror_root):].rstrip("/") for p in page.get("CommonPrefixes", [])]
    return sorted(found)


def _survey_files(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    """A survey's mirrored files -> ETags: from its sync index (one request, whatever the file count), or, without
    a usable index, from a listing of the survey's folder."""
    stored = read_index(s3, bucket, index_key(INDEX_PREFIX, prefix), prefix)
    if stored.files:
        return {name: entry["etag"] for name, entry in stored.files.items()}
    files: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix):]
            if name and "/" not in name:
                files[name] = item["ETag"]
    return files


def _first_line(s3: Any, bucket: str, key: str) -> str:
    """The file's header row; "" (not a table) for a file whose first line is not tab-separated text."""
    body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")["Body"].read()
    line, newline, _ = body.partition(b"\n")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    if not newline or any(ord(c) < 32 and c not in "\t\r" for c in text):
        return ""
    return text


def _glue_table_names(glue: Any, database: str) -> set[str]:
    names: set[str] = set()
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        names.update(t["Name"] for t in page.get("TableList", []))
    return names


def _update_population(settings: Settings, s3: Any, glue: Any, digest: str, in_glue: set[str]) -> str:
    """The normalized copy of the population (JSON lines) and its table, when the population file changed."""
    bucket = settings.bucket
    # A listing, not a HEAD: without an unconditioned s3:ListBucket, S3 answers a HEAD of a missing key with 403,
    # which cannot be told from a denied read (local_runner/iam.py MISSING_KEY).
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=settings.population_key, MaxKeys=1).get("Contents", [])
    if not listed or listed[0]["Key"] != settings.population_key:
        return "no population file yet"
    record_key = f"{STATE_PREFIX}population.json"
    wanted = {"etag": listed[0]["ETag"], "definitions": digest}
    table = catalog.population_table(settings.population_key)
    if _read_json(s3, bucket, record_key) == wanted and table.name in in_glue:
        return "unchanged"
    raw = s3.get_object(Bucket=bucket, Key=settings.population_key, IfMatch=wanted["etag"])["Body"].read()
    _put_if_changed(s3, bucket, normalized_population_key(settings.population_key),
                    population_json_lines(parse_population(raw)), "application/x-ndjson")
    catalog.apply_tables(glue, settings.catalog_database, [catalog.glue_table_input(table, bucket)])
    _write_json(s3, bucket, record_key, wanted)
    return "rebuilt"


def _update_named_queries(settings: Settings, s3: Any, athena: Any, digest: str) -> str:
    """The three reports as named queries in the workgroup: created, or updated when their SQL changed."""
    record_key = f"{STATE_PREFIX}named-queries.json"
    queries = {NAMED_QUERY_PREFIX + name: sql for name, sql in catalog.report_queries(settings.data_file).items()}
    bucket = settings.bucket
    wanted = {"definitions": digest, "data_file": settings.data_file, "database": settings.catalog_database}
    if _read_json(s3, bucket, record_key) == wanted:
        return "unchanged"
    workgroup = settings.query_workgroup
    existing = {}
    for page in athena.get_paginator("list_named_queries").paginate(WorkGroup=workgroup):
        for query_id in page.get("NamedQueryIds", []):
            query = athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]
            existing[query["Name"]] = query
    for name, sql in queries.items():
        description = "Report of the BLS mirror (README, 'Query with SQL'); the SQL is bls_pipeline/sql/ in the code."
        found = existing.get(name)
        if found is None:
            athena.create_named_query(Name=name, Description=description, Database=settings.catalog_database,
                                      QueryString=sql, WorkGroup=workgroup)
        elif found["QueryString"] != sql or found.get("Database") != settings.catalog_database:
            athena.update_named_query(NamedQueryId=found["NamedQueryId"], Name=name, Description=description,
                                      QueryString=sql)
    _write_json(s3, bucket, record_key, wanted)
    return "updated"


class _AthenaDdl:
    def __init__(self, athena: Any, workgroup: str, database: str, sleep: Callable[[float], None]):
        self.athena, self.workgroup, self.database, self.sleep = athena, workgroup, database, sleep

    def run_all(self, views: list[tuple[str, str]]) -> list[str]:
        """CREATE OR REPLACE VIEW for each (name, SELECT), up to MAX_ACTIVE_DDL at once, a view only after the
        views it reads; returns the names made. One failed DDL fails the whole (the survey's record stays unwritten)."""
        pending, made = list(views), []
        while pending:
            waiting = {name for name, _ in pending}
            wave = [(n, q) for n, q in pending if not set(catalog.read_names(q)) & waiting][:MAX_ACTIVE_DDL]
            if not wave:
                raise CatalogUpdateError(f"views that read each other: {', '.join(sorted(waiting))}")
            started = {name: self._start(catalog.view_ddl(name, select)) for name, select in wave}
            for name, query_id in started.items():
                self._wait(name, query_id)
            made += list(started)
            pending = [(n, q) for n, q in pending if n not in started]
        return made

    def _start(self, statement: str) -> str:
        return self.athena.start_query_execution(
            QueryString=statement, WorkGroup=self.workgroup, QueryExecutionContext={"Database": self.database},
        )["QueryExecutionId"]

    def _wait(self, view: str, query_id: str) -> None:
        waited, pause = 0.0, 0.2
        while True:
            status = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
            if status["State"] == "SUCCEEDED":
                return
            if status["State"] in ("FAILED", "CANCELLED"):
                raise CatalogUpdateError(f"Athena {status['State'].lower()} CREATE OR REPLACE VIEW {view}: "
                                         f"{status.get('StateChangeReason', 'no reason given')}")
            if waited >= DDL_TIMEOUT_SECONDS:
                raise CatalogUpdateError(f"CREATE OR REPLACE VIEW {view} still {status['State']} after {waited:.0f} s")
            self.sleep(pause)
            waited, pause = waited + pause, min(pause * 2, 5.0)


def _read(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "AccessDenied"):
            return None  # AccessDenied: S3 answers 403 for a missing key to a role without s3:ListBucket
        raise


def _read_json(s3: Any, bucket: str, key: str) -> dict | None:
    body = _read(s3, bucket, key)
    try:
        return None if body is None else json.loads(body)
    except ValueError:
        log.warning("unreadable catalog record %s: rebuilding", key)
        return None


def _put_if_changed(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    """Write only what differs: a rebuild because Glue lost a table (or a local run's fresh catalog) rewrites
    nothing that is already right."""
    if _read(s3, bucket, key) != body:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def _write_json(s3: Any, bucket: str, key: str, value: dict) -> None:
    _put_if_changed(s3, bucket, key, json.dumps(value, sort_keys=True).encode(), "application/json")
