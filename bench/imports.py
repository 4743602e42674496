"""Cold import time of each Lambda handler module: `python -X importtime -c "import <module>"`, a fresh process
per measurement, PYTHONPATH=functions/ as in the Lambda package."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .processes import kill_with_parent

PROJECT = Path(__file__).resolve().parent.parent
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


@dataclass
class ImportTime:
    module: str
    median_ms: float
    min_ms: float
    runs: int
    # The heaviest imports of the module's own level (what it imports directly), median ms.
    heaviest: list[tuple[str, float]] = field(default_factory=list)
    # Median ms when the SDK floor (SDK_MODULES) is already imported: the handler's own code and other imports.
    own_ms: float | None = None


def handler_modules() -> list[str]:
    from local_runner.template_model import Template

    return sorted({spec.handler.rpartition(".")[0] for spec in Template.load().functions()})


def _parse(stderr: str) -> list[tuple[int, str, int]]:
    """(depth, module, cumulative µs) per line of -X importtime output."""
    rows = []
    for match in _LINE.finditer(stderr):
        rows.append((len(match[3]) // 2, match[4], int(match[2])))
    return rows


def measure_module(module: str, runs: int, preload: tuple[str, ...] = ()) -> ImportTime:
    """preload: modules imported first, in the same process, so that the time measured is what `module` adds."""
    totals: list[float] = []
    children: dict[str, list[float]] = defaultdict(list)
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "functions")}
    code = "".join(f"import {name}; " for name in preload) + f"import {module}"
    for run in range(runs + 1):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                              text=True, env=env, timeout=120, cwd=PROJECT, preexec_fn=kill_with_parent)
        if done.returncode != 0:
            raise RuntimeError(f"importing {module} failed: {done.stderr[-1000:]}")
        if run == 0:
            continue  # writes the .pyc files, as a deployed package has them
        rows = _parse(done.stderr)
        top = next(r for r in rows if r[1] == module and r[0] == 0)
        totals.append(top[2] / 1000)
        # Everything imported at depth 1 between the previous top-level line and this one belongs to the module.
        end = rows.index(top)
        start = max((i for i, r in enumerate(rows[:end]) if r[0] == 0), default=-1) + 1
        for depth, name, cumulative in rows[start:end]:
            if depth == 1:
                children[name].append(cumulative / 1000)
    heaviest = sorted(((name, statistics.median(v)) for name, v in children.items()), key=lambda kv: -kv[1])[:5]
    return ImportTime(module, statistics.median(totals), min(totals), runs, heaviest)


# What any handler pays before its own code: for judging how far below the target a handler can get.
REFERENCE_MODULES = ("boto3", "aws_lambda_powertools.logging")
# The SDKs the handlers build on; imported first, they show what each handler adds on its own.
SDK_MODULES = ("boto3", "urllib3", "aws_lambda_powertools")


def measure_handlers(runs: int) -> list[ImportTime]:
    measured = []
    for module in handler_modules():
        item = measure_module(module, runs)
        item.own_ms = measure_module(module, runs, preload=SDK_MODULES).median_ms
        measured.append(item)
    return measured


def measure_references(runs: int) -> list[ImportTime]:
    return [measure_module(module, runs) for module in REFERENCE_MODULES]
