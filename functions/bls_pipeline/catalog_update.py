"""The catalog step: keeps the SQL catalog over the mirror current in Glue and Athena (catalog.py defines it).

For each survey mirrored under the mirror's root (one delimited listing finds them), the survey's tables, their
symlink manifests and their views are rebuilt when its files changed (their names or ETags, from its sync index: one
request whatever the file count), when the catalog's definitions changed (the SQL files, catalog.py,
catalog_labels.py), or when Glue lacks one of its tables; otherwise the survey costs the index read and one read of
its record (catalog/state/surveys/<survey>.json). The normalized population copy and its table follow the population
file's ETag; the named report queries follow their SQL. So the step is idempotent, a first mirror of a survey gets
its tables in the same execution, and a run that changed nothing changes nothing here.

The catalog follows the mirror: a rebuild drops (from Glue, with their manifests) the tables and views of the
survey's record that it no longer makes (a pruned file, a file that stopped being a table), and a survey whose
folder is gone loses all of its own. Tables no record names (an analyst's own) are left alone.

A file that cannot be a table is a warning (catalog.survey_catalog), never a failure. A survey whose update fails
(a view Athena refuses, an S3 or Glue error) is recorded and tried again next run, and the other surveys are still
cataloged; the state machine fails the execution at its end, naming each.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Callable

from botocore.exceptions import ClientError

from . import catalog
from .config import INDEX_PREFIX, RUNS_PREFIX, Settings
from .population import normalized_population_key, parse_population, population_json_lines
from .run_files import manifest_key
from .s3_objects import is_missing, read_json, write_if_changed, write_json, write_json_if_changed
from .sync_index import index_key, read_index

log = logging.getLogger(__name__)

STATE_PREFIX = catalog.CATALOG_PREFIX + "state/"
SURVEY_STATE_PREFIX = STATE_PREFIX + "surveys/"
# What a 403 means to the step's reads (s3_objects): missing. They only decide whether to write (a survey's record, a
# table's manifest or copy, the population copy, the run manifest's section), so a read the role is denied costs a
# rewrite (or, for a run manifest, no section), never a wrong catalog (template.yaml, the role's comments on the run
# manifest and the population copy). The role may list the bucket, so a missing key answers 404 to it anyway.
DENIED_IS_MISSING = True
HEADER_BYTES = 64 * 1024  # a BLS header row is under 1 KiB; a file without a line end in this span is no table
DDL_TIMEOUT_SECONDS = 120.0
# Athena User Guide, "Service Quotas": 20 active DDL queries per account and Region by default, running and queued
# alike, shared with every other user of the account. A survey's views are started a quarter of that at a time, and
# a TooManyRequestsException is waited out (QUOTA_RETRIES times, backing off from 0.5 s to 16 s).
MAX_ACTIVE_DDL = 20
DDL_AT_ONCE = 5
QUOTA_RETRIES = 8
# A survey is not started with less time left than this (the function's timeout is 900 s): the largest surveys'
# rebuild (their header reads, tables and view DDL) takes well under it.
SURVEY_TIME_RESERVE = 180.0
NAMED_QUERY_PREFIX = "bls-mirror "  # the report queries' names in the workgroup: "bls-mirror best_year_by_series"


class CatalogUpdateError(RuntimeError):
    """Athena refused or failed a view's DDL, or a named query could not be kept."""


# What one call's summary carries at most, so that the state stays small whatever the tree: the full lists are in the
# run manifest's "catalog" section.
FAILURES_SHOWN = 20
WARNINGS_SHOWN = 10
MESSAGE_CHARS = 300
CAUSE_CHARS = 4000  # Step Functions takes a Fail state's Cause up to 32,768 characters


