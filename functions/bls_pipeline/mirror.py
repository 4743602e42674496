"""The S3 mirror: what it holds, what a run must change, and removing what the source dropped.

Each mirrored object carries the listing stamp and size it was copied for in its user metadata; that metadata
is the whole sync state (no database).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

from .bls_listing import SourceFile

META_STAMP = "source-stamp"
META_SIZE = "source-size"
META_SHA256 = "sha256"
META_URL = "source-url"

_HEAD_THREADS = 16
_DELETE_BATCH = 1000


def object_metadata(file: SourceFile, size: int, sha256_hex: str) -> dict[str, str]:
    return {META_STAMP: file.stamp, META_SIZE: str(size), META_SHA256: sha256_hex, META_URL: file.url}


@dataclass(frozen=True)
class MirroredObject:
    name: str
    size: int
    stamp: str | None  # None: the object was not written by this pipeline, or lost its metadata


@dataclass
class SyncPlan:
    listing: list[SourceFile]
    to_copy: list[SourceFile] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    to_delete: list[str] = field(default_factory=list)


def plan_sync(listing: list[SourceFile], mirrored: dict[str, MirroredObject]) -> SyncPlan:
    """Copy what is new or whose size or stamp differs from what was recorded; delete what the listing lacks."""
    plan = SyncPlan(listing=listing)
    listed = set()
    for file in listing:
        listed.add(file.name)
        current = mirrored.get(file.name)
        if current is not None and current.size == file.size and current.stamp == file.stamp:
            plan.unchanged.append(file.name)
        else:
            plan.to_copy.append(file)
    plan.to_delete = sorted(name for name in mirrored if name not in listed)
    return plan


def list_mirror_keys(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """name (key without prefix) -> size of every object under the prefix."""
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):]] = obj["Size"]
    return found


def read_mirror(s3: Any, bucket: str, prefix: str, listing: Iterable[SourceFile]) -> dict[str, MirroredObject]:
    """The mirror's objects with their recorded stamps.

    Only objects whose size matches the listing need a HEAD to read their stamp: any other is copied anyway.
    """
    sizes = list_mirror_keys(s3, bucket, prefix)
    wanted = {f.name: f for f in listing}
    to_head = [name for name, size in sizes.items() if name in wanted and wanted[name].size == size]

    def head(name: str) -> tuple[str, str | None]:
        meta = s3.head_object(Bucket=bucket, Key=prefix + name).get("Metadata", {})
        return name, meta.get(META_STAMP)

    stamps: dict[str, str | None] = {}
    if to_head:
        with ThreadPoolExecutor(max_workers=min(_HEAD_THREADS, len(to_head))) as pool:
            stamps = dict(pool.map(head, to_head))
    return {name: MirroredObject(name, size, stamps.get(name)) for name, size in sizes.items()}


@dataclass(frozen=True)
class PlanLocation:
    bucket: str
    items_key: str  # JSON array of SourceFile dicts to copy: the Map's ItemReader reads it
    listing_key: str  # JSON array of every listed name: prune keeps exactly these

    def to_dict(self) -> dict[str, str]:
        return {"bucket": self.bucket, "items_key": self.items_key, "listing_key": self.listing_key}


def store_plan(s3: Any, bucket: str, runs_prefix: str, run_id: str, plan: SyncPlan) -> PlanLocation:
    base = f"{runs_prefix}{run_id}/"
    location = PlanLocation(bucket, base + "copy-items.json", base + "listing.json")
    _put_json(s3, bucket, location.items_key, [f.to_dict() for f in plan.to_copy])
    _put_json(s3, bucket, location.listing_key, [f.name for f in plan.listing])
    return location


def load_listed_names(s3: Any, bucket: str, key: str) -> set[str]:
    return set(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def load_copy_items(s3: Any, bucket: str, key: str) -> list[SourceFile]:
    return [SourceFile.from_dict(d) for d in json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())]


def _put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    body = json.dumps(value, separators=(",", ":")).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


class PruneGuardError(Exception):
    """A run would delete more of the mirror than it is allowed to."""


def prune_mirror(
    s3: Any, bucket: str, prefix: str, keep: set[str], max_share: float = 0.5, force: bool = False
) -> list[str]:
    """Delete the objects under the prefix whose names the listing no longer has; returns the deleted names.

    Refuses, before deleting anything, when that is more than max_share of the mirror (unless forced).
    """
    present = list_mirror_keys(s3, bucket, prefix)
    doomed = sorted(name for name in present if name not in keep)
    if doomed and not force and len(doomed) > max_share * len(present):
        raise PruneGuardError(
            f"pruning would delete {len(doomed)} of the {len(present)} mirrored files under {prefix} "
            f"({len(doomed) / len(present):.0%}, more than the {max_share:.0%} allowed), e.g. {', '.join(doomed[:5])}; "
            f"nothing was deleted. If the source really removed them, start an execution with input "
            f'{{"force_prune": true}}'
        )
    for start in range(0, len(doomed), _DELETE_BATCH):
        batch = doomed[start:start + _DELETE_BATCH]
        response = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": prefix + n} for n in batch], "Quiet": True}
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise MirrorWriteError(
                f"S3 refused to delete {len(errors)} object(s), first {first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message')}"
            )
    return doomed


class MirrorWriteError(Exception):
    """S3 did not accept a write or delete the mirror needed."""
