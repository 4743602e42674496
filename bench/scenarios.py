"""The sync scenarios (cold, no-op, one changed file) for every contender, and the 10,000-file run."""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from bls_loopback.server import peak_requests_per_second

from .contenders import MIRROR_PREFIX, Contender, ContenderFailed, Naive, Pipeline, Rclone, RcloneRanged
from .s3_endpoint import Destination
from .source import BenchSource, GeneratedBody, change_one_file, populate_many_files, populate_pr_directory

SCENARIOS = ("cold", "noop", "changed")
SCENARIO_TITLES = {
    "cold": "cold sync (empty destination)",
    "noop": "no-op resync (nothing changed)",
    "changed": "one changed file",
}


@dataclass(frozen=True)
class Profile:
    """One comparison: its contenders, each configured as its users would for that purpose, on one directory."""

    name: str
    title: str
    contenders: tuple[Callable[..., Contender], ...]
    large_file: bool  # the `pr` directory plus one large generated file (else the real `pr` sizes only)
    reference: str  # the contender the others are compared with


def sync_profiles() -> tuple[Profile, ...]:
    return (
        Profile("polite", "polite: at most 1 request per second to the source (BLS's terms), real `pr` file sizes",
                (lambda *a: Pipeline(*a, requests_per_second=1.0), lambda *a: Rclone(*a, tpslimit=1.0), Naive),
                large_file=False, reference="rclone"),
        Profile("unthrottled", "unthrottled: no request-rate limit, real `pr` file sizes",
                (Pipeline, Rclone, Naive), large_file=False, reference="rclone"),
        Profile("large-file", "a large file read in byte ranges, no request-rate limit (pr plus one large file)",
                (lambda *a: Pipeline(*a, range_streams=4), RcloneRanged), large_file=True, reference="rclone-ranged"),
    )


@dataclass
class SyncRun:
    contender: str
    scenario: str
    seconds: float  # the whole process, median over repetitions
    source: dict  # listing / head / get requests and file bytes sent
    s3: dict  # requests, operations, bytes_in, bytes_out
    correct: bool  # the destination holds exactly the source's files, byte for byte
    detail: dict = field(default_factory=dict)
    all_seconds: list[float] = field(default_factory=list)
    failure: str = ""  # why the run did not finish; its numbers are then what was counted until it stopped
    label: str = ""  # shown instead of the contender's name, e.g. for a run with a workaround
    profile: str = ""
    peak_per_second: int = 0  # the most requests that reached the source within one second (the largest seen)
    state_seconds: list[float] = field(default_factory=list)  # the pipeline's execution span, per repetition

    @property
    def title(self) -> str:
        return self.label or self.contender


@lru_cache(maxsize=8)
def _generated_sha256(body: GeneratedBody) -> str:
    return body.sha256()


def expected_mirror(source: BenchSource) -> dict[str, str]:
    return {
        name: _generated_sha256(f.body) if isinstance(f.body, GeneratedBody) else hashlib.sha256(f.body).hexdigest()
        for name, f in source.files.items()
    }


def mirror_matches(destination: Destination, bucket: str, expected: dict[str, str]) -> bool:
    """Read back every mirrored object (directly, not through the counting proxy) and compare hashes."""
    if set(destination.contents(bucket, MIRROR_PREFIX)) != set(expected):
        return False
    for name, sha256 in expected.items():
        digest = hashlib.sha256()
        body = destination.direct.get_object(Bucket=bucket, Key=MIRROR_PREFIX + name)["Body"]
        for chunk in body.iter_chunks(1 << 20):
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            return False
    return True


def measure(contender: Contender, scenario: str, bucket: str, check: bool = True) -> SyncRun:
    """One sync, timed as a whole process (every contender the same span), with the source's and S3's counts."""
    source, destination = contender.source, contender.destination
    source.reset_log()
    destination.proxy.reset()
    try:
        seconds, detail = contender.sync(bucket)
        failure = ""
    except ContenderFailed as exc:
        seconds, detail, failure = float("nan"), {}, str(exc)
    counts = source.request_counts()
    peak = peak_requests_per_second([r.at for r in source.requests])
    s3 = destination.proxy.snapshot()
    correct = not failure and (mirror_matches(destination, bucket, expected_mirror(source)) if check else True)
    run = SyncRun(contender.name, scenario, seconds, counts, s3, correct, detail, [seconds], failure,
                  peak_per_second=peak)
    if "seconds" in detail:
        run.state_seconds = [detail["seconds"]]
    return run


