"""What the runner prints about a run's record of changes (RecordChanges): where its manifest and change-log entry
are on disk, and, for a dry run, what a real run would copy and delete."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO


def show_changes(result, objects: Path, out: TextIO) -> None:
    """objects: the state directory's copy of the bucket (s3://<bucket>/<key> is objects/<key>)."""
    recorded = next((c.result for c in result.invocations if c.function == "RecordChangesFunction" and not c.error_type),
                    None)
    if recorded is None:
        return
    totals = recorded["totals"]
    if recorded["dry_run"]:
        print(f"Dry run: a real run would add {totals['added']}, replace {totals['changed']} and delete "
              f"{totals['deleted']} file(s); nothing was copied or deleted", file=out)
        for line in recorded["files"]:
            print(f"  {line}", file=out)
    print(f"Manifest: {_on_disk(recorded['manifest'], objects)}", file=out)
    if recorded["change_log"]:
        print(f"Change log: {_on_disk(recorded['change_log'], objects)}", file=out)


def _on_disk(location: str, objects: Path) -> Path:
    return objects / location.removeprefix("s3://").split("/", 1)[1]
