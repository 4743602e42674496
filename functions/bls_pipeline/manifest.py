"""What one run did to the mirror, file by file: the run manifest, the change-log entry and the event detail.

Pure: built from the run's plan (the listing, the copy items, the mirror's metadata before the run), the copy
results and the prune outcome; changes.py reads those from S3 and writes what this module builds.

Each file of the listing or the mirror is one entry, with one outcome:
  added      copied, the mirror had no such file
  changed    copied over the file the mirror had
  deleted    the listing no longer has it, and the run deleted it
  unchanged  listed with the size and stamp the mirror recorded: not copied
  failed     the copy failed after its retries; the mirror keeps what it had ("error" says why)
  spared     left to another execution that changed it meanwhile (a copy superseded, or an unlisted file rewritten
             after the listing): the next run decides
"before" and "after" are {size, sha256, stamp} (sha256 and stamp as recorded in the object's metadata) or null when
there is no file. In a dry run nothing is copied or deleted: the outcomes are what a real run would do, "after" of a
copy has the listed size and stamp, and its sha256 is null (unknown until the file is read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .bls_listing import SourceFile

MANIFEST_VERSION = 2  # 2: one section per survey ("surveys"), the run's totals and verdict at the top
OUTCOMES = ("added", "changed", "deleted", "unchanged", "failed", "spared")
CHANGES = ("added", "changed", "deleted")  # a run with any of these appends a change-log entry and sends the event
EVENT_FILES_SHOWN = 100  # files named in the event's detail; EventBridge takes at most 256 KB per entry


@dataclass(frozen=True)
class RunFacts:
    """Who and where: the execution, the mirror's root and the source's tree."""

    execution: str  # the execution name (the run id)
    execution_arn: str
    bucket: str
    mirror_prefix: str  # the mirror's root (each survey under <root><survey>/)
    source_url: str  # the time.series tree
    started_at: str  # ISO 8601, the execution's start
    ended_at: str  # ISO 8601, when the manifest was made (the mirror's work was done)
    dry_run: bool = False
    source_requests: int | None = None  # requests to the source's host (request_rate.py), None: unknown
    surveys: str = ""  # the Surveys setting as given ("pr,ce", "*")


@dataclass(frozen=True)
class SurveyFacts:
    """One survey of the run: where it comes from, where it is mirrored, its filters."""

    survey: str
    source_url: str  # <tree><survey>/
    mirror: str  # s3://<bucket>/<root><survey>/
    filters: dict | None = None  # the survey's include/exclude globs (config.SurveyFilter.to_dict)


@dataclass(frozen=True)
class CopyOutcome:
    name: str
    sha256: str | None = None
    bytes: int | None = None
    superseded: bool = False
    error: str | None = None  # "<Error>: <message>" of a failed copy


@dataclass
class RunOutcome:
    """What the run's steps report: the plan's parts and what the copy and prune steps did."""

    listed: list[str]  # names in the listing (those the mirror may hold)
    before: dict[str, dict]  # name -> {size, sha256, stamp} of every mirror object before the run
    to_copy: list[SourceFile]
    planned_deletions: list[str]
    copies: dict[str, CopyOutcome] = field(default_factory=dict)  # empty in a dry run
    deleted: list[str] = field(default_factory=list)
    spared: list[str] = field(default_factory=list)


def build_survey(facts: SurveyFacts, outcome: RunOutcome | None, dry_run: bool = False,
                 failure: dict | None = None) -> dict:
    """One survey's section of the manifest: one entry per file (sorted by name) and its totals. outcome None: its
    listing failed, nothing of it was planned; failure: {"step", "error", "message"} of a survey that failed as a
    whole (its listing, or its prune: then its copies are still shown and nothing of it was deleted)."""
    entries = {}
    outcome = outcome or RunOutcome([], {}, [], [])
    for file in outcome.to_copy:
        entries[file.name] = _copy_entry(file, outcome.before.get(file.name), outcome.copies.get(file.name), dry_run)
    for name in outcome.listed:
        if name not in entries:
            entries[name] = _entry(name, "unchanged", outcome.before.get(name), outcome.before.get(name))
    deleted = outcome.planned_deletions if dry_run else outcome.deleted
    for name in deleted:
        entries[name] = _entry(name, "deleted", outcome.before.get(name), None)
    for name in [] if dry_run else outcome.spared:
        entries[name] = _entry(name, "spared", outcome.before.get(name), None,
                               reason="another execution rewrote it after this run listed the mirror; kept")
    files = [entries[name] for name in sorted(entries)]
    counts = {o: sum(1 for e in files if e["outcome"] == o) for o in OUTCOMES}
    return {
        "survey": facts.survey,
        "source_url": facts.source_url,
        "mirror": facts.mirror,
        "filters": facts.filters or {"include": [], "exclude": []},
        "failure": failure,
        "totals": {
            **counts,
            "listed": len(outcome.listed),
            "bytes_moved": sum(e["after"]["size"] for e in files if e["outcome"] in ("added", "changed")
                               and e["after"]["size"] is not None and not dry_run),
        },
        "files": files,
    }


def build_manifest(facts: RunFacts, surveys: list[dict]) -> dict:
    """The run manifest: who and when, the totals over every survey, and each survey's section (build_survey)."""
    totals = {key: sum(s["totals"][key] for s in surveys) for key in (*OUTCOMES, "listed", "bytes_moved")}
    return {
        "manifest_version": MANIFEST_VERSION,
        "execution": facts.execution,
        "execution_arn": facts.execution_arn,
        "dry_run": facts.dry_run,
        "source_url": facts.source_url,
        "mirror": f"s3://{facts.bucket}/{facts.mirror_prefix}",
        "surveys_requested": facts.surveys,
        "started_at": facts.started_at,
        "ended_at": facts.ended_at,
        "totals": {**totals, "source_requests": facts.source_requests, "surveys": len(surveys),
                   "failed_surveys": sum(1 for s in surveys if s["failure"] or s["totals"]["failed"])},
        "failure": None,
        "surveys": {s["survey"]: s for s in sorted(surveys, key=lambda s: s["survey"])},
    }


