"""The tree section (issue 17, "scale evidence"): a loopback BLS time.series tree of 60 surveys and 3,000 files
(bench/tree_layout.py), mirrored whole by the pipeline (Surveys='*') and by `rclone sync` of the tree root, both at
the same source request rate: cold, no-op, one changed file.

The tree is a bls_loopback BlsTree (one port; every request counts against the host) whose handler streams
bench/source.py's GeneratedBody, so a file of several hundred MB is never held in memory, and counts the file bytes
it sends. The population API is another loopback host, so the tree's log holds only source requests.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import os
import random
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from bls_loopback.server import BlsServer, BlsTree, TreeHandler, peak_requests_per_second

from .contenders import Contender, ContenderFailed, Pipeline, Rclone
from .s3_endpoint import Destination
from .scenarios import largest_payload
from .source import (NEXT_RELEASE, POPULATION_ANSWER, POPULATION_PATH, RELEASE, CountsFileBytes, GeneratedBody,
                     _StreamingHandler)
from .tree_layout import TreeFile, hostile_files, tree_layout

MIRROR_ROOT = "bls/"
TREE_SCENARIOS = ("cold", "noop", "changed")
CHANGED_SURVEY = "cu"  # the survey whose file changes in the one-changed-file scenario
HASH_SAMPLE = 40  # files hashed besides the largest three and the changed one, when not all are
CATALOG_STATE = "CatalogSurveys"  # the SQL catalog step's state (statemachine/pipeline.asl.json)


class TreeSource(CountsFileBytes, BlsTree):
    """A BlsTree whose files may be GeneratedBody (streamed), with a count of the file bytes it sends."""

    def handler(self) -> type:
        return _TreeStreamingHandler

    def populate(self, layout: list[TreeFile]) -> None:
        """The layout's files, each a GeneratedBody of its size (seeded by its place in the layout) that starts with
        the file's first line (bench/tree_layout.py: a BLS header row, some of them odd on purpose)."""
        self.surveys.clear()
        for seed, item in enumerate(layout):
            body = GeneratedBody(item.size, seed=seed, header=item.header.encode())
            self.survey(item.survey).put(item.name, body, RELEASE)

    def expected(self) -> dict[str, GeneratedBody]:
        """'<survey>/<name>' -> body, as the mirror should hold them under MIRROR_ROOT."""
        return {f"{survey}/{name}": served.body for survey, directory in self.surveys.items()
                for name, served in directory.files.items()}

    def change_one_file(self, survey: str = CHANGED_SURVEY) -> str:
        """The next release rewrites one data file of `survey`: 1,000 bytes more, other bytes (after the same header
        row), a new stamp."""
        if survey not in self.surveys:  # a smaller tree without it: its first survey
            survey = sorted(self.surveys)[0]
        directory = self.surveys[survey]
        name = sorted(directory.files, key=lambda n: (".data." not in n, n))[0]
        old = directory.files[name].body
        directory.put(name, dataclasses.replace(old, size=len(old) + 1000, seed=old.seed + 1_000_003), NEXT_RELEASE)
        return f"{survey}/{name}"

    def request_counts(self) -> dict[str, int]:
        """The tree listing, the survey listings, HEADs and GETs of files (and anything else), and file bytes."""
        counts = {"tree_listing": 0, "survey_listing": 0, "head": 0, "get": 0, "other": 0}
        directories = {f"{self.base_path}{name}/" for name in self.surveys}
        for request in self.all_requests():
            path = request.path.split("?", 1)[0]
            if path == self.base_path:
                counts["tree_listing" if request.method == "GET" else "other"] += 1
            elif path in directories:
                counts["survey_listing" if request.method == "GET" else "other"] += 1
            elif request.method == "HEAD":
                counts["head"] += 1
            elif request.method == "GET":
                counts["get"] += 1
            else:
                counts["other"] += 1
        counts["bytes"] = self.file_bytes_sent
        counts["refused"] = sum(1 for r in self.all_requests() if r.status >= 400)
        return counts


class _TreeStreamingHandler(TreeHandler, _StreamingHandler):
    """TreeHandler's routing (each request's owner is its survey directory, or the tree) with _StreamingHandler's
    streamed bodies; file bytes are counted on the tree (the class's owner), whatever directory answered."""

    def count_file_bytes(self, count: int) -> None:
        type(self).owner.count_file_bytes(count)


@dataclass
class TreeRun:
    contender: str
    scenario: str
    all_seconds: list[float] = field(default_factory=list)  # the whole process, per repetition (NaN: failed)
    source: dict = field(default_factory=dict)  # counts of the last repetition
    s3: dict = field(default_factory=dict)
    peak_per_second: int = 0  # the largest over the repetitions
    correct: bool = True
    checked: str = ""  # what the correctness check read back
    failure: str = ""
    detail: dict = field(default_factory=dict)  # the pipeline's result (payloads, state seconds ...), last repetition
    state_seconds: list[float] = field(default_factory=list)  # the pipeline's execution span, per repetition
    # The pipeline's CatalogSurveys state: its spans in the execution history summed, and its calls, per repetition.
    catalog_seconds: list[float] = field(default_factory=list)
    catalog_calls: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        finished = [s for s in self.all_seconds if s == s]
        return statistics.median(finished) if finished else float("nan")


