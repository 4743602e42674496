"""The three steps of one mirror run, free of Lambda and Step Functions event shapes."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from .bls_listing import ListingError, SourceFile, name_problem, parse_directories, parse_listing, printable, require_files
from .config import ConfigError, Settings, survey_name_ok
from .config import RETRY_BACKOFF_RATE, RETRY_INTERVAL_SECONDS, RETRY_MAX_ATTEMPTS, RETRY_MAX_DELAY_SECONDS
from . import run_files
from .mirror import MirrorWriteError, PruneGuardError, PruneResult, plan_sync, prune_mirror, read_mirror
from .run_files import PlanLocation, RunPlan
from .request_rate import RequestSlots, slot_key
from .sync_index import index_key, read_index, write_index
from .source_http import Deadline, SourceAddressError, SourceBlocked, SourceClient, SourceError, TransientSourceError

logger = logging.getLogger(__name__)

_NAMES_SHOWN = 20
# The failed execution's cause is this text (run_verdict); Step Functions keeps at most 32,768 characters of a cause
# (API Reference, ExecutionFailedEventDetails). Room is left for the count and the "and N more" tail.
MAX_FAILURE_CAUSE = 32_000
_MESSAGE_SHOWN = 1000


def source_client(
    settings: Settings, s3: Any, run_id: str | None, remaining_seconds: float | None = None, population: bool = False,
) -> SourceClient:
    """The HTTP client for the source (or, with population=True, the population API), paced at that host's rate
    together with every other function of every run (request_rate.py); remaining_seconds: the step's time left,
    which bounds every read."""
    deadline = None if remaining_seconds is None else Deadline.before_timeout(remaining_seconds)
    url = settings.population_url if population else settings.source_url
    rate = settings.population_requests_per_second if population else settings.source_requests_per_second
    slots = RequestSlots(s3, settings.bucket, slot_key(settings.rate_prefix, url), rate, run_id)
    return SourceClient(
        settings.contact_email, settings.http_connect_timeout, settings.http_read_timeout,
        deadline=deadline, retry_after_limit=settings.retry_after_limit, slots=slots,
        allow_private=settings.allow_private_sources,
    )


@dataclass(frozen=True)
class ListingRetry:
    """How ListSource retries a survey's listing that failed transiently (5xx, 429, a timeout): the state machine's
    retry settings (RetryMaxAttempts retries after the first attempt, exponential backoff from RetryIntervalSeconds
    with full jitter, at most RetryMaxDelaySeconds apart). Every attempt takes a request slot of the run's shared
    rate, like any other request. Without settings from the event, the deployed ones (config.RETRY_*)."""

    max_attempts: int = RETRY_MAX_ATTEMPTS
    interval: float = float(RETRY_INTERVAL_SECONDS)
    max_delay: float = float(RETRY_MAX_DELAY_SECONDS)
    backoff: float = RETRY_BACKOFF_RATE

    @classmethod
    def from_dict(cls, data: dict | None) -> "ListingRetry":
        data = data or {}
        return cls(int(data.get("max_attempts", cls.max_attempts)), float(data.get("interval_seconds", cls.interval)),
                   float(data.get("max_delay_seconds", cls.max_delay)))


def run_surveys(settings: Settings, source: SourceClient) -> list[str]:
    """The surveys this run mirrors: the listed names, or with "*" every directory the tree's listing shows (one
    request; a transient failure fails the step, which the state machine retries)."""
    if not settings.all_surveys:
        return settings.survey_list()
    page = source.get_text(settings.source_url)
    names = parse_directories(page, settings.source_url)
    if not names:
        if parse_listing(page, settings.source_url):
            raise ConfigError(
                f"the listing at {settings.source_url} shows files but no directories: it looks like one survey's "
                "directory, not the time.series tree. The source URL is the tree's root (e.g. "
                "https://download.bls.gov/pub/time.series/), and Surveys chooses the directories"
            )
        require_files([], page, settings.source_url)
    usable = [name for name in names if survey_name_ok(name)]
    if len(usable) < len(names):
        logger.warning("tree directories skipped (not survey names): %s",
                       [printable(n)[:80] for n in names if n not in usable][:_NAMES_SHOWN])
    return usable


def read_listing(source: SourceClient, url: str, retry: ListingRetry, sleep: Callable[[float], None] = time.sleep) -> str:
    """The listing page, asked again after a transient failure as `retry` says, within the step's time."""
    failures = 0
    while True:
        try:
            return source.get_text(url)
        except TransientSourceError as exc:
            failures += 1
            if failures > retry.max_attempts:
                raise
            delay = random.uniform(0, min(retry.max_delay, retry.interval * retry.backoff ** (failures - 1)))
            delay = max(delay, exc.retry_after or 0.0)
            remaining = source.deadline.remaining()
            if remaining is not None and delay > remaining - 5:
                raise
            logger.info("listing %s failed (%s); asking again in %.1f s", url, exc, delay)
            sleep(delay)


