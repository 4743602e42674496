"""The three reports: the pipeline's implementation against a straightforward pandas one.

Each measurement is a fresh process (bench/reports_child.py), timed from outside, so interpreter start and
imports count for both. The child prints its peak RSS and a digest of its answers, which must agree.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import kill_with_parent

PROJECT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).with_name("reports_child.py")


@dataclass
class AnalyticsResult:
    label: str
    input_bytes: int
    pipeline_seconds: float
    pandas_seconds: float
    pipeline_peak_rss: int
    pandas_peak_rss: int
    answers_agree: bool
    repeat: int

    @property
    def ratio(self) -> float:
        return self.pipeline_seconds / self.pandas_seconds


def _run_child(kind: str, data: Path, population: Path, timeout: float) -> tuple[float, dict]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(CHILD), kind, str(data), str(population)],
                          capture_output=True, text=True, timeout=timeout, cwd=PROJECT,
                          preexec_fn=kill_with_parent)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{kind} analytics failed: {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def compare(label: str, data: Path, population: Path, repeat: int, timeout: float) -> AnalyticsResult:
    """Alternate the two implementations `repeat` times; median wall time, largest peak RSS."""
    times: dict[str, list[float]] = {"pipeline": [], "pandas": []}
    rss: dict[str, int] = {"pipeline": 0, "pandas": 0}
    digests: dict[str, str] = {}
    for _ in range(repeat):
        for kind in times:
            seconds, result = _run_child(kind, data, population, timeout)
            times[kind].append(seconds)
            rss[kind] = max(rss[kind], result["peak_rss"])
            digests[kind] = result["digest"]
    return AnalyticsResult(label, data.stat().st_size, statistics.median(times["pipeline"]),
                           statistics.median(times["pandas"]), rss["pipeline"], rss["pandas"],
                           digests["pipeline"] == digests["pandas"], repeat)


def scaled_copy(data: Path, factor: int, target: Path) -> Path:
    """`factor` copies of the data rows, each copy with its own series ids (more series, as bigger BLS
    directories have), under one header."""
    lines = data.read_bytes().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    with open(target, "wb") as out:
        out.write(header)
        for copy in range(factor):
            suffix = f"{copy:02d}".encode()
            for row in rows:
                series, tab, rest = row.partition(b"\t")
                out.write(series.rstrip() + suffix + tab + rest)
    return target
