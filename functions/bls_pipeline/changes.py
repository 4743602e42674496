"""Record what a run changed: the run manifest (every execution), the lasting change-log entry and the 'mirror
changed' EventBridge event (only runs that added, replaced or deleted a file). manifest.py builds them; this module
reads the run's plan and outcome files and writes them.

Where: the manifest next to the run's plan, pipeline/runs/<execution>/manifest.json (expires with the plan after 14
days: most runs change nothing, and their manifests only say so); the change-log entry under
changes/YYYY/MM/DD/<execution>.json, which no lifecycle rule expires; the event on the account's default bus.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .config import EVENT_DETAIL_TYPE, EVENT_SOURCE, Settings
from .manifest import RunFacts, RunOutcome, build_manifest, change_log_entry, change_log_key, changed, copy_outcomes, event_detail
from .mirror import PlanLocation, load_copy_items, load_json
from .request_rate import RequestSlots, slot_key
from .sync import copy_outputs

_NAMES_SHOWN = 20


class ChangeEventError(Exception):
    """EventBridge did not accept the 'mirror changed' event (retried by the state machine)."""


def record_changes(
    settings: Settings, s3: Any, events: Any, plan: PlanLocation, copy_results: Any, execution: dict[str, str],
    failure: dict | None = None,
) -> dict:
    """Write the run's manifest and, if the run changed the mirror, its change-log entry and event.

    failure: {"Error", "Cause"} when PruneMirror failed after the copies; the manifest records it (nothing was
    deleted), and the execution fails after this step.

    execution: {"name", "arn", "started_at"} of the Step Functions execution. Returns a small summary for the
    state output: where the manifest (and change-log entry) are, the totals and the first files that changed."""
    facts = RunFacts(
        execution=execution["name"], execution_arn=execution["arn"], bucket=settings.bucket,
        mirror_prefix=settings.mirror_prefix, source_url=settings.source_url, started_at=execution["started_at"],
        ended_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"), dry_run=settings.dry_run,
        source_requests=RequestSlots(s3, settings.bucket, slot_key(settings.rate_prefix, settings.source_url),
                                     settings.source_requests_per_second).requests_of_run(execution["name"]),
        filters=settings.survey_filter().to_dict(),
    )
    outcome = RunOutcome(
        listed=list(load_json(s3, plan.bucket, plan.listing_key)),
        before=dict(load_json(s3, plan.bucket, plan.before_key)) if plan.before_key else {},
        to_copy=load_copy_items(s3, plan.bucket, plan.items_key),
        planned_deletions=sorted(load_json(s3, plan.bucket, plan.delete_key)) if plan.delete_key else [],
    )
    if not settings.dry_run:
        outputs, failures = copy_outputs(s3, copy_results)
        outcome.copies = copy_outcomes(outputs, [(f.name, f.error, f.message) for f in failures])
        pruned = load_json(s3, plan.bucket, plan.pruned_key) if plan.pruned_key and not failure else {}
        outcome.deleted, outcome.spared = list(pruned.get("deleted", [])), list(pruned.get("spared", []))
    manifest = build_manifest(facts, outcome)
    if failure:
        manifest["failure"] = {"error": str(failure.get("Error")), "cause": _failure_message(failure.get("Cause"))}
    manifest_key = plan.folder + "manifest.json"
    _put_json(s3, plan.bucket, manifest_key, manifest)
    summary: dict[str, Any] = {
        "manifest": f"s3://{plan.bucket}/{manifest_key}",
        "dry_run": settings.dry_run,
        "totals": manifest["totals"],
        "files": [f"{e['name']}: {e['outcome']}" for e in manifest["files"] if e["outcome"] != "unchanged"][:_NAMES_SHOWN],
        "change_log": None,
        "event_id": None,
    }
    if changed(manifest):
        log_key = change_log_key(settings.changes_prefix, manifest)
        _put_json(s3, settings.bucket, log_key, change_log_entry(manifest, summary["manifest"]))
        summary["change_log"] = f"s3://{settings.bucket}/{log_key}"
        summary["event_id"] = publish_change(events, manifest, summary["manifest"], summary["change_log"])
    return summary


def _failure_message(cause: Any) -> str:
    """A Lambda error's cause is its JSON error payload: keep the message."""
    try:
        return str(json.loads(cause)["errorMessage"])[:4000]
    except (TypeError, ValueError, KeyError):
        return str(cause)[:4000]


def publish_change(events: Any, manifest: dict, manifest_location: str, change_log_location: str) -> str:
    """One 'mirror changed' event on the default bus; returns its id."""
    answer = events.put_events(Entries=[{
        "Source": EVENT_SOURCE,
        "DetailType": EVENT_DETAIL_TYPE,
        "Detail": json.dumps(event_detail(manifest, manifest_location, change_log_location), separators=(",", ":")),
        "Resources": [manifest["execution_arn"]],
    }])
    entry = (answer.get("Entries") or [{}])[0]
    if answer.get("FailedEntryCount") or "EventId" not in entry:
        raise ChangeEventError(f"EventBridge did not accept the 'mirror changed' event: {entry.get('ErrorCode')}: "
                               f"{entry.get('ErrorMessage')} (the manifest and change-log entry are written; retried)")
    return entry["EventId"]


def _put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(value, indent=1).encode(), ContentType="application/json")