def list_source(settings: Settings, s3: Any, source: SourceClient, run_id: str,
                retry: ListingRetry | None = None) -> dict:
    """List each survey, compare it with its mirror, store its plan; then the run's combined copy items and
    surveys.json. Of several surveys (or '*'), one whose listing fails (after retries), or has no file rows, is
    recorded as failed and the others go on; a block (403) or a refused address stops the run here, and so does any
    listing failure of a run of one survey. Returns totals and the plan's location."""
    retry = retry or ListingRetry()
    names = run_surveys(settings, source)
    folder = run_files.run_folder(settings.runs_prefix, run_id)
    entries: list[dict] = []
    items: list[dict] = []
    totals = {"mirror_heads": 0, "listed": 0, "to_copy": 0, "unchanged": 0, "to_delete": 0, "to_copy_bytes": 0,
              "filtered_out": 0}
    refused_shown: list[str] = []
    # One survey alone (the default, pr) has no others to go on with: its listing's failure fails this step, which
    # the state machine retries when it is transient, and nothing else runs (as before there were surveys).
    alone = len(names) == 1 and not settings.all_surveys
    for name in names:
        view = settings.for_survey(name)
        entry = {"survey": name, "source_url": view.source_url, "mirror_prefix": view.mirror_prefix,
                 "filters": view.survey_filter().to_dict(), "plan": None, "failure": None}
        entries.append(entry)
        try:
            page = source.get_text(view.source_url) if alone else read_listing(source, view.source_url, retry)
            listed = require_files(parse_listing(page, view.source_url), page, view.source_url)
        except (SourceBlocked, SourceAddressError):
            raise  # the whole run: asking again deepens a block; an address refused is refused for every survey
        except (ListingError, SourceError) as exc:
            if alone:
                raise
            entry["failure"] = {"step": "ListSource", "error": type(exc).__name__, "message": str(exc)}
            logger.warning("survey %s not listed: %s: %s", name, type(exc).__name__, exc)
            continue
        summary, plan, location = plan_survey(view, s3, listed, run_id)
        entry["plan"] = location.to_dict()
        for key in totals:
            totals[key] += summary[key]
        refused_shown += [f"{name}: {r}" for r in summary["refused_names"]][:_NAMES_SHOWN - len(refused_shown)]
        items += [{**run_files.copy_item(f, plan.etags.get(f.name)), "survey": name} for f in plan.to_copy]
    # Largest first over every survey: the Map starts items in this order, so the longest copy never starts last.
    items.sort(key=lambda item: item["size"], reverse=True)
    run_plan = RunPlan.in_folder(settings.bucket, folder)
    run_files.store_run_plan(s3, run_plan, items,
                             {"source_url": settings.source_url, "mirror_root": settings.mirror_prefix,
                              "surveys_requested": settings.surveys, "surveys": entries})
    return {
        "surveys": len(names),
        "failed_surveys": sum(1 for e in entries if e["failure"]),
        **totals,
        "refused_names": refused_shown,
        "plan": run_plan.to_dict(),
        "dry_run": settings.dry_run,  # the state machine's DryRun choice: record the plan, copy and delete nothing
    }


