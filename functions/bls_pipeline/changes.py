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

from . import run_files
from .config import EVENT_DETAIL_TYPE, EVENT_SOURCE, Settings
from .manifest import (RunFacts, RunOutcome, SurveyFacts, build_manifest, build_survey, change_log_entry,
                       change_log_key, changed, copy_outcomes, event_detail)
from .request_rate import RequestSlots, slot_key
from .run_files import PlanLocation, RunPlan
from .s3_objects import write_json
from .sync import SurveyFailure, copy_outputs, run_verdict

_NAMES_SHOWN = 20


class ChangeEventError(Exception):
    """EventBridge did not accept the 'mirror changed' event (retried by the state machine)."""


def record_changes(
    settings: Settings, s3: Any, events: Any, plan: RunPlan, copy_results: Any, execution: dict[str, str],
    failure: dict | None = None,
) -> dict:
    """Write the run's manifest (one section per survey) and, if the run changed the mirror, its change-log entry
    and one event per survey that changed; decide the execution's verdict.

    failure: {"Error", "Cause"} when PruneMirror as a whole failed after the copies; the manifest records it, and the
    execution fails after this step with that error.

    execution: {"name", "arn", "started_at"} of the Step Functions execution. Returns a small summary for the state
    output: where the manifest (and change-log entry) are, the totals, the first files that changed, and the
    verdict: failures (failed surveys and files; 0 when the run succeeded), failure_error and failure_cause."""
    run = run_files.load_surveys(s3, plan)
    facts = RunFacts(
        execution=execution["name"], execution_arn=execution["arn"], bucket=settings.bucket,
        mirror_prefix=settings.mirror_prefix, source_url=settings.source_url, started_at=execution["started_at"],
        ended_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"), dry_run=settings.dry_run,
        source_requests=RequestSlots(s3, settings.bucket, slot_key(settings.rate_prefix, settings.source_url),
                                     settings.source_requests_per_second).requests_of_run(execution["name"]),
        surveys=run.get("surveys_requested", settings.surveys),
    )
    outputs, copy_failures = ([], []) if settings.dry_run else copy_outputs(s3, copy_results)
    sections: list[dict] = []
    survey_failures: list[SurveyFailure] = []
    for entry in run["surveys"]:
        name = entry["survey"]
        view = settings.for_survey(name)
        survey = SurveyFacts(name, view.source_url, f"s3://{settings.bucket}/{view.mirror_prefix}", entry.get("filters"))
        if entry["plan"] is None:
            problem = entry["failure"]
            survey_failures.append(SurveyFailure(name, problem["step"], problem["error"], problem["message"]))
            sections.append(build_survey(survey, None, settings.dry_run, failure=problem))
            continue
        location = PlanLocation(**entry["plan"])
        outcome = RunOutcome(
            listed=run_files.load_listed_names(s3, location),
            before=run_files.load_mirror_before(s3, location),
            to_copy=run_files.load_copy_items(s3, plan.bucket, location.items_key),
            planned_deletions=sorted(run_files.load_planned_deletions(s3, location) or {}),
        )
        problem = None
        if not settings.dry_run:
            outcome.copies = copy_outcomes(
                [o for o in outputs if isinstance(o, dict) and o.get("survey") == name],
                [(f.name, f.error, f.message) for f in copy_failures if f.survey == name])
            # Absent when PruneMirror failed before this survey: then nothing of it was deleted.
            pruned = run_files.load_pruned(s3, location)
            outcome.deleted, outcome.spared = list((pruned or {}).get("deleted", [])), list((pruned or {}).get("spared", []))
            problem = (pruned or {}).get("failure")
            if problem:
                survey_failures.append(SurveyFailure(name, problem["step"], problem["error"], problem["message"]))
        sections.append(build_survey(survey, outcome, settings.dry_run, failure=problem))
    manifest = build_manifest(facts, sections)
    manifest_key = plan.manifest_key
    manifest_url = f"s3://{plan.bucket}/{manifest_key}"
    verdict = run_verdict(len(sections), survey_failures, copy_failures, manifest_url)
    if failure:
        manifest["failure"] = {"error": str(failure.get("Error")), "cause": _failure_message(failure.get("Cause"))}
    elif verdict:
        manifest["failure"] = {"error": verdict[0], "cause": verdict[1]}
    write_json(s3, plan.bucket, manifest_key, manifest, indent=1)
    summary: dict[str, Any] = {
        "manifest": manifest_url,
        "dry_run": settings.dry_run,
        "totals": manifest["totals"],
        "files": [f"{s['survey']}/{e['name']}: {e['outcome']}" for s in manifest["surveys"].values()
                  for e in s["files"] if e["outcome"] != "unchanged"][:_NAMES_SHOWN],
        "change_log": None,
        "events": 0,
        "failures": len({f.survey for f in survey_failures}) + len(copy_failures) if verdict else 0,
        "failure_error": verdict[0] if verdict else None,
        "failure_cause": verdict[1] if verdict else None,
    }
    if changed(manifest):
        log_key = change_log_key(settings.changes_prefix, manifest)
        write_json(s3, settings.bucket, log_key, change_log_entry(manifest, summary["manifest"]), indent=1)
        summary["change_log"] = f"s3://{settings.bucket}/{log_key}"
        summary["events"] = publish_changes(events, manifest, summary["manifest"], summary["change_log"])
    return summary


def _failure_message(cause: Any) -> str:
    """A Lambda error's cause is its JSON error payload: keep the message."""
    try:
        return str(json.loads(cause)["errorMessage"])[:4000]
    except (TypeError, ValueError, KeyError):
        return str(cause)[:4000]


# PutEvents takes at most 10 entries and 256 KB in all (EventBridge User Guide, "Amazon EventBridge quotas" and
# "Calculating PutEvents event entry size"); each detail names at most EVENT_FILES_SHOWN files.
_EVENTS_PER_CALL = 10
_BYTES_PER_CALL = 200_000


def publish_changes(events: Any, manifest: dict, manifest_location: str, change_log_location: str) -> int:
    """One 'mirror changed' event per survey that changed, on the default bus; returns how many were sent."""
    entries = [{
        "Source": EVENT_SOURCE,
        "DetailType": EVENT_DETAIL_TYPE,
        "Detail": json.dumps(event_detail(manifest, section, manifest_location, change_log_location),
                             separators=(",", ":")),
        "Resources": [manifest["execution_arn"]],
    } for section in manifest["surveys"].values() if changed(section)]
    batch: list[dict] = []
    for entry in entries + [None]:
        size = sum(len(e["Detail"]) + 200 for e in batch)
        if batch and (entry is None or len(batch) == _EVENTS_PER_CALL or size + len(entry["Detail"]) > _BYTES_PER_CALL):
            _put_events(events, batch)
            batch = []
        if entry is not None:
            batch.append(entry)
    return len(entries)


def _put_events(events: Any, entries: list[dict]) -> None:
    answer = events.put_events(Entries=entries)
    failed = [e for e in answer.get("Entries") or [] if "EventId" not in e]
    if answer.get("FailedEntryCount") or failed or len(answer.get("Entries") or []) != len(entries):
        first = failed[0] if failed else {}
        raise ChangeEventError(f"EventBridge did not accept {answer.get('FailedEntryCount') or len(failed)} 'mirror "
                               f"changed' event(s): {first.get('ErrorCode')}: {first.get('ErrorMessage')} (the manifest "
                               "and change-log entry are written; retried)")
