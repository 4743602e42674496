"""The run's own files, pipeline/runs/<execution>/ (a lifecycle rule expires them after 14 days):

* copy-items.json: the Map's items, every survey's copies in one array (the CopyFiles Map's ItemReader reads it),
  copy-results/: where the Map's ResultWriter puts their results, surveys.json: each survey's listing outcome
  (its plan's location, or why it failed). RunPlan locates them.
* <survey>/: one survey's plan (PlanLocation): copy-items.json, listing.json, delete.json (the planned deletions),
  refused-names.json, mirror-before.json, mirror-state.json (for the sync index, sync_index.py) and pruned.json
  (what PruneMirror deleted and spared).
* manifest.json: the run manifest RecordChanges writes (changes.py) and the catalog step adds its section to.

ListSource writes the plan (sync.list_source); PruneMirror and RecordChanges read it. Every file of the plan must
exist when it is read (s3_objects.get_json), except pruned.json, absent when PruneMirror failed before its survey.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .bls_listing import SourceFile
from .mirror import PruneResult, SyncPlan
from .s3_objects import get_json, read_json, write_json

MANIFEST_FILE = "manifest.json"


def run_folder(runs_prefix: str, run_id: str) -> str:
    """pipeline/runs/<execution>/."""
    return f"{runs_prefix}{run_id}/"


def manifest_key(runs_prefix: str, run_id: str) -> str:
    """pipeline/runs/<execution>/manifest.json."""
    return run_folder(runs_prefix, run_id) + MANIFEST_FILE


@dataclass(frozen=True)
class RunPlan:
    """Where one execution's plan is: the Map's combined copy items (each names its survey), where its ResultWriter
    puts the results, and surveys.json (each survey's listing outcome: its plan's location, or why it failed)."""

    bucket: str
    items_key: str
    results_prefix: str
    surveys_key: str

    def to_dict(self) -> dict:
        return {"bucket": self.bucket, "items_key": self.items_key, "results_prefix": self.results_prefix,
                "surveys_key": self.surveys_key}

    @classmethod
    def from_dict(cls, data: dict) -> "RunPlan":
        return cls(data["bucket"], data["items_key"], data["results_prefix"], data["surveys_key"])

    @classmethod
    def in_folder(cls, bucket: str, folder: str) -> "RunPlan":
        return cls(bucket, folder + "copy-items.json", folder + "copy-results", folder + "surveys.json")

    @property
    def folder(self) -> str:
        """pipeline/runs/<execution>/: the run manifest is written there too (changes.py)."""
        return self.items_key.rsplit("/", 1)[0] + "/"

    @property
    def manifest_key(self) -> str:
        return self.folder + MANIFEST_FILE


def store_run_plan(s3: Any, plan: RunPlan, items: list[dict], surveys: dict) -> None:
    """The Map's combined copy items and surveys.json."""
    write_json(s3, plan.bucket, plan.items_key, items)
    write_json(s3, plan.bucket, plan.surveys_key, surveys)


def load_surveys(s3: Any, plan: RunPlan) -> dict:
    """surveys.json: {"source_url", "mirror_root", "surveys_requested", "surveys": [each survey's entry]}."""
    return get_json(s3, plan.bucket, plan.surveys_key)


@dataclass(frozen=True)
class PlanLocation:
    bucket: str
    items_key: str  # JSON array of copy items (SourceFile dicts plus the mirror's ETag): the Map's ItemReader reads it
    listing_key: str  # JSON array of every listed name: prune keeps exactly these
    delete_key: str | None = None  # JSON object name -> ETag of the objects to delete, as the plan saw them
    results_prefix: str | None = None  # where the Map's ResultWriter puts the copy results (beyond 256 KiB of state)
    mirrored_before: int | None = None  # objects in the mirror when the run listed it: the prune guard's base
    refused_key: str | None = None  # JSON object listed name -> why it cannot be a mirror file name
    before_key: str | None = None  # JSON object name -> size, sha256, stamp of every mirror object before the run
    pruned_key: str | None = None  # where PruneMirror records what it deleted and spared (PruneResult)
    # The mirror's sync index (sync_index.py) as the run read it: its ETag ("" when there was none; None: the plan
    # has no mirror-state.json, e.g. a hand-written event), and whether it described every mirror object exactly.
    index_etag: str | None = None
    index_current: bool = False

    def to_dict(self) -> dict:
        found = {"bucket": self.bucket, "items_key": self.items_key, "listing_key": self.listing_key}
        for name in ("delete_key", "results_prefix", "mirrored_before", "refused_key", "before_key", "pruned_key",
                     "index_etag"):
            if getattr(self, name) is not None:
                found[name] = getattr(self, name)
        if self.index_current:
            found["index_current"] = True
        return found

    @property
    def state_key(self) -> str | None:
        """JSON object name -> sync index entry of every mirror object before the run (None: not recorded)."""
        return None if self.index_etag is None else self.folder + "mirror-state.json"

    @property
    def folder(self) -> str:
        """The run's folder, pipeline/runs/<execution>/: its manifest.json is written there too (changes.py)."""
        return self.items_key.rsplit("/", 1)[0] + "/"