def plan_survey(settings: Settings, s3: Any, listed: list[SourceFile], run_id: str) -> tuple[dict, Any, PlanLocation]:
    """One survey (settings: its view): its listing against its mirror, the plan stored under the run's folder
    <survey>/. Returns the survey's counts, the plan and its location."""
    refused = {f.name: why for f in listed if (why := name_problem(f.name))}
    selected = settings.survey_filter()
    listing = [f for f in listed if f.name not in refused and selected.selects(f.name)]
    filtered_out = [f.name for f in listed if f.name not in refused and not selected.selects(f.name)]
    key = index_key(settings.index_prefix, settings.mirror_prefix)
    index = read_index(s3, settings.bucket, key, settings.mirror_prefix)
    mirrored, headed = read_mirror(s3, settings.bucket, settings.mirror_prefix, listing, index.files)
    # A filtered-out file is neither copied nor deleted: a mirrored copy of it stays (as rclone's --exclude leaves it).
    plan = plan_sync(listing, mirrored, keep=set(filtered_out))
    current = index.etag is not None and headed == 0 and set(index.files) == set(mirrored)
    location = run_files.store_plan(s3, settings.bucket, settings.runs_prefix, run_id, plan, refused,
                                    {"etag": index.etag, "current": current}, folder=f"{settings.survey}/")
    summary = {
        "mirror_heads": headed,  # mirror objects read with a HEAD; the others came from the sync index
        "listed": len(plan.listing),
        "refused_names": [f"{printable(name)[:80]!r} {why}" for name, why in list(refused.items())[:_NAMES_SHOWN]],
        "to_copy": len(plan.to_copy),
        "unchanged": len(plan.unchanged),
        "to_delete": len(plan.to_delete),
        "to_copy_bytes": sum(f.size for f in plan.to_copy),
        "filtered_out": len(filtered_out),
    }
    return summary, plan, location


@dataclass(frozen=True)
class CopyFailure:
    name: str
    error: str
    message: str
    survey: str = ""


def copy_failures(s3: Any, copy_results: Any) -> list[CopyFailure]:
    """The failed copies of the CopyFiles Map (see copy_outputs)."""
    return copy_outputs(s3, copy_results)[1]


def copy_outputs(s3: Any, copy_results: Any) -> tuple[list[Any], list[CopyFailure]]:
    """The outputs of the CopyFiles Map's items, and its failed copies. Its ResultWriter stores the item outputs in S3 and the state holds
    only their location ({"ResultWriterDetails": {"Bucket", "Key"}}), so any number of failures fits in a state; a
    hand-written event may give the outputs inline as a list. A good copy outputs {name, sha256, bytes, superseded}
    (changes.py reads those), a failed one
    {"failed", "error", "message"}; a child execution that failed outright is reported with its Error and Cause."""
    if isinstance(copy_results, dict) and "ResultWriterDetails" in copy_results:
        where = copy_results["ResultWriterDetails"]
        records = run_files.load_map_results(s3, where["Bucket"], where["Key"])
        outputs: list[Any] = []
        failures: list[CopyFailure] = []
        for record in records:
            if record.get("Status") == "SUCCEEDED":
                outputs.append(json.loads(record.get("Output") or "null"))
            else:
                item = json.loads(record.get("Input") or "{}")
                name = (item.get("file") or {}).get("name", record.get("Name", "?"))
                failures.append(CopyFailure(name, record.get("Error") or record.get("Status", "FAILED"),
                                            error_message(record.get("Cause") or ""),
                                            (item.get("file") or {}).get("survey", "")))
    else:
        outputs, failures = list(copy_results or []), []
    failures += [
        CopyFailure(r["failed"], r.get("error", ""), error_message(r.get("message", "")), r.get("survey") or "")
        for r in outputs if isinstance(r, dict) and "failed" in r
    ]
    return outputs, failures


def error_message(cause: object) -> str:
    """A raw Lambda error cause is JSON with errorMessage; other causes are kept as they are."""
    if isinstance(cause, str) and cause.startswith("{"):
        try:
            return str(json.loads(cause).get("errorMessage", cause))
        except (ValueError, AttributeError):
            pass
    return str(cause)


