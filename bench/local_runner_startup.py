"""The local runner's start-up budget (issue 14): `python -m local_runner` as its users run it, this checkout against
today's main before any start-up work (BASELINE_COMMIT), on the real `pr` files.

Each contender runs in a fresh process; its time is the whole process, from spawn to exit (every contender the same
span). Cases: cold (a fresh state directory) and no-op (a second run on the same state directory, nothing changed at
the source). This checkout also prints its phases with --timings; the baseline has no such flag.

The baseline is checked out with `git worktree add --detach` into the scratch directory and run with its checkout as
the working directory, by the same interpreter as this checkout (the bench venv, which has this checkout installed
in editable mode). Its cli puts its own functions/ first on sys.path and the working directory comes first for `-m`,
so it should import its own code: an untimed warm-up run of each contender under `python -v` proves it (every
bls_pipeline / local_runner / bls_loopback file imported must be under that contender's root), and the section fails
if not. The warm-up also writes the .pyc files, as a user's second run has them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from bls_loopback.population import POPULATION_PATH
from bls_loopback.server import BlsServer, peak_requests_per_second

from .processes import kill_with_parent
from .source import CONTACT, PR_SMALL_FILES, REAL_DATA, BenchSource

PROJECT = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "24892e7"
SNAPSHOT = REAL_DATA / "bls_pr_2026-08-06"
EARLIER_SNAPSHOT = REAL_DATA / "bls_pr_2024-06-06"  # pr.contacts and pr.txt: the 2026 crawl skipped them
REAL_POPULATION = REAL_DATA / "datausa_new_api" / "population.json"
BASELINE = f"main {BASELINE_COMMIT} (baseline)"
THIS = "this checkout"
CASES = ("cold", "noop")
PHASES = ("imports", "engine_start", "execution", "exit")
# The goals of issue 14: this checkout's whole process at most this share of the baseline's (medians).
GOALS = {"noop": 0.40, "cold": 0.60}
# (label, flags): the runner's defaults (1 request/s to the source and to the population API, as users run it
# against BLS), then both rates at 1000 to isolate the runner's own start-up and overhead from the pacing.
RATES = (
    ("1/s (default)", ()),
    ("1000/s", ("--source-requests-per-second", "1000", "--population-requests-per-second", "1000")),
)
_TIMINGS = re.compile(r"^timings: (\{.*\})\s*$", re.MULTILINE)
_OWN_CODE = re.compile(r"(/[^\s'\"]*?/(?:bls_pipeline|local_runner|bls_loopback)/[^\s'\"]*)")


class StartupBenchError(RuntimeError):
    pass


def parse_timings(stderr: str) -> dict[str, float] | None:
    """The phases of `--timings`' line `timings: {"imports": s, ...}` (the last such line), or None if absent."""
    found = _TIMINGS.findall(stderr)
    if not found:
        return None
    phases = json.loads(found[-1])
    if not isinstance(phases, dict) or set(phases) != set(PHASES) \
            or not all(isinstance(v, (int, float)) for v in phases.values()):
        raise StartupBenchError(f"unexpected timings line: {found[-1][:300]}")
    return {name: float(phases[name]) for name in PHASES}


def foreign_imports(verbose_stderr: str, root: Path) -> tuple[set[str], set[str]]:
    """From `python -v` output: (the project files imported, those of them not under `root`)."""
    seen = {m.rstrip(":,)") for m in _OWN_CODE.findall(verbose_stderr)}
    prefix = str(root.resolve()) + os.sep
    return seen, {path for path in seen if not path.startswith(prefix)}


@dataclass(frozen=True)
class Runner:
    """One contender: a checkout whose `python -m local_runner` is run with the checkout as working directory."""

    name: str
    root: Path
    has_timings: bool

    def command(self, source_url: str, population_url: str, state_dir: Path, rate_flags: tuple[str, ...],
                verbose_imports: bool = False) -> list[str]:
        return [sys.executable, *(["-v"] if verbose_imports else []), "-m", "local_runner",
                "--contact-email", CONTACT, *self.source_flags(source_url), "--population-url", population_url,
                "--state-dir", str(state_dir), "--allow-private-source", *rate_flags,
                *(["--timings"] if self.has_timings else [])]

    def source_flags(self, survey_url: str) -> list[str]:
        """A checkout with --surveys takes the tree and the survey; an older one the survey's directory. Its flags
        are in local_runner/options.py, or in an older checkout's cli.py."""
        flags = "".join(path.read_text(encoding="utf-8") for name in ("cli.py", "options.py")
                        if (path := self.root / "local_runner" / name).is_file())
        if '"--surveys"' not in flags:
            return ["--source-url", survey_url]
        tree, survey = survey_url.rstrip("/").rsplit("/", 1)
        return ["--source-url", tree + "/", "--surveys", survey]