def copy_item(file: SourceFile, mirror_etag: str | None) -> dict:
    """One Map item: the file, and the ETag of the mirror object it replaces (None: there is none)."""
    return {**file.to_dict(), "mirror_etag": mirror_etag}


def write_condition(item: dict) -> dict[str, str]:
    """S3 conditional-write parameters for a copy item: replace only the version the plan saw, or create only if
    still absent. An item without the field (e.g. a hand-written event) is written unconditionally."""
    if "mirror_etag" not in item:
        return {}
    return {"IfMatch": item["mirror_etag"]} if item["mirror_etag"] else {"IfNoneMatch": "*"}


def store_plan(
    s3: Any, bucket: str, runs_prefix: str, run_id: str, plan: SyncPlan, refused: dict[str, str] | None = None,
    index: dict | None = None, folder: str = "",
) -> PlanLocation:
    """The run's plan under runs_prefix/run_id/[folder]: the Map's items, the listing, the planned deletions, the
    listed names that cannot be mirrored (with why), and the mirror's state for the sync index. index: {"etag",
    "current"} of the mirror's sync index as read."""
    base = run_folder(runs_prefix, run_id) + folder
    index = index or {}
    location = PlanLocation(bucket, base + "copy-items.json", base + "listing.json", base + "delete.json",
                            base + "copy-results", len(plan.etags), base + "refused-names.json",
                            base + "mirror-before.json", base + "pruned.json",
                            (index.get("etag") or "") if index else None, bool(index.get("current")))
    write_json(s3, bucket, location.refused_key, refused or {})
    write_json(s3, bucket, location.before_key, plan.before)
    if location.state_key:
        write_json(s3, bucket, location.state_key, plan.state)
    write_json(s3, bucket, location.items_key, [copy_item(f, plan.etags.get(f.name)) for f in plan.to_copy])
    write_json(s3, bucket, location.listing_key, [f.name for f in plan.listing] + plan.kept)
    write_json(s3, bucket, location.delete_key, {name: plan.etags[name] for name in plan.to_delete})
    return location


def load_copy_items(s3: Any, bucket: str, key: str) -> list[SourceFile]:
    return [SourceFile.from_dict(d) for d in get_json(s3, bucket, key)]


def load_listed_names(s3: Any, plan: PlanLocation) -> list[str]:
    """listing.json: every listed name, in the listing's order (the kept, filtered-out names last)."""
    return list(get_json(s3, plan.bucket, plan.listing_key))


def load_planned_deletions(s3: Any, plan: PlanLocation) -> dict[str, str] | None:
    """delete.json: name -> ETag as the plan saw it; None when the plan has none (a hand-written event)."""
    return dict(get_json(s3, plan.bucket, plan.delete_key)) if plan.delete_key else None


def load_mirror_before(s3: Any, plan: PlanLocation) -> dict[str, dict]:
    """mirror-before.json: name -> size, sha256, stamp of every mirror object before the run ({}: not recorded)."""
    return dict(get_json(s3, plan.bucket, plan.before_key)) if plan.before_key else {}


def load_mirror_state(s3: Any, plan: PlanLocation) -> dict[str, dict]:
    """mirror-state.json: name -> sync index entry of every mirror object before the run (plan.state_key is set)."""
    return get_json(s3, plan.bucket, plan.state_key)


def store_pruned(s3: Any, plan: PlanLocation, pruned: PruneResult, failure: dict | None = None) -> None:
    """PruneMirror's outcome, whole (the state output names at most a few files), for the run manifest; failure:
    {"step", "error", "message"} when this survey's prune was refused (nothing of it was deleted)."""
    if plan.pruned_key:
        write_json(s3, plan.bucket, plan.pruned_key,
                   {"deleted": pruned.deleted, "spared": pruned.spared, **({"failure": failure} if failure else {})})


def load_pruned(s3: Any, plan: PlanLocation) -> dict | None:
    """pruned.json; None when there is none: PruneMirror failed before this survey (nothing of it was deleted), or
    the plan names none. RecordChanges may not list the bucket, so a missing one answers 403 (s3_objects)."""
    if not plan.pruned_key:
        return None
    return read_json(s3, plan.bucket, plan.pruned_key, denied_is_missing=True)


def load_map_results(s3: Any, bucket: str, manifest_key: str) -> list[dict]:
    """The child execution records a Distributed Map's ResultWriter stored: the manifest names one JSON file per
    status (SUCCEEDED, FAILED, PENDING), each an array of records with Status, Output (a JSON string) and, for a
    failed child, Error and Cause ("ResultWriter (Map)", Step Functions Developer Guide)."""
    manifest = get_json(s3, bucket, manifest_key)
    records: list[dict] = []
    for files in manifest.get("ResultFiles", {}).values():
        for file in files:
            records.extend(get_json(s3, manifest.get("DestinationBucket", bucket), file["Key"]))
    return records