def definitions_digest() -> str:
    """Changes whenever the catalog's definitions do: the SQL files and the modules that render them."""
    digest = hashlib.sha256()
    sources = [*catalog.SQL_DIR.glob("*.sql"), *(catalog.SQL_DIR.parent / f"{m}.py" for m in ("catalog", "catalog_labels"))]
    for path in sorted(sources):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def update_catalog(settings: Settings, s3: Any, glue: Any, athena: Any,
                   time_left: Callable[[], float] = lambda: float("inf"),
                   sleep: Callable[[float], None] = time.sleep, run_id: str | None = None,
                   previous: dict | None = None) -> dict:
    """Bring the catalog up to date; returns counts, the surveys whose tables were (re)built, and how many surveys
    are left for another invocation: a survey is not started with less than SURVEY_TIME_RESERVE seconds left (at
    least one is always done, so each invocation makes progress; the state machine calls again while some remain).

    previous: the summary of this execution's previous call (the state machine passes it back), whose surveys are
    not done again and whose failures and warnings are carried on. A survey whose update fails (a view Athena
    refuses, a Glue or S3 error) is recorded, its record is left unwritten so the next run tries it again, and the
    other surveys are still cataloged; the last call's summary names every failed survey (failure_error,
    failure_cause) and the state machine fails the execution with it after the reports. run_id: the execution,
    whose manifest (pipeline/runs/<run_id>/manifest.json) gets a "catalog" section when the call did anything."""
    bucket, database = settings.bucket, settings.catalog_database
    digest = definitions_digest()
    in_glue = _glue_table_names(glue, database)
    summary = _carried(previous)
    first_call = not summary["calls"]
    summary["calls"] += 1
    report = {"rebuilt": [], "dropped": [], "warnings": {}, "failed": []}
    if first_call:
        summary["population"] = _update_population(settings, s3, glue, digest, in_glue)
        summary["named_queries"] = _update_named_queries(settings, s3, athena, digest)
    ddl = _AthenaDdl(athena, settings.query_workgroup, database, sleep)
    surveys = mirrored_surveys(s3, bucket, settings.mirror_prefix)
    records = {survey: _read_json(s3, bucket, survey_record_key(survey)) for survey in _recorded_surveys(s3, bucket)}
    if first_call:
        for survey in sorted(set(records) - set(surveys)):  # its folder is gone: so are its tables
            dropped = _drop(glue, s3, bucket, database, _names_of(records[survey]), in_glue)
            _delete(s3, bucket, survey_record_key(survey))
            report["dropped"] += dropped
    done = set(summary.pop("done_surveys", []))
    todo = [s for s in surveys if s not in done]
    for position, survey in enumerate(todo):
        if (report["rebuilt"] or report["failed"]) and time_left() < SURVEY_TIME_RESERVE:
            summary["remaining"] = len(todo) - position
            break
        summary["surveys"] += 1
        done.add(survey)
        prefix = f"{settings.mirror_prefix}{survey}/"
        record = records.get(survey)
        try:
            files = _survey_files(s3, bucket, prefix)
            wanted = {"files": files, "definitions": digest, "reads": settings.catalog_table_reads}
            if record and {k: record.get(k) for k in wanted} == wanted and set(record.get("tables", [])) <= in_glue:
                continue
            taken = {catalog.POPULATION_TABLE: "the population table"}
            for other, other_record in records.items():
                if other != survey and other_record:
                    taken.update({n: f"survey {other}" for n in _names_of(other_record)})
            headers = {name: _first_line(s3, bucket, prefix + name) for name in files}
            found = catalog.survey_catalog(survey, prefix, headers, taken)
            reads = settings.catalog_table_reads
            if reads == "symlink":
                for key, body in catalog.manifests(found.tables, bucket).items():
                    _put_if_changed(s3, bucket, key, body, "text/plain")
            else:
                _copy_files(s3, bucket, found.tables, files, prefix)
            outcome = catalog.apply_tables(glue, database, [catalog.glue_table_input(t, bucket, reads)
                                                            for t in found.tables])
            made = ddl.run_all(catalog.views(survey, found.tables))
            kept = {t.name for t in found.tables} | set(made)
            dropped = _drop(glue, s3, bucket, database, [n for n in _names_of(record) if n not in kept], in_glue)
            new_record = {**wanted, "tables": [t.name for t in found.tables], "views": made, "warnings": found.warnings}
            records[survey] = new_record
            _write_json(s3, bucket, survey_record_key(survey), new_record)
        except Exception as error:  # noqa: BLE001 - one survey's failure must not stop the others
            log.exception("catalog of survey %s failed", survey)
            report["failed"].append({"survey": survey, "error": type(error).__name__,
                                     "message": _bounded(str(error), MESSAGE_CHARS)})
            continue
        report["rebuilt"].append(survey)
        report["dropped"] += dropped
        if found.warnings:
            report["warnings"][survey] = found.warnings
            log.warning("catalog of survey %s: %d file(s) or column(s) need attention: %s", survey,
                        len(found.warnings), "; ".join(found.warnings[:WARNINGS_SHOWN]))
        summary["tables_created"] += len(outcome["created"])
        summary["tables_updated"] += len(outcome["updated"])
        summary["views"] += len(made)
    summary["done_surveys"] = sorted(done) if summary["remaining"] else []
    if not summary["done_surveys"]:
        del summary["done_surveys"]
    _merge_report(summary, report)
    if run_id and (report["rebuilt"] or report["dropped"] or report["failed"]):
        _record_in_manifest(s3, bucket, run_id, report)
    return summary


# What a call carries on from the previous call of its execution; the counts of what was built are each call's own.
CARRIED = ("calls", "population", "named_queries", "warnings", "warning_samples", "failures", "failed", "done_surveys")


