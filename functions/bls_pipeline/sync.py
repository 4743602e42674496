"""The three steps of one mirror run, free of Lambda and Step Functions event shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .bls_listing import name_problem, parse_listing, printable, require_files
from .config import Settings
from .mirror import (
    PlanLocation,
    load_copy_items,
    load_listed_names,
    load_map_results,
    load_json,
    load_planned_deletions,
    plan_sync,
    prune_mirror,
    read_mirror,
    store_plan,
    store_pruned,
)
from .request_rate import RequestSlots, slot_key
from .sync_index import index_key, read_index, write_index
from .source_http import Deadline, SourceClient

_NAMES_SHOWN = 20
# The CopyFailed state's cause is this text; Step Functions keeps at most 32,768 characters of a cause
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


def list_source(settings: Settings, s3: Any, source: SourceClient, run_id: str) -> dict:
    """Read the listing, compare it with the mirror, store the plan in S3; returns a summary with its location."""
    page = source.get_text(settings.source_url)
    listed = require_files(parse_listing(page, settings.source_url), page, settings.source_url)
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
    location = store_plan(s3, settings.bucket, settings.runs_prefix, run_id, plan, refused,
                          {"etag": index.etag, "current": current})
    return {
        "mirror_heads": headed,  # mirror objects read with a HEAD; the others came from the sync index
        "listed": len(plan.listing),
        "refused_names": [f"{printable(name)[:80]!r} {why}" for name, why in list(refused.items())[:_NAMES_SHOWN]],
        "to_copy": len(plan.to_copy),
        "unchanged": len(plan.unchanged),
        "to_delete": len(plan.to_delete),
        "to_copy_bytes": sum(f.size for f in plan.to_copy),
        "filtered_out": len(filtered_out),
        "plan": location.to_dict(),
        "dry_run": settings.dry_run,  # the state machine's DryRun choice: record the plan, copy and delete nothing
    }


@dataclass(frozen=True)
class CopyFailure:
    name: str
    error: str
    message: str


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
        records = load_map_results(s3, where["Bucket"], where["Key"])
        outputs: list[Any] = []
        failures: list[CopyFailure] = []
        for record in records:
            if record.get("Status") == "SUCCEEDED":
                outputs.append(json.loads(record.get("Output") or "null"))
            else:
                item = json.loads(record.get("Input") or "{}")
                name = (item.get("file") or {}).get("name", record.get("Name", "?"))
                failures.append(CopyFailure(name, record.get("Error") or record.get("Status", "FAILED"),
                                            error_message(record.get("Cause") or "")))
    else:
        outputs, failures = list(copy_results or []), []
    failures += [
        CopyFailure(r["failed"], r.get("error", ""), error_message(r.get("message", "")))
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


def finish_run(settings: Settings, s3: Any, plan: PlanLocation, copy_results: Any, run_id: str = "") -> dict:
    """Prune what the listing no longer has, rewrite the sync index, and sum up the copies."""
    outputs, failures = copy_outputs(s3, copy_results)
    keep = load_listed_names(s3, plan.bucket, plan.listing_key)
    planned = load_planned_deletions(s3, plan.bucket, plan.delete_key) if plan.delete_key else None
    pruned = prune_mirror(
        s3, settings.bucket, settings.mirror_prefix, keep, settings.max_prune_share, settings.force_prune, planned,
        plan.mirrored_before,
    )
    store_pruned(s3, plan, pruned)
    index_written = update_index(settings, s3, plan, pruned, outputs, run_id)
    failed_names = {f.name for f in failures}
    copied = [f for f in load_copy_items(s3, plan.bucket, plan.items_key) if f.name not in failed_names]
    return {
        "copied": len(copied),
        "copied_bytes": sum(f.size for f in copied),
        "deleted": len(pruned.deleted),
        "deleted_files": pruned.deleted[:_NAMES_SHOWN],
        "spared_files": pruned.spared[:_NAMES_SHOWN],
        "failed": len(failures),
        "failed_files": [f.name for f in failures[:_NAMES_SHOWN]],
        "failure_cause": failure_cause(failures),
        "blocked": any(f.error == "SourceBlocked" for f in failures),
        "index_written": index_written,
    }


def update_index(settings: Settings, s3: Any, plan: PlanLocation, pruned: Any, outputs: list[Any], run_id: str) -> bool:
    """Rewrite the mirror's sync index from PruneMirror's listing of the mirror (after the copies and deletions):
    an object gets an entry only if its listed ETag is the one this run wrote, or the one the run read before; any
    other object (written by another execution meanwhile) is left out, so the next run HEADs it. Not written when
    nothing changed (the stored index is still exact), nor without a plan that read the index."""
    if plan.state_key is None:
        return False
    items = {f.name: f for f in load_copy_items(s3, plan.bucket, plan.items_key)}
    state: dict[str, dict] = load_json(s3, plan.bucket, plan.state_key)
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


def failure_cause(failures: list[CopyFailure]) -> str:
    """The count and the first failed files with their errors, at most MAX_FAILURE_CAUSE characters; a block by
    the source (SourceBlocked) is named first, since it explains the others."""
    if not failures:
        return ""
    failures = sorted(failures, key=lambda f: (f.error != "SourceBlocked" or f.message.startswith("not asked")))
    head = f"{len(failures)} file(s) could not be copied after retries: "
    shown: list[str] = []
    length = len(head)
    for failure in failures[:_NAMES_SHOWN]:
        message = failure.message if len(failure.message) <= _MESSAGE_SHOWN else failure.message[:_MESSAGE_SHOWN] + "…"
        entry = f"{failure.name[:200]}: {failure.error[:100]}: {message}"
        if length + len(entry) + 2 > MAX_FAILURE_CAUSE - 100:
            break
        shown.append(entry)
        length += len(entry) + 2
    more = f"; and {len(failures) - len(shown)} more" if len(failures) > len(shown) else ""
    return head + "; ".join(shown) + more