@dataclass
class TreeResult:
    mode: str
    rate: float
    scale: float
    surveys: int
    files: int
    total_bytes: int
    largest: list[tuple[str, int]]
    repeat: int
    latency: float
    bandwidth: float | None
    concurrency: int
    rclone_flags: list[str]
    runs: list[TreeRun] = field(default_factory=list)
    hostile: dict = field(default_factory=dict)  # tree_layout.hostile_files: the odd headers and their files
    command: str = ""
    date: str = ""
    machine: dict = field(default_factory=dict)
    elapsed: float = 0.0

    def run(self, contender: str, scenario: str) -> TreeRun | None:
        return next((r for r in self.runs if r.contender == contender and r.scenario == scenario), None)


@lru_cache(maxsize=4096)
def _sha256(body: GeneratedBody) -> str:
    return body.sha256()


def check_mirror(destination: Destination, bucket: str, expected: dict[str, GeneratedBody], hash_all: bool,
                 must_hash: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Every file present under MIRROR_ROOT with its size, nothing else there; SHA-256 of all files (hash_all) or of
    the largest three, `must_hash` and a seeded sample. Read directly from SeaweedFS, not through the proxy."""
    found = destination.contents(bucket, MIRROR_ROOT)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if found[k] != len(expected[k]))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {extra[:3]})")
    if wrong:
        problems.append(f"{len(wrong)} of the wrong size (e.g. {wrong[:3]})")
    if hash_all:
        names = sorted(expected)
    else:
        largest = sorted(expected, key=lambda k: -len(expected[k]))[:3]
        rest = sorted(set(expected) - set(largest) - set(must_hash))
        names = sorted({*largest, *(n for n in must_hash if n in expected),
                        *random.Random(17).sample(rest, min(HASH_SAMPLE, len(rest)))})
    names = [n for n in names if n in found]

    def digest(name: str) -> bool:
        body = destination.direct.get_object(Bucket=bucket, Key=MIRROR_ROOT + name)["Body"]
        hasher = hashlib.sha256()
        for chunk in body.iter_chunks(1 << 20):
            hasher.update(chunk)
        return hasher.hexdigest() == _sha256(expected[name])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        mismatched = [n for n, ok in zip(names, pool.map(digest, names)) if not ok]
    if mismatched:
        problems.append(f"{len(mismatched)} with other bytes (e.g. {mismatched[:3]})")
    what = (f"{len(found):,} objects' sizes; SHA-256 of " + ("all" if hash_all else f"{len(names)} (the largest three, "
            "the changed file and a seeded sample)"))
    return not problems, what + ("" if not problems else ": " + "; ".join(problems))


def _measure(contender: Contender, tree: TreeSource, scenario: str, bucket: str, hash_all: bool,
             changed: str) -> TreeRun:
    tree.reset_log()
    contender.destination.proxy.reset()
    run = TreeRun(contender.name, scenario)
    try:
        seconds, detail = contender.sync(bucket)
    except ContenderFailed as exc:
        # A run that did not succeed has no numbers in the report (bench/report.py tree_lines): only its cause.
        seconds, detail, run.failure = float("nan"), {}, str(exc)
    run.all_seconds = [seconds]
    run.detail = detail
    if "seconds" in detail:
        run.state_seconds = [detail["seconds"]]
    if CATALOG_STATE in detail.get("state_seconds", {}):
        run.catalog_seconds = [detail["state_seconds"][CATALOG_STATE]]
        run.catalog_calls = [detail.get("state_calls", {}).get(CATALOG_STATE, 1)]
    run.source = tree.request_counts()
    run.peak_per_second = peak_requests_per_second([r.at for r in tree.all_requests()])
    run.s3 = contender.destination.proxy.snapshot()
    run.correct, run.checked = check_mirror(contender.destination, bucket, tree.expected(), hash_all,
                                            (changed,) if changed else ())
    run.correct = run.correct and not run.failure
    return run


def run_tree(tree: TreeSource, population: BlsServer, destination: Destination, layout: list[TreeFile], rate: float,
             repeat: int, concurrency: int, timeout: float, log: Callable[[str], None], hash_all: bool,
             contenders: tuple[str, ...] = ("pipeline", "rclone")) -> list[TreeRun]:
    """`repeat` repetitions; in each, every contender in turn (the order rotating) gets the tree as laid out and a
    fresh, warmed bucket, then runs cold, no-op, changed."""
    made: list[Contender] = []
    for name in contenders:
        if name == "pipeline":
            made.append(Pipeline(tree, destination, concurrency, timeout, requests_per_second=rate, surveys="*",
                                 population=population))
        elif name == "rclone":
            made.append(Rclone(tree, destination, concurrency, timeout, tpslimit=rate, prefix=MIRROR_ROOT))
    runs: dict[tuple[str, str], TreeRun] = {}
    for repetition in range(repeat):
        shift = repetition % len(made)
        for contender in made[shift:] + made[:shift]:
            tree.populate(layout)
            bucket = destination.fresh_bucket(f"bench-tree-{contender.name}")
            contender.prepare(bucket)
            changed = ""
            for scenario in TREE_SCENARIOS:
                if scenario == "changed":
                    changed = tree.change_one_file()
                run = _measure(contender, tree, scenario, bucket, hash_all, changed)
                s = run.source
                where = f"  [{repetition + 1}/{repeat}] tree {contender.name:<8} {scenario:<7}"
                if run.failure:
                    log(f"{where} ERROR, the run did not succeed: {run.failure[:600]}")
                else:
                    log(f"{where} {run.all_seconds[0]:8.2f} s  "
                        f"source {s['tree_listing']}+{s['survey_listing']} listings, {s['head']} HEAD, {s['get']} GET, "
                        f"{s['bytes'] / 1e6:,.1f} MB  peak {run.peak_per_second}/s  s3 {run.s3['requests']}  "
                        f"correct={run.correct}"
                        + (f"  {CATALOG_STATE} {run.catalog_seconds[0]:.1f} s in {run.catalog_calls[0]} call(s)"
                           if run.catalog_seconds else "")
                        + (f"  largest payload {largest_payload(run)}" if run.detail.get("payloads") else ""))
                if not run.correct and not run.failure:
                    log(f"    check: {run.checked[:300]}")
                previous = runs.get((contender.name, scenario))
                if previous is not None:
                    run.all_seconds = previous.all_seconds + run.all_seconds
                    run.state_seconds = previous.state_seconds + run.state_seconds
                    run.catalog_seconds = previous.catalog_seconds + run.catalog_seconds
                    run.catalog_calls = previous.catalog_calls + run.catalog_calls
                    run.peak_per_second = max(run.peak_per_second, previous.peak_per_second)
                    run.correct = run.correct and previous.correct
                    run.failure = run.failure or previous.failure
                    if not previous.correct and previous.checked:
                        run.checked = previous.checked
                runs[(contender.name, scenario)] = run
        for contender in made:  # give SeaweedFS its space back between repetitions
            destination.fresh_bucket(f"bench-tree-{contender.name}")
    return list(runs.values())


def start_tree(layout: list[TreeFile], latency: float, bandwidth: float | None) -> tuple[TreeSource, BlsServer]:
    """The tree (never blocks: max_requests_per_second None; the peak per second is counted instead) and the
    population API on another loopback host."""
    tree = TreeSource(latency=latency, bandwidth=bandwidth).start()
    tree.populate(layout)
    population = BlsServer(latency=latency).start()
    population.route(POPULATION_PATH, POPULATION_ANSWER)
    return tree, population


def measure(destination: Destination, mode: str, rate: float, repeat: int, scale: float,
            latency: float, bandwidth: float | None, concurrency: int, timeout: float, log: Callable[[str], None],
            surveys: int = 60, files: int = 3000, hash_all: bool | None = None,
            contenders: tuple[str, ...] = ("pipeline", "rclone")) -> TreeResult:
    layout = tree_layout(surveys=surveys, files=files, scale=scale)
    total = sum(f.size for f in layout)
    if hash_all is None:
        hash_all = total <= 600 * 1000 * 1000
    largest = [(f"{f.survey}/{f.name}", f.size) for f in sorted(layout, key=lambda f: -f.size)[:3]]
    result = TreeResult(mode=mode, rate=rate, scale=scale, surveys=len({f.survey for f in layout}), files=len(layout),
                        total_bytes=total, largest=largest, repeat=repeat, latency=latency, bandwidth=bandwidth,
                        concurrency=concurrency, rclone_flags=Rclone.flags(concurrency, rate),
                        hostile=hostile_files(layout), date=dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    result.machine["load average at start (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    log(f"  tree: {result.surveys} surveys, {result.files:,} files, {total / 1e6:,.1f} MB (largest "
        + ", ".join(f"{n} {s / 1e6:.1f} MB" for n, s in largest) + f"), {rate:g} requests/s, {repeat} repetition(s); "
        "odd headers on purpose: " + "; ".join(f"{what}: {name}" for what, name in result.hostile.items()))
    tree, population = start_tree(layout, latency, bandwidth)
    try:
        result.runs = run_tree(tree, population, destination, layout, rate, repeat, concurrency, timeout, log,
                               hash_all, contenders)
    finally:
        tree.stop()
        population.stop()
    result.machine["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return result