def _carried(previous: dict | None) -> dict:
    """A call's summary, carrying on the previous call's failures, warnings and the surveys it did."""
    summary: dict[str, Any] = {
        "calls": 0, "population": "", "named_queries": "", "surveys": 0, "rebuilt": [], "tables_created": 0,
        "tables_updated": 0, "views": 0, "dropped": 0, "warnings": 0, "warning_samples": [], "failures": 0,
        "failed": [], "remaining": 0,
    }
    for key in CARRIED:
        if key in (previous or {}):
            summary[key] = previous[key]
    return summary


def _merge_report(summary: dict, report: dict) -> None:
    summary["rebuilt"] = report["rebuilt"]
    summary["dropped"] += len(report["dropped"])
    lines = [f"{s}: {w}" for s, found in report["warnings"].items() for w in found]
    summary["warnings"] += len(lines)
    summary["warning_samples"] = (summary["warning_samples"] + [_bounded(w, MESSAGE_CHARS) for w in lines])[:WARNINGS_SHOWN]
    summary["failures"] += len(report["failed"])
    summary["failed"] = (summary["failed"] + report["failed"])[:FAILURES_SHOWN]
    if summary["failures"] and not summary["remaining"]:
        errors = {f["error"] for f in summary["failed"]}
        summary["failure_error"] = errors.pop() if len(errors) == 1 and summary["failures"] <= FAILURES_SHOWN \
            else "CatalogSurveysFailed"
        named = "; ".join(f"{f['survey']}: {f['error']}: {f['message']}" for f in summary["failed"])
        more = summary["failures"] - len(summary["failed"])
        summary["failure_cause"] = _bounded(
            f"the SQL catalog of {summary['failures']} survey(s) could not be updated (every other survey is "
            f"cataloged; each failed survey is tried again next run): {named}"
            + (f"; and {more} more (the run manifest's catalog section names them)" if more else ""), CAUSE_CHARS)


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def survey_record_key(survey: str) -> str:
    """What a survey's tables were built from (catalog/state/surveys/<survey>.json), apart from the catalog's own
    records (population.json, named-queries.json), so that no survey name can be one of those."""
    return f"{SURVEY_STATE_PREFIX}{survey}.json"


def _recorded_surveys(s3: Any, bucket: str) -> list[str]:
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=SURVEY_STATE_PREFIX):
        found += [o["Key"][len(SURVEY_STATE_PREFIX):].removesuffix(".json") for o in page.get("Contents", [])
                  if o["Key"].endswith(".json")]
    return found


def _names_of(record: dict | None) -> list[str]:
    if not isinstance(record, dict):
        return []
    return [n for n in [*record.get("tables", []), *record.get("views", [])] if isinstance(n, str)]


def _drop(glue: Any, s3: Any, bucket: str, database: str, names: list[str], in_glue: set[str]) -> list[str]:
    """Delete these tables and views from Glue (an Athena view is a Glue table too) and the tables' manifests:
    a file that was pruned, or stopped being a table, leaves no table behind. Returns the names dropped."""
    dropped = []
    for name in names:
        if name in in_glue:
            try:
                glue.delete_table(DatabaseName=database, Name=name)
            except glue.exceptions.EntityNotFoundException:
                pass
            in_glue.discard(name)
            dropped.append(name)
        _delete(s3, bucket, catalog.manifest_key(name))
        _delete(s3, bucket, catalog.copy_key(name))
    return dropped


def _copy_files(s3: Any, bucket: str, tables: list, files: dict[str, str], prefix: str) -> None:
    """CatalogTableReads=copy: each table's folder gets a copy of its file (a server-side copy, multipart above
    5 GiB through boto3's transfer manager), made again only when the file's ETag is not the copy's recorded one."""
    for table in tables:
        etag = files[table.file]
        key = catalog.copy_key(table.name)
        try:
            if s3.head_object(Bucket=bucket, Key=key)["Metadata"].get("source-etag") == etag:
                continue
        except ClientError as error:
            if not is_missing(error, denied_is_missing=DENIED_IS_MISSING):
                raise
        s3.copy({"Bucket": bucket, "Key": prefix + table.file}, bucket, key, ExtraArgs={
            "CopySourceIfMatch": etag, "MetadataDirective": "REPLACE", "Metadata": {"source-etag": etag},
            "ContentType": "text/tab-separated-values"})