def finish_run(settings: Settings, s3: Any, plan: RunPlan, copy_results: Any, run_id: str = "") -> dict:
    """For each listed survey: prune what its listing no longer has (its own prune guard), rewrite its sync index.
    A survey whose prune fails (the guard, S3 refusing a delete) is recorded in its pruned.json and the others go
    on. Returns the run's totals; names are <survey>/<file> (the key under the mirror root), the first few only."""
    outputs, failures = copy_outputs(s3, copy_results)
    run = run_files.load_surveys(s3, plan)
    found = {"copied": 0, "copied_bytes": 0, "deleted": 0, "failed": len(failures), "indexes_written": 0}
    deleted_files: list[str] = []
    spared_files: list[str] = []
    failed_surveys = 0
    for entry in run["surveys"]:
        name = entry["survey"]
        if entry["plan"] is None:
            failed_surveys += 1  # its listing failed: nothing of it was planned, copied or deleted
            continue
        view = settings.for_survey(name)
        location = PlanLocation(**entry["plan"])
        mine = [o for o in outputs if isinstance(o, dict) and o.get("survey") == name]
        failed_names = {f.name for f in failures if f.survey == name}
        copied = [f for f in run_files.load_copy_items(s3, plan.bucket, location.items_key)
                  if f.name not in failed_names]
        found["copied"] += len(copied)
        found["copied_bytes"] += sum(f.size for f in copied)
        if failed_names:
            failed_surveys += 1
        try:
            pruned, index_written = finish_survey(view, s3, location, mine, run_id)
        except (PruneGuardError, MirrorWriteError) as exc:
            logger.warning("survey %s not pruned: %s: %s", name, type(exc).__name__, exc)
            run_files.store_pruned(s3, location, PruneResult([], []),
                                   failure={"step": "PruneMirror", "error": type(exc).__name__, "message": str(exc)})
            failed_surveys += not failed_names
            continue
        found["deleted"] += len(pruned.deleted)
        found["indexes_written"] += index_written
        deleted_files += [f"{name}/{n}" for n in pruned.deleted[:_NAMES_SHOWN - len(deleted_files)]]
        spared_files += [f"{name}/{n}" for n in pruned.spared[:_NAMES_SHOWN - len(spared_files)]]
    return {
        "surveys": len(run["surveys"]),
        "failed_surveys": failed_surveys,
        "copied": found["copied"],
        "copied_bytes": found["copied_bytes"],
        "deleted": found["deleted"],
        "deleted_files": deleted_files,
        "spared_files": spared_files,
        "failed": found["failed"],
        "failed_files": [f"{f.survey}/{f.name}" if f.survey else f.name for f in failures[:_NAMES_SHOWN]],
        "blocked": any(f.error == "SourceBlocked" for f in failures),
        "indexes_written": found["indexes_written"],
    }


def finish_survey(settings: Settings, s3: Any, plan: PlanLocation, outputs: list[Any], run_id: str) -> tuple[Any, bool]:
    """One survey (settings: its view): prune, record what was pruned, rewrite the sync index."""
    keep = set(run_files.load_listed_names(s3, plan))
    planned = run_files.load_planned_deletions(s3, plan)
    pruned = prune_mirror(
        s3, settings.bucket, settings.mirror_prefix, keep, settings.max_prune_share, settings.force_prune, planned,
        plan.mirrored_before,
    )
    run_files.store_pruned(s3, plan, pruned)
    return pruned, update_index(settings, s3, plan, pruned, outputs, run_id)