@dataclass
class StartupRow:
    contender: str
    case: str
    rate: str
    seconds: list[float] = field(default_factory=list)  # whole process, per repetition
    phases: list[dict[str, float]] = field(default_factory=list)  # --timings, per repetition (this checkout only)
    source_requests: list[int] = field(default_factory=list)  # requests to the pr directory, per repetition
    peak_per_second: int = 0  # the most source requests in any 1 s, over the repetitions

    def median(self) -> float:
        return statistics.median(self.seconds)

    def phase_median(self, phase: str) -> float | None:
        values = [p[phase] for p in self.phases]
        return statistics.median(values) if values else None


@dataclass
class Ratio:
    rate: str
    case: str
    new: float
    old: float
    goal: float

    @property
    def value(self) -> float:
        return self.new / self.old

    @property
    def met(self) -> bool:
        return self.value <= self.goal


@dataclass
class LocalRunnerResult:
    baseline: str  # "24892e7" with its subject
    revision: str  # this checkout's commit
    repeat: int
    files: int
    file_bytes: int
    latency: float
    bandwidth: float | None
    date: str
    python: str
    load_start: str
    load_end: str = ""
    command: str = ""
    rows: list[StartupRow] = field(default_factory=list)
    imports_checked: dict[str, int] = field(default_factory=dict)  # contender -> project files seen under -v

    def row(self, contender: str, case: str, rate: str) -> StartupRow | None:
        return next((r for r in self.rows if (r.contender, r.case, r.rate) == (contender, case, rate)), None)

    def ratios(self) -> list[Ratio]:
        found = []
        for rate, _ in RATES:
            for case in CASES:
                new, old = self.row(THIS, case, rate), self.row(BASELINE, case, rate)
                if new and old and new.seconds and old.seconds:
                    found.append(Ratio(rate, case, new.median(), old.median(), GOALS[case]))
        return found


def real_pr_files() -> dict[str, tuple[bytes, dt.datetime]]:
    """The real `pr` directory: the 2026-08-06 snapshot with its listing stamps (crawler_state.json), plus
    pr.contacts and pr.txt from the 2024 snapshot at their real stamps; the headline must be on the real files."""
    if not SNAPSHOT.is_dir() or not REAL_POPULATION.is_file():
        raise StartupBenchError(f"the real data is not at {REAL_DATA}: this section measures only on the real files")
    stamps = {url.rsplit("/", 1)[1]: dt.datetime.strptime(" ".join(text.split()), "%m/%d/%Y %I:%M %p")
              for url, text in json.loads((SNAPSHOT / "crawler_state.json").read_text()).items()}
    files = {p.name: (p.read_bytes(), stamps[p.name]) for p in sorted(SNAPSHOT.glob("pr.*"))}
    for name in ("pr.contacts", "pr.txt"):
        files.setdefault(name, ((EARLIER_SNAPSHOT / name).read_bytes(), PR_SMALL_FILES[name][1]))
    return files


@contextmanager
def baseline_checkout(scratch: Path) -> Iterator[Path]:
    """`git worktree add --detach` of BASELINE_COMMIT in the scratch directory, removed afterwards."""
    path = scratch / "baseline"

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=120)

    added = git("worktree", "add", "--detach", str(path), BASELINE_COMMIT)
    if added.returncode != 0:
        raise StartupBenchError(f"git worktree add {BASELINE_COMMIT} failed: {added.stderr.strip()[:500]}")
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", str(path))
        git("worktree", "prune")


