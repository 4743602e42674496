"""Persist the local engine's S3 bucket in a directory between runs.

Layout: <state>/s3/<key> holds each object's bytes (the mirror is at <state>/s3/bls/pr/...),
<state>/objects.json holds each key's metadata, content type and ETag, and <state>/glue-tables.json the SQL catalog's
Glue tables. Only objects written during the run are
saved again: a new ETag, or a key the functions wrote (the same bytes with new metadata: BLS re-dates files it did
not change, and the mirror then records the new source stamp). Files get the permissions the umask gives, as any
other file the user writes.

What no later run reads stays on disk and is not loaded: each run's plan and manifest (`pipeline/runs/<id>/`),
its reports folder (`reports/<id>/`; `reports/latest/` is loaded), the change log (`changes/`) and the Athena
queries' result files (`athena-results/`). Loading them would make every start slower with every run. Run folders
and query results are dropped after EXPIRING's days, as the bucket's lifecycle rules ExpireRunPlans and
ExpireQueryResults expire them in AWS.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Collection

INDEX = "objects.json"
CATALOG = "glue-tables.json"
# What of a GetTable answer CreateTable takes back (AWS Glue API, TableInput).
TABLE_INPUT_FIELDS = ("Name", "Description", "Owner", "Retention", "StorageDescriptor", "PartitionKeys",
                      "ViewOriginalText", "ViewExpandedText", "TableType", "Parameters")
OBJECTS = "s3"
RUN_FOLDERS = "pipeline/runs/"
RUN_FOLDER_DAYS = 14  # template.yaml: MirrorBucket's lifecycle rule ExpireRunPlans
QUERY_RESULTS = "athena-results/"  # template.yaml: QueryWorkGroup's result location
QUERY_RESULT_DAYS = 7  # template.yaml: MirrorBucket's lifecycle rule ExpireQueryResults
EXPIRING = {RUN_FOLDERS: RUN_FOLDER_DAYS, QUERY_RESULTS: QUERY_RESULT_DAYS}
DAY = 86400.0


def loaded(key: str) -> bool:
    """Whether a later run may read this key, so that it goes into the engine's bucket."""
    if key.startswith((RUN_FOLDERS, QUERY_RESULTS, "changes/")):
        return False
    return not key.startswith("reports/") or key.startswith("reports/latest/")


class StateDirError(ValueError):
    """The state directory cannot be used; nothing in it was changed."""


class StateDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.objects = self.root / OBJECTS
        self.index_path = self.root / INDEX
        self._file_mode = 0o666 & ~_umask()  # read once: os.umask can only be read by setting it, process-wide

    def read_index(self) -> dict[str, dict]:
        if not self.index_path.exists():
            return {}
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateDirError(
                f"{self.index_path} is not a readable state index ({exc}); it was left as it is. Move it aside (the "
                "next run then mirrors everything again) or point --state-dir elsewhere"
            ) from None
        if not isinstance(index, dict):
            raise StateDirError(f"{self.index_path} holds {type(index).__name__}, not a state index; it was left as it is")
        return index

    def load_into(self, s3: Any, bucket: str) -> int:
        """Put every recorded object a run may read into the (empty) bucket; returns how many were loaded."""
        index = {key: entry for key, entry in self.read_index().items() if loaded(key)}
        for key, entry in index.items():
            path = self._path(key)
            if not path.is_file():
                continue  # removed by hand: the next run copies it again
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=path.read_bytes(),
                Metadata=entry.get("metadata", {}),
                ContentType=entry.get("content_type", "application/octet-stream"),
            )
        return len(index)

    def save_from(
        self, s3: Any, bucket: str, written_keys: Collection[str] = (), now: float | None = None,
    ) -> dict[str, int]:
        """Make the directory hold what the bucket holds, plus what was not loaded and has not expired; returns
        counts of written and removed files.

        written_keys: keys written since load_into, whose metadata may have changed with the same ETag."""
        now = time.time() if now is None else now
        old = self.read_index()
        new: dict[str, dict] = {
            key: entry for key, entry in old.items()
            if not loaded(key) and not _expired(key, entry, now) and self._path(key).is_file()
        }
        written = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                key, etag = obj["Key"], obj["ETag"]
                same = key in old and old[key].get("etag") == etag and key not in written_keys
                if same and self._path(key).is_file():
                    new[key] = old[key]
                    continue
                got = s3.get_object(Bucket=bucket, Key=key)
                _atomic_write(self._path(key), got["Body"].read(), self._file_mode)
                new[key] = {"etag": etag, "metadata": got.get("Metadata", {}), "content_type": got.get("ContentType"),
                            "saved_at": round(now)}
                written += 1
        removed = 0
        for key in old.keys() - new.keys():
            path = self._path(key)
            if path.is_file():
                path.unlink()
                removed += 1
        if new != old:
            _atomic_write(self.index_path, json.dumps(new, indent=1, sort_keys=True).encode(), self._file_mode)
        return {"written": written, "removed": removed}

    def load_catalog_into(self, glue: Any) -> int:
        """Recreate the Glue tables a previous run made (the SQL catalog), so the catalog step sees them as in AWS,
        where they outlive the run; returns how many."""
        path = self.root / CATALOG
        if not path.is_file():
            return 0
        tables = json.loads(path.read_text(encoding="utf-8"))
        for database, inputs in tables.items():
            for table_input in inputs:
                glue.create_table(DatabaseName=database, TableInput=table_input)
        return sum(len(inputs) for inputs in tables.values())

    def save_catalog_from(self, glue: Any) -> None:
        """Record the Glue tables of every database (as TableInputs) in <state>/glue-tables.json."""
        tables: dict[str, list[dict]] = {}
        for database in glue.get_databases()["DatabaseList"]:
            for page in glue.get_paginator("get_tables").paginate(DatabaseName=database["Name"]):
                tables.setdefault(database["Name"], []).extend(
                    {k: v for k, v in t.items() if k in TABLE_INPUT_FIELDS} for t in page.get("TableList", []))
        document = json.dumps(tables, indent=1, sort_keys=True, default=str).encode()
        path = self.root / CATALOG
        if not path.is_file() or path.read_bytes() != document:
            _atomic_write(path, document, self._file_mode)

    def _path(self, key: str) -> Path:
        path = (self.objects / key).resolve()
        if not str(path).startswith(str(self.objects.resolve()) + os.sep):
            raise ValueError(f"object key {key!r} would land outside {self.objects}")
        return path


def _expired(key: str, entry: dict, now: float) -> bool:
    days = next((d for prefix, d in EXPIRING.items() if key.startswith(prefix)), None)
    return days is not None and now - float(entry.get("saved_at", now)) > days * DAY


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)  # mkstemp's 0600 is for secrets; these are ordinary files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