def _delete(s3: Any, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if not is_missing(error, denied_is_missing=False):  # a denied delete is an error: the file would stay
            raise


def _record_in_manifest(s3: Any, bucket: str, run_id: str, report: dict) -> None:
    """Add this call's outcome to the run manifest's "catalog" section (a later call of the same execution adds to
    it). A run without a manifest (a hand-started catalog step) writes none."""
    key = manifest_key(RUNS_PREFIX, run_id)
    manifest = _read_json(s3, bucket, key)
    if not isinstance(manifest, dict):
        return
    section = manifest.setdefault("catalog", {"rebuilt": [], "dropped": [], "warnings": {}, "failed": []})
    section["rebuilt"] += report["rebuilt"]
    section["dropped"] += report["dropped"]
    section["warnings"].update(report["warnings"])
    section["failed"] += report["failed"]
    write_json(s3, bucket, key, manifest, indent=1)  # as RecordChanges wrote it


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
        elif found.get("Database") != settings.catalog_database:
            # UpdateNamedQuery takes no Database (Athena API Reference, UpdateNamedQuery): delete and create again.
            athena.delete_named_query(NamedQueryId=found["NamedQueryId"])
            athena.create_named_query(Name=name, Description=description, Database=settings.catalog_database,
                                      QueryString=sql, WorkGroup=workgroup)
        elif found["QueryString"] != sql:
            athena.update_named_query(NamedQueryId=found["NamedQueryId"], Name=name, Description=description,
                                      QueryString=sql)
    _write_json(s3, bucket, record_key, wanted)
    return "updated"


class _AthenaDdl:
    def __init__(self, athena: Any, workgroup: str, database: str, sleep: Callable[[float], None]):
        self.athena, self.workgroup, self.database, self.sleep = athena, workgroup, database, sleep

    def run_all(self, views: list[tuple[str, str]]) -> list[str]:
        """CREATE OR REPLACE VIEW for each (name, SELECT), DDL_AT_ONCE at a time, a view only after the views it
        reads; returns the names made. A view Athena refuses leaves the others (not those that read it) made, and
        then fails the whole with every refused view named (the survey's record stays unwritten)."""
        pending, made, failed = list(views), [], {}
        while pending:
            waiting = {name for name, _ in pending}
            blocked = [(n, q) for n, q in pending if set(catalog.read_names(q)) & set(failed)]
            for name, _ in blocked:
                failed[name] = "it reads a view that could not be made"
            pending = [(n, q) for n, q in pending if n not in failed]
            waiting -= set(failed)
            if not pending:
                break
            wave = [(n, q) for n, q in pending if not set(catalog.read_names(q)) & waiting][:DDL_AT_ONCE]
            if not wave:
                raise CatalogUpdateError(f"views that read each other: {', '.join(sorted(waiting))}")
            started = {name: self._start(catalog.view_ddl(name, select)) for name, select in wave}
            for name, query_id in started.items():
                reason = self._wait(name, query_id)
                if reason is None:
                    made.append(name)
                else:
                    failed[name] = reason
            pending = [(n, q) for n, q in pending if n not in started]
        if failed:
            raise CatalogUpdateError(f"{len(failed)} view(s) could not be made: " + "; ".join(
                f"{name}: {reason}" for name, reason in sorted(failed.items())))
        return made

    def _start(self, statement: str) -> str:
        """StartQueryExecution, waiting out TooManyRequestsException: Athena's active-DDL quota counts running and
        queued queries of the whole account and Region (Athena User Guide, "Service Quotas"), so other users' DDL
        can fill it."""
        pause = 0.5
        for attempt in range(QUOTA_RETRIES + 1):
            try:
                return self.athena.start_query_execution(
                    QueryString=statement, WorkGroup=self.workgroup, QueryExecutionContext={"Database": self.database},
                )["QueryExecutionId"]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TooManyRequestsException" or attempt == QUOTA_RETRIES:
                    raise
                self.sleep(pause)
                pause = min(pause * 2, 16.0)
        raise AssertionError("unreachable")

    def _wait(self, view: str, query_id: str) -> str | None:
        """None when the view was made, else why not."""
        waited, pause = 0.0, 0.2
        while True:
            status = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
            if status["State"] == "SUCCEEDED":
                return None
            if status["State"] in ("FAILED", "CANCELLED"):
                return (f"Athena {status['State'].lower()} CREATE OR REPLACE VIEW: "
                        f"{_bounded(status.get('StateChangeReason') or 'no reason given', MESSAGE_CHARS)}")
            if waited >= DDL_TIMEOUT_SECONDS:
                raise CatalogUpdateError(f"CREATE OR REPLACE VIEW {view} still {status['State']} after {waited:.0f} s")
            self.sleep(pause)
            waited, pause = waited + pause, min(pause * 2, 5.0)


def _read_json(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        return read_json(s3, bucket, key, denied_is_missing=DENIED_IS_MISSING)
    except ValueError:
        log.warning("unreadable catalog record %s: rebuilding", key)
        return None


def _put_if_changed(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    """Write only what differs: a rebuild because Glue lost a table (or a local run's fresh catalog) rewrites
    nothing that is already right."""
    write_if_changed(s3, bucket, key, body, content_type, denied_is_missing=DENIED_IS_MISSING)


def _write_json(s3: Any, bucket: str, key: str, value: dict) -> None:
    write_json_if_changed(s3, bucket, key, value, denied_is_missing=DENIED_IS_MISSING, sort_keys=True)