def _environment() -> dict[str, str]:
    """The user's environment, less anything that would point either runner at other code or other endpoints."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP") and not k.startswith("AWS_")}


def _run(runner: Runner, command: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=runner.root,
                              env=_environment(), preexec_fn=kill_with_parent)
    except subprocess.TimeoutExpired as exc:
        raise StartupBenchError(f"{runner.name} did not finish within {timeout} s") from exc
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise StartupBenchError(f"{runner.name} exited {done.returncode}: {done.stderr[-1500:]} {done.stdout[-500:]}")
    return seconds, done


def _mirror_matches(state_dir: Path, files: dict[str, tuple[bytes, dt.datetime]]) -> bool:
    mirror = state_dir / "s3" / "bls" / "pr"
    if not mirror.is_dir() or {p.name for p in mirror.iterdir()} != set(files):
        return False
    return all((mirror / name).read_bytes() == body for name, (body, _) in files.items())


def measure(scratch: Path, repeat: int, latency: float, bandwidth: float | None, timeout: float,
            log: Callable[[str], None]) -> LocalRunnerResult:
    files = real_pr_files()
    source = BenchSource(latency=latency, bandwidth=bandwidth).start()  # max_requests_per_second None: never blocks
    population = BlsServer(latency=latency).start()  # another host, as DataUSA is
    population.route(POPULATION_PATH, REAL_POPULATION.read_bytes())
    for name, (body, stamp) in files.items():
        source.put(name, body, stamp)
    population_url = population.root + POPULATION_PATH + "?cube=acs_yg_total_population_1"
    subject = subprocess.run(["git", "log", "-1", "--format=%h %s", BASELINE_COMMIT], cwd=PROJECT, capture_output=True,
                             text=True, timeout=30).stdout.strip()
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    result = LocalRunnerResult(
        baseline=subject.split(";")[0][:100] or BASELINE_COMMIT, revision=revision, repeat=repeat, files=len(files),
        file_bytes=sum(len(body) for body, _ in files.values()), latency=latency, bandwidth=bandwidth,
        date=dt.datetime.now().strftime("%Y-%m-%d %H:%M"), python=sys.version.split()[0],
        load_start=" / ".join(f"{x:.2f}" for x in os.getloadavg()))
    runs = 0
    try:
        with baseline_checkout(scratch) as baseline_root:
            runners = [Runner(BASELINE, baseline_root, has_timings=False), Runner(THIS, PROJECT, has_timings=True)]
            for runner in runners:
                state_dir = scratch / "warm-up" / runner.name.split()[0]
                _, done = _run(runner, runner.command(source.url, population_url, state_dir, RATES[1][1],
                                                      verbose_imports=True), timeout)
                seen, foreign = foreign_imports(done.stderr, runner.root)
                if foreign or not any("/bls_pipeline/" in p for p in seen) or not any("/local_runner/" in p for p in seen):
                    raise StartupBenchError(
                        f"{runner.name} (cwd {runner.root}) did not import only its own code: {len(seen)} project "
                        f"files seen, not under its root: {sorted(foreign)[:5]}")
                result.imports_checked[runner.name] = len(seen)
                log(f"  {runner.name}: imports only its own code ({len(seen)} files under {runner.root})")
                shutil.rmtree(state_dir, ignore_errors=True)
            for rate, flags in RATES:
                for repetition in range(repeat):
                    shift = repetition % len(runners)
                    for runner in runners[shift:] + runners[:shift]:
                        runs += 1
                        state_dir = scratch / f"state-{runs}"
                        for case in CASES:
                            source.reset_log()
                            seconds, done = _run(runner, runner.command(source.url, population_url, state_dir, flags),
                                                 timeout)
                            phases = parse_timings(done.stderr)
                            if runner.has_timings and phases is None:
                                raise StartupBenchError(f"{runner.name} printed no timings line: {done.stderr[-500:]}")
                            requests = source.requests_for()
                            if case == "cold" and not _mirror_matches(state_dir, files):
                                raise StartupBenchError(f"{runner.name}'s cold run did not mirror the files exactly")
                            if case == "noop" and [r.path for r in requests] != [source.base_path]:
                                raise StartupBenchError(f"{runner.name}'s no-op run asked more than the listing: "
                                                        f"{[r.path for r in requests][:5]}")
                            row = result.row(runner.name, case, rate)
                            if row is None:
                                row = StartupRow(runner.name, case, rate)
                                result.rows.append(row)
                            row.seconds.append(seconds)
                            if phases:
                                row.phases.append(phases)
                            row.source_requests.append(len(requests))
                            row.peak_per_second = max(row.peak_per_second,
                                                      peak_requests_per_second([r.at for r in requests]))
                            log(f"  [{repetition + 1}/{repeat}] {rate:<14} {runner.name:<24} {case:<5} {seconds:6.2f} s"
                                f"  source requests {len(requests)}"
                                + (f"  phases {json.dumps(phases)}" if phases else ""))
                        shutil.rmtree(state_dir, ignore_errors=True)
    finally:
        source.stop()
        population.stop()
    result.load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return result