def changed(section: dict, dry_run: bool = False) -> bool:
    """Whether the run (a manifest) or one survey (its section) changed the mirror; a dry run changes nothing."""
    return not dry_run and not section.get("dry_run") and any(section["totals"][o] for o in CHANGES)


def change_log_entry(manifest: dict, manifest_location: str) -> dict:
    """The lasting record of a run that changed the mirror: the manifest without its unchanged files, and without
    the surveys in which nothing changed or failed."""
    return {**manifest, "manifest": manifest_location,
            "surveys": {name: {**s, "files": [e for e in s["files"] if e["outcome"] != "unchanged"]}
                        for name, s in manifest["surveys"].items()
                        if changed(s) or s["failure"] or s["totals"]["failed"]}}


def change_log_key(prefix: str, manifest: dict) -> str:
    """changes/YYYY/MM/DD/<execution>.json, dated by the execution's start (UTC), so a retry writes the same key."""
    day = manifest["started_at"][:10]  # YYYY-MM-DD
    return f"{prefix}{day.replace('-', '/')}/{manifest['execution']}.json"


def event_detail(manifest: dict, section: dict, manifest_location: str, change_log_location: str) -> dict:
    """The 'mirror changed' event of one survey that changed: its counts, the first EVENT_FILES_SHOWN changed files
    with their digests (the manifest and the change-log entry have them all), and where to read more."""
    changes = [e for e in section["files"] if e["outcome"] in CHANGES]
    return {
        "survey": section["survey"],
        "execution": manifest["execution"],
        "source_url": section["source_url"],
        "mirror": section["mirror"],
        "counts": {o: section["totals"][o] for o in OUTCOMES if o != "unchanged"},
        "files": [
            {"name": e["name"], "outcome": e["outcome"],
             "sha256_before": (e["before"] or {}).get("sha256"), "sha256_after": (e["after"] or {}).get("sha256")}
            for e in changes[:EVENT_FILES_SHOWN]
        ],
        "files_not_shown": max(0, len(changes) - EVENT_FILES_SHOWN),
        "manifest": manifest_location,
        "change_log": change_log_location,
    }


def copy_outcomes(outputs: Iterable[Any], failures: Iterable[tuple[str, str, str]]) -> dict[str, CopyOutcome]:
    """name -> outcome, from the CopyFile items' outputs ({name, sha256, bytes, superseded}) and the failures
    (name, error, message)."""
    found: dict[str, CopyOutcome] = {}
    for output in outputs:
        if isinstance(output, dict) and "sha256" in output and "name" in output:
            found[output["name"]] = CopyOutcome(output["name"], output["sha256"], output.get("bytes"),
                                                bool(output.get("superseded")))
    for name, error, message in failures:
        found[name] = CopyOutcome(name, error=f"{error}: {message}")
    return found


def _copy_entry(file: SourceFile, before: dict | None, copy: CopyOutcome | None, dry_run: bool) -> dict:
    outcome = "added" if before is None else "changed"
    if dry_run:
        return _entry(file.name, outcome, before, {"size": file.size, "sha256": None, "stamp": file.stamp})
    if copy is None:
        return _entry(file.name, "failed", before, before, error="no result was recorded for this copy")
    if copy.error is not None:
        return _entry(file.name, "failed", before, before, error=copy.error)
    if copy.superseded:
        return _entry(file.name, "spared", before, None,
                      reason="another execution changed it after this run listed the mirror; its version was kept")
    return _entry(file.name, outcome, before, {"size": copy.bytes, "sha256": copy.sha256, "stamp": file.stamp})


def _entry(name: str, outcome: str, before: dict | None, after: dict | None, **extra: str) -> dict:
    return {"name": name, "outcome": outcome, "before": before, "after": after, **extra}