def run_sync_scenarios(profile: Profile, source: BenchSource, destination: Destination, concurrency: int,
                       timeout: float, large_bytes: int, repeat: int, log: Callable[[str], None]) -> list[SyncRun]:
    """`repeat` repetitions; in each, every contender in turn (the order rotates, so none always goes first) gets
    a fresh source and a fresh, equally warmed bucket, then runs cold, no-op, changed. Times are kept per
    repetition (min / median / max reported); counts are from the last one (they do not vary)."""
    contenders = [factory(source, destination, concurrency, timeout) for factory in profile.contenders]
    runs: dict[tuple[str, str], SyncRun] = {}
    for repetition in range(repeat):
        shift = repetition % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            populate_pr_directory(contender.source, large_bytes if profile.large_file else 0)
            bucket = contender.destination.fresh_bucket(f"bench-{profile.name}-{contender.name}")
            contender.prepare(bucket)
            for scenario in SCENARIOS:
                if scenario == "changed":
                    change_one_file(contender.source)
                run = measure(contender, scenario, bucket)
                run.profile = profile.name
                log(f"  [{repetition + 1}/{repeat}] {profile.name:<11} {contender.name:<13} {scenario:<8} "
                    f"{run.seconds:7.2f} s  source {run.source}  peak {run.peak_per_second}/s  s3 {run.s3['requests']}  "
                    f"correct={run.correct}  {run.failure[:300]}")
                previous = runs.get((contender.name, scenario))
                if previous is not None:
                    run.all_seconds = previous.all_seconds + run.all_seconds
                    run.state_seconds = previous.state_seconds + run.state_seconds
                    run.peak_per_second = max(run.peak_per_second, previous.peak_per_second)
                    run.correct = run.correct and previous.correct
                    run.failure = run.failure or previous.failure
                finished = [s for s in run.all_seconds if s == s]  # NaN marks a failed repetition
                run.seconds = statistics.median(finished) if finished else float("nan")
                runs[(contender.name, scenario)] = run
    return list(runs.values())


@dataclass
class ManyFilesResult:
    files: int
    latency: float
    runs: list[SyncRun]


def run_many_files(source: BenchSource, destination: Destination, count: int, latency: float, concurrency: int,
                   timeout: float, with_rclone: bool, log: Callable[[str], None]) -> ManyFilesResult:
    """A listing of `count` small files through the state machine (cold, then no-op), with each state's payload
    size; rclone on the same source for scale. When moto's Distributed Map dies of recursion (see
    Pipeline.recursion_limit), the pipeline runs again with a higher recursion limit, reported apart."""
    saved_latency = source.latency
    source.latency = latency
    populate_many_files(source, count)
    runs: list[SyncRun] = []
    try:
        pipeline = Pipeline(source, destination, concurrency, timeout)  # unthrottled: this measures the engine
        runs += _cold_then_noop(pipeline, "bench-many-pipeline", count, log)
        if "RecursionError" in runs[0].failure:
            pipeline.recursion_limit = count // concurrency * 2 + 1000
            label = f"pipeline, recursion limit {pipeline.recursion_limit}"
            runs += _cold_then_noop(pipeline, "bench-many-pipeline-workaround", count, log, label)
        if with_rclone:
            runs += _cold_then_noop(Rclone(source, destination, concurrency, timeout), "bench-many-rclone", count, log)
    finally:
        source.latency = saved_latency
    return ManyFilesResult(count, latency, runs)


def _cold_then_noop(contender: Contender, bucket: str, count: int, log: Callable[[str], None],
                    label: str = "") -> list[SyncRun]:
    bucket = contender.destination.fresh_bucket(bucket)
    contender.prepare(bucket)
    runs = []
    for scenario in ("cold", "noop"):
        # Reading back thousands of objects to check them takes long; the count of mirrored objects is checked.
        run = measure(contender, scenario, bucket, check=False)
        run.label = label
        mirrored = contender.destination.contents(bucket, MIRROR_PREFIX)
        run.correct = run.correct and len(mirrored) == count
        log(f"  {count} files: {run.title:<8} {scenario:<6} {run.seconds:7.2f} s  source {run.source}  "
            f"s3 {run.s3['requests']}  mirrored {len(mirrored)}  {run.failure[:300]}")
        runs.append(run)
        if run.failure:
            break
    return runs


def largest_payload(run: SyncRun) -> tuple[str, int]:
    """The largest state input/output of a pipeline run (a sync or tree run): the execution history's, or a Map
    item's."""
    history = run.detail["payloads"]
    items = run.detail.get("map_item_payloads", {})
    item_largest = max(items.get("largest_input_bytes", 0), items.get("largest_output_bytes", 0))
    if item_largest > history["largest_bytes"]:
        return "CopyFile, one Map item", item_largest
    return (history["largest_state"] or "?").rsplit(":", 1)[-1], history["largest_bytes"]