def update_index(settings: Settings, s3: Any, plan: PlanLocation, pruned: Any, outputs: list[Any], run_id: str) -> bool:
    """Rewrite the mirror's sync index from PruneMirror's listing of the mirror (after the copies and deletions):
    an object gets an entry only if its listed ETag is the one this run wrote, or the one the run read before; any
    other object (written by another execution meanwhile) is left out, so the next run HEADs it. Not written when
    nothing changed (the stored index is still exact), nor without a plan that read the index."""
    if plan.state_key is None:
        return False
    items = {f.name: f for f in run_files.load_copy_items(s3, plan.bucket, plan.items_key)}
    state = run_files.load_mirror_state(s3, plan)
    written = {o["name"]: o for o in outputs if isinstance(o, dict) and o.get("etag") and o.get("name") in items}
    files: dict[str, dict] = {}
    for name, obj in pruned.remaining.items():
        copy = written.get(name)
        if copy is not None and copy["etag"] == obj.etag:
            files[name] = {"size": obj.size, "stamp": items[name].stamp, "sha256": copy["sha256"], "etag": obj.etag,
                           "modified": obj.modified}
        elif name in state and state[name]["etag"] == obj.etag and state[name]["size"] == obj.size:
            files[name] = {**state[name], "modified": obj.modified}
    if plan.index_current and files == state:
        return False
    key = index_key(settings.index_prefix, settings.mirror_prefix)
    return write_index(s3, settings.bucket, key, settings.mirror_prefix, files, plan.index_etag or None, run_id)


@dataclass(frozen=True)
class SurveyFailure:
    """A survey that failed as a whole: its listing (ListSource) or its prune (PruneMirror)."""

    survey: str
    step: str
    error: str
    message: str


def run_verdict(surveys: int, survey_failures: list[SurveyFailure], copy_failures: list[CopyFailure],
                manifest: str) -> tuple[str, str] | None:
    """The execution's error and cause when any survey or file failed (None when none did): SourceBlocked when the
    source blocked a copy; CopyFailed when only copies failed; the error of the failed surveys when they all failed
    alike (e.g. PruneGuardError) and no copy did; SurveysFailed otherwise. The cause names each failed survey and
    file with its error, the first _NAMES_SHOWN of them, then "and K more, see <manifest>", at most
    MAX_FAILURE_CAUSE characters however many failed."""
    if not survey_failures and not copy_failures:
        return None
    kinds = {f.error for f in survey_failures}
    if any(f.error == "SourceBlocked" for f in copy_failures):
        error = "SourceBlocked"
    elif not survey_failures:
        error = "CopyFailed"
    elif not copy_failures and len(kinds) == 1:
        error = next(iter(kinds))
    else:
        error = "SurveysFailed"
    failed = {f.survey for f in survey_failures} | {f.survey for f in copy_failures}
    # A block by the source explains the other failures: named first.
    copies = sorted(copy_failures, key=lambda f: (f.error != "SourceBlocked" or f.message.startswith("not asked")))
    by_survey: dict[str, list[CopyFailure]] = {}
    for failure in copies:
        by_survey.setdefault(failure.survey, []).append(failure)
    # (text, text when it is the first of its survey's failed files) in the order they are named
    surveys_part = [(f"{f.survey}: {f.error[:100]}: {_shorter(f.message)}", None)
                    for f in sorted(survey_failures, key=lambda f: f.survey)]
    files_part = []
    for survey, files in by_survey.items():
        for n, failure in enumerate(files):
            text = f"{failure.name[:200]}: {failure.error[:100]}: {_shorter(failure.message)}"
            label = f"{survey}: " if survey else ""
            files_part.append((text if n else f"{label}{len(files)} file(s) could not be copied after retries: {text}",
                               None))
    entries = files_part + surveys_part if error == "SourceBlocked" else surveys_part + files_part
    head = f"{len(failed)} of {surveys} survey(s) failed"
    if copy_failures:
        head += f", {len(copy_failures)} file(s) could not be copied after retries"
    shown: list[str] = []
    length = len(head) + 2
    for text, _ in entries:
        if len(shown) >= _NAMES_SHOWN or length + len(text) + 2 > MAX_FAILURE_CAUSE - len(manifest) - 100:
            break
        shown.append(text)
        length += len(text) + 2
    left = len(entries) - len(shown)
    tail = f"; and {left} more, see {manifest}" if left else f"; see {manifest}"
    return error, head + ": " + "; ".join(shown) + tail


def _shorter(message: str) -> str:
    return message if len(message) <= _MESSAGE_SHOWN else message[:_MESSAGE_SHOWN] + "…"
