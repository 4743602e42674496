"""The sync index: one S3 object per mirror (survey) holding what the objects' metadata holds, so that a run that
changes nothing does not HEAD every mirrored object.

pipeline/index/<mirror prefix>index.json = {"index_version", "mirror", "written_by", "files": {name: {size, stamp,
sha256, etag, modified}}}. `etag` and `modified` (LastModified) are what a ListObjectsV2 of the mirror showed for the
object when the entry was made. The objects' own metadata stays the truth; the index is only a cache of it, and is
trusted for a key only while the key still has exactly that ETag, size and LastModified:

* ListSource lists the mirror prefix (it must anyway, to see what exists: one ListObjectsV2 request per 1,000 keys)
  and takes an object's stamp and sha256 from the index only when its listed ETag, size and LastModified are the
  index's; every other object (not in the index, rewritten, its metadata replaced out of band: S3 gives any write a
  new LastModified) is read with a HEAD, as without an index. A missing, unreadable or foreign index is no index.
  So an index can only save requests, never make a plan wrong: a stale or deleted index costs HEADs.
* PruneMirror, after the copies and the deletions, writes the new index from its own listing of the mirror: an
  entry is made only for an object whose listed ETag is the one this run wrote (the copy's output) or the one the
  run planned against (the object it read before): an object another execution wrote meanwhile gets no entry and
  is HEADed next time. The write is conditional on the index this run read (If-Match on its ETag, If-None-Match
  when there was none): an older run never overwrites a newer run's index. A run whose index would not change
  (a no-op over a current index) does not write it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .s3_objects import ChangedMeanwhile, read_json_object, replace_json

logger = logging.getLogger(__name__)

INDEX_VERSION = 1
_FIELDS = ("size", "stamp", "sha256", "etag", "modified")


def index_key(index_prefix: str, mirror_prefix: str) -> str:
    """pipeline/index/bls/pr/index.json for the mirror bls/pr/."""
    return f"{index_prefix}{mirror_prefix}index.json"


@dataclass(frozen=True)
class StoredIndex:
    files: dict[str, dict]  # name -> {size, stamp, sha256, etag, modified}
    etag: str | None  # the index object's ETag; None: there is no index


def read_index(s3: Any, bucket: str, key: str, mirror_prefix: str) -> StoredIndex:
    """The stored index, or an empty one (etag None) when there is none. An index that cannot be read as one (bad
    JSON, another version, another mirror's) is used as no index, but its ETag is kept so the next write replaces it."""
    # ListSource may not list the bucket (least privilege), so S3 answers a missing index with 403 (S3 API
    # Reference, GetObject, "Permissions"). Either way there is no index to use: every object is HEADed.
    stored = read_json_object(s3, bucket, key, denied_is_missing=True)
    if stored is None:
        return StoredIndex({}, None)
    etag = stored.etag
    try:
        data = stored.value()
        if data.get("index_version") != INDEX_VERSION or data.get("mirror") != mirror_prefix:
            raise ValueError(f"index of version {data.get('index_version')!r} for {data.get('mirror')!r}")
        files = {str(name): {f: entry[f] for f in _FIELDS} for name, entry in data["files"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("the sync index s3://%s/%s is not usable (%s); every mirror object is read instead", bucket, key, exc)
        return StoredIndex({}, etag)
    return StoredIndex(files, etag)


def entry_matches(entry: dict | None, size: int, etag: str, modified: str) -> bool:
    """Whether an index entry still describes the listed object (same ETag, size and LastModified)."""
    return entry is not None and (entry["size"], entry["etag"], entry["modified"]) == (size, etag, modified)


def write_index(s3: Any, bucket: str, key: str, mirror_prefix: str, files: dict[str, dict], previous_etag: str | None,
                run_id: str) -> bool:
    """Write the index, conditional on the one the run read; False when another execution wrote one meanwhile (its
    index stays: each entry of any index is checked against the objects before it is used)."""
    index = {"index_version": INDEX_VERSION, "mirror": mirror_prefix, "written_by": run_id,
             "files": dict(sorted(files.items()))}
    try:
        replace_json(s3, bucket, key, index, previous_etag)
    except ChangedMeanwhile:
        logger.warning("another execution wrote the sync index s3://%s/%s meanwhile; its index is kept", bucket, key)
        return False
    return True
