"""The S3 mirror: what it holds, what a run must change, and removing what the source dropped.

Each mirrored object carries the listing stamp and size it was copied for in its user metadata; that metadata
is the whole sync state (no database). The run's own files (its plan, what it pruned) are run_files.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

from urllib.parse import quote

from botocore.exceptions import ClientError

from .bls_listing import SourceFile
from .s3_objects import CHANGED_MEANWHILE

META_STAMP = "source-stamp"
META_SIZE = "source-size"
META_SHA256 = "sha256"
META_URL = "source-url"

_HEAD_THREADS = 16
_DELETE_BATCH = 1000


def object_metadata(file: SourceFile, size: int, sha256_hex: str) -> dict[str, str]:
    """S3 user metadata is ASCII: a URL with other characters (a non-ASCII file name) is stored percent-encoded."""
    return {META_STAMP: file.stamp, META_SIZE: str(size), META_SHA256: sha256_hex,
            META_URL: quote(file.url, safe=":/?#[]@!$&'()*+,;=%~")}


@dataclass(frozen=True)
class MirroredObject:
    name: str
    size: int
    stamp: str | None  # None: the object was not written by this pipeline, or lost its metadata
    etag: str = ""
    sha256: str | None = None  # as recorded when it was copied
    modified: str = ""  # LastModified as ListObjectsV2 showed it (the sync index's check, sync_index.py)

    def before(self) -> dict:
        """What the run's manifest calls this object's state before the run (manifest.py)."""
        return {"size": self.size, "sha256": self.sha256, "stamp": self.stamp}


@dataclass
class SyncPlan:
    listing: list[SourceFile]
    to_copy: list[SourceFile] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    to_delete: list[str] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)  # name -> ETag of every mirror object the plan saw
    before: dict[str, dict] = field(default_factory=dict)  # name -> size, sha256, stamp of every mirror object
    state: dict[str, dict] = field(default_factory=dict)  # name -> the sync index entry of every mirror object
    kept: list[str] = field(default_factory=list)  # mirrored, listed but filtered out: neither copied nor deleted


def index_entry(obj: MirroredObject) -> dict:
    """What the sync index records of a mirror object (sync_index.py)."""
    return {"size": obj.size, "stamp": obj.stamp, "sha256": obj.sha256, "etag": obj.etag, "modified": obj.modified}


def plan_sync(listing: list[SourceFile], mirrored: dict[str, MirroredObject], keep: set[str] | None = None) -> SyncPlan:
    """Copy what is new or whose size or stamp differs from what was recorded; delete what the listing lacks, except
    the names in keep (listed, but filtered out: kept as they are, and listed as kept for PruneMirror)."""
    keep = {name for name in keep or () if name in mirrored}
    plan = SyncPlan(listing=listing, etags={name: obj.etag for name, obj in mirrored.items()},
                    before={name: obj.before() for name, obj in mirrored.items()},
                    state={name: index_entry(obj) for name, obj in mirrored.items()})
    listed = set()
    for file in listing:
        listed.add(file.name)
        current = mirrored.get(file.name)
        if current is not None and current.size == file.size and current.stamp == file.stamp:
            plan.unchanged.append(file.name)
        else:
            plan.to_copy.append(file)
    # Largest first: the Map starts items in this order, so the longest copy is never left to start last.
    plan.to_copy.sort(key=lambda f: f.size, reverse=True)
    plan.to_delete = sorted(name for name in mirrored if name not in listed and name not in keep)
    plan.kept = sorted(keep)
    return plan


@dataclass(frozen=True)
class ListedObject:
    size: int
    etag: str
    modified: str = ""  # LastModified, ISO 8601


def list_mirror_keys(s3: Any, bucket: str, prefix: str) -> dict[str, ListedObject]:
    """name (key without prefix) -> size and ETag of every object under the prefix."""
    found: dict[str, ListedObject] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            modified = obj.get("LastModified")
            found[obj["Key"][len(prefix):]] = ListedObject(obj["Size"], obj.get("ETag", ""),
                                                          modified.isoformat() if modified is not None else "")
    return found


def read_mirror(
    s3: Any, bucket: str, prefix: str, listing: Iterable[SourceFile], index: dict[str, dict] | None = None,
) -> tuple[dict[str, MirroredObject], int]:
    """The mirror's objects with their recorded stamps and digests, and how many had to be HEADed.

    The listing of the prefix says what exists. An object's recorded stamp and sha256 come from the sync index when
    its entry still has the object's listed ETag, size and LastModified (sync_index.py), otherwise from one HEAD:
    the stamp decides whether a file of the listed size changed, and the recorded stamp and sha256 of a file that is
    replaced or deleted are the run manifest's "before" (manifest.py). An object that changes between the listing
    and the HEAD is read as the HEAD saw it, with the listing's ETag: the copy's or delete's condition on that ETag
    then spares it, as before.
    """
    from .sync_index import entry_matches

    present = list_mirror_keys(s3, bucket, prefix)
    index = index or {}
    known = {name: index[name] for name, obj in present.items()
             if entry_matches(index.get(name), obj.size, obj.etag, obj.modified)}
    unknown = [name for name in present if name not in known]

    def head(name: str) -> tuple[str, dict]:
        return name, s3.head_object(Bucket=bucket, Key=prefix + name).get("Metadata", {})

    recorded: dict[str, dict] = {name: {META_STAMP: e["stamp"], META_SHA256: e["sha256"]} for name, e in known.items()}
    if unknown:
        with ThreadPoolExecutor(max_workers=min(_HEAD_THREADS, len(unknown))) as pool:
            recorded.update(pool.map(head, unknown))
    mirrored = {
        name: MirroredObject(name, obj.size, recorded[name].get(META_STAMP), obj.etag, recorded[name].get(META_SHA256),
                             obj.modified)
        for name, obj in present.items()
    }
    return mirrored, len(unknown)


class PruneGuardError(Exception):
    """A run would delete more of the mirror than it is allowed to."""


class MirrorWriteError(Exception):
    """S3 did not accept a write or delete the mirror needed."""


@dataclass(frozen=True)
class PruneResult:
    deleted: list[str]
    spared: list[str]  # unlisted, but written after the run listed the mirror: the next run decides
    remaining: dict[str, ListedObject] = field(default_factory=dict)  # the mirror after the deletions, as listed


def prune_mirror(
    s3: Any,
    bucket: str,
    prefix: str,
    keep: set[str],
    max_share: float = 0.5,
    force: bool = False,
    planned: dict[str, str] | None = None,
    mirrored_before: int | None = None,
) -> PruneResult:
    """Delete the objects under the prefix whose names the listing no longer has.

    planned (name -> ETag when the run listed the mirror) narrows that to objects nobody rewrote since: each delete
    is conditional on that ETag, so an object another execution wrote or replaced meanwhile, even between this
    listing and the delete, is spared by S3 itself. Refuses, before deleting anything, when the deletion is more
    than max_share of the mirror as it was before this run (mirrored_before, when the plan recorded it): files this
    run added do not dilute the share, so a listing that swaps every file for new ones cannot empty the mirror.
    """
    present = list_mirror_keys(s3, bucket, prefix)
    unlisted = sorted(name for name in present if name not in keep)
    spared = [] if planned is None else [n for n in unlisted if planned.get(n) != present[n].etag]
    doomed = sorted(set(unlisted) - set(spared))
    base = len(present) if mirrored_before is None else mirrored_before
    if doomed and not force and len(doomed) > max_share * base:
        raise PruneGuardError(
            f"pruning would delete {len(doomed)} of the {base} files the mirror under {prefix} held before this run "
            f"({len(doomed) / max(base, 1):.0%}, more than the {max_share:.0%} allowed), e.g. {', '.join(doomed[:5])}; "
            f"nothing was deleted. If the source really removed them, start an execution with input "
            f'{{"force_prune": true}}'
        )
    deleted: list[str] = []
    for start in range(0, len(doomed), _DELETE_BATCH):
        batch = doomed[start:start + _DELETE_BATCH]
        # With the plan's ETag per key S3 deletes an object only if it is still that version: a write by an
        # overlapping execution between the listing above and this request is not lost.
        objects = [{"Key": prefix + n, **({"ETag": planned[n]} if planned else {})} for n in batch]
        try:
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise MirrorWriteError(
                f"S3 refused to delete {len(batch)} file(s) the listing no longer has, e.g. "
                f"s3://{bucket}/{prefix}{batch[0]}: {error.get('Code', 'error')}: {error.get('Message', exc)}. "
                "They stay in the mirror; check the function's permission to delete there, then rerun."
            ) from exc
        errors = response.get("Errors", [])
        # A key's answer in CHANGED_MEANWHILE: it is no longer the version the plan saw (another execution replaced
        # or removed it meanwhile), so S3 spared it.
        changed = {e["Key"][len(prefix):] for e in errors if e.get("Code") in CHANGED_MEANWHILE}
        refused = [e for e in errors if e.get("Code") not in CHANGED_MEANWHILE]
        refused_keys = {e.get("Key") for e in refused}
        spared.extend(sorted(changed))
        deleted.extend(n for n in batch if n not in changed and prefix + n not in refused_keys)
        if refused:
            first = refused[0]
            raise MirrorWriteError(
                f"S3 refused to delete {len(refused)} of the {len(doomed)} file(s) the listing no longer has, first "
                f"s3://{bucket}/{first.get('Key')}: {first.get('Code')}: {first.get('Message')}. Those stay in the "
                "mirror, the others in the same request were deleted; check the function's permission to delete "
                "there, then rerun."
            )
    gone = set(deleted)
    return PruneResult(deleted=deleted, spared=sorted(spared),
                       remaining={name: obj for name, obj in present.items() if name not in gone})
