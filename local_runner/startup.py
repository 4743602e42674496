"""What makes the runner start fast, and the clock that shows where its time goes (`--timings`)."""

from __future__ import annotations

import gc
import json
import os
import time
from contextlib import contextmanager
from typing import Iterator, TextIO


@contextmanager
def paused_gc() -> Iterator[None]:
    """Importing and setting up the engine creates about a million objects, next to no garbage: the collector's
    passes over them cost a tenth of the start. So the collector is paused meanwhile, and what exists at the end is
    frozen (gc.freeze): otherwise the first collections after the pause walk every object made during it (0.1 to
    0.2 s in all). LocalEngine.__exit__ unfreezes (thaw_gc), so that a test suite's engines are still collected."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()


def thaw_gc() -> None:
    """Give the objects paused_gc froze back to the collector (into its oldest generation)."""
    gc.unfreeze()


def process_started() -> float:
    """time.monotonic() when this process started (to the kernel's clock tick), or now where /proc cannot say."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        age = 0.0
    return time.monotonic() - age


class PhaseClock:
    """Seconds per phase of the run; report() prints them as one JSON line: timings: {"imports": ..., ...}."""

    def __init__(self) -> None:
        self._last = process_started()
        self.seconds: dict[str, float] = {}

    def end(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now

    def report(self, stream: TextIO) -> None:
        print(f"timings: {json.dumps(self.seconds)}", file=stream, flush=True)
