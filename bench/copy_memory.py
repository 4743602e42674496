"""Peak memory of the copy step (bls_pipeline.copier.copy_file) on one large file, in a fresh process.

The parent serves a generated file of the requested size (streamed, never held in memory) and runs this module
as a child twice: once for peak RSS, once under tracemalloc for the peak of Python allocations and what holds
them (tracemalloc's own bookkeeping would inflate the RSS of a single run). The child prints JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import kill_with_parent

PROJECT = Path(__file__).resolve().parent.parent


def _status_bytes(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: after fork + exec that still counts the
    benchmark process the child was forked from."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field + ":"))


def child(settings: dict) -> dict:
    os.environ["AWS_ENDPOINT_URL_S3"] = settings["s3_endpoint"]
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ.pop("AWS_CA_BUNDLE", None)
    from bls_pipeline.aws import s3_client
    from bls_pipeline.bls_listing import SourceFile
    from bls_pipeline.config import Settings
    from bls_pipeline.copier import CopyTarget, TransferSettings, copy_file
    from bls_pipeline.sync import source_client

    from bench.source import tree_and_survey

    tree, survey = tree_and_survey(settings["source_url"])
    config = Settings(bucket=settings["bucket"], contact_email=settings["contact_email"], source_url=tree,
                      source_requests_per_second=1000.0, allow_private_sources=True)  # the loopback source, unthrottled
    config = config.for_survey(survey or "pr")  # the survey directory's view: its URL, its mirror prefix
    s3 = s3_client()
    source = source_client(config, s3, run_id=None)
    file = SourceFile(name=settings["name"], url=settings["source_url"] + settings["name"], size=settings["size"],
                      stamp="8/6/2026 8:30 AM")
    s3.list_buckets()  # let the client finish its lazy set-up before the baseline is taken
    baseline = _status_bytes("VmRSS")
    sampler = PeakSampler() if settings["tracemalloc"] else None
    started = time.monotonic()
    result = copy_file(s3, source, CopyTarget.in_mirror(config, file), TransferSettings.from_settings(config))
    seconds = time.monotonic() - started
    traced_peak, peak_sites = sampler.stop() if sampler else (None, [])
    return {
        "peak_sites": peak_sites,
        "seconds": seconds,
        "bytes": result.bytes,
        "multipart": result.multipart,
        "rss_before_copy": baseline,
        "peak_rss": _status_bytes("VmHWM"),
        "tracemalloc_peak": traced_peak,
    }


class PeakSampler:
    """tracemalloc, plus a thread that snapshots the allocation sites whenever traced memory reaches a new high:
    what holds the memory at (about) the peak."""

    def __init__(self, interval: float = 0.05):
        import threading
        import tracemalloc

        self._tracemalloc = tracemalloc
        tracemalloc.start(8)
        self._highest = 0
        self._sites: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(interval,), daemon=True)
        self._thread.start()

    def _watch(self, interval: float) -> None:
        while not self._done.wait(interval):
            current = self._tracemalloc.get_traced_memory()[0]
            if current > self._highest:
                self._highest = current
                snapshot = self._tracemalloc.take_snapshot()
                top = snapshot.statistics("traceback")[:4]
                self._sites = [
                    f"{stat.size / 2**20:7.1f} MiB in {stat.count} block(s) allocated at "
                    + " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[::-1][:4])
                    for stat in top
                ]

    def stop(self) -> tuple[int, list[str]]:
        peak = self._tracemalloc.get_traced_memory()[1]
        self._done.set()
        self._thread.join()
        self._tracemalloc.stop()
        return peak, self._sites


@dataclass
class CopyMemoryResult:
    size: int
    seconds: float
    peak_rss: int
    rss_before_copy: int
    tracemalloc_peak: int
    s3: dict
    peak_sites: list[str]

    @property
    def copy_rss(self) -> int:
        """What the copy step added to the process's resident memory at its peak."""
        return self.peak_rss - self.rss_before_copy


def measure_copy_memory(source, destination, size: int, timeout: float) -> CopyMemoryResult:
    from .source import CONTACT, GeneratedBody, RELEASE

    name = "pr.data.9.Huge"
    source.files.clear()
    source.put(name, GeneratedBody(size, seed=11), RELEASE)
    bucket = destination.fresh_bucket("bench-copy")
    runs = []
    for traced in (False, True):
        destination.proxy.reset()
        settings = {"s3_endpoint": destination.url, "bucket": bucket, "contact_email": CONTACT,
                    "source_url": source.url, "name": name, "size": size, "tracemalloc": traced}
        done = subprocess.run([sys.executable, "-m", "bench.copy_memory", json.dumps(settings)], capture_output=True,
                              text=True, timeout=timeout, cwd=PROJECT, preexec_fn=kill_with_parent)
        if done.returncode != 0:
            raise RuntimeError(f"copy probe failed: {done.stderr[-2000:]}")
        runs.append(json.loads(done.stdout))
        runs[-1]["s3"] = destination.proxy.snapshot()
    plain, traced_run = runs
    if plain["bytes"] != size:
        raise RuntimeError(f"copy probe copied {plain['bytes']} bytes of {size}")
    return CopyMemoryResult(size, plain["seconds"], plain["peak_rss"], plain["rss_before_copy"],
                            traced_run["tracemalloc_peak"], plain["s3"], traced_run["peak_sites"])


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
