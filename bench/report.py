"""Turn the measurements into the stdout table and bench/RESULTS.md."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .analytics import AnalyticsResult
from .copy_memory import CopyMemoryResult
from .imports import ImportTime
from .local_runner_startup import BASELINE_COMMIT, PHASES, RATES, THIS, LocalRunnerResult
from .scenarios import SCENARIO_TITLES, SCENARIOS, ManyFilesResult, SyncRun, largest_payload, sync_profiles
from .tree import CATALOG_STATE, TreeResult, TreeRun

MiB = 1024 * 1024
MB = 1000 * 1000
STATE_PAYLOAD_LIMIT = 256 * 1024
COPY_MEMORY_LIMIT = 100 * MB
IMPORT_LIMIT_MS = 200


@dataclass
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return "n/a" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class Results:
    mode: str
    setup: dict
    machine: dict
    sync: list[SyncRun] = field(default_factory=list)
    many: ManyFilesResult | None = None
    copy: CopyMemoryResult | None = None
    analytics: list[AnalyticsResult] = field(default_factory=list)
    imports: list[ImportTime] = field(default_factory=list)
    import_references: list[ImportTime] = field(default_factory=list)
    local_runner: LocalRunnerResult | None = None
    tree: TreeResult | None = None
    analytics_memory_limit: int = 0
    profiles: dict[str, str] = field(default_factory=dict)
    caveats: list[str] = field(default_factory=list)
    section_errors: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0


def _ratio(value: float, reference: float) -> str:
    if reference == 0:
        return "—" if value == 0 else "∞"
    return f"{value / reference:.2f}×"


def _mib(value: int) -> str:
    return f"{value / MiB:,.1f} MiB"


def _source_total(run: SyncRun) -> int:
    return run.source["listing"] + run.source["head"] + run.source["get"]


def _find(runs: list[SyncRun], contender: str, scenario: str, profile: str = "unthrottled") -> SyncRun | None:
    """The run of a contender in a scenario of a profile (not a relabelled one, e.g. with a workaround)."""
    return next((r for r in runs if r.contender == contender and r.scenario == scenario and not r.label
                 and r.profile in (profile, "")), None)


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split()).replace("|", "/")[:limit]


def _spread(values: list[float]) -> str:
    finished = sorted(v for v in values if v == v)
    if not finished:
        return "—"
    if len(finished) == 1:
        return f"{finished[0]:.2f} s"
    return f"{finished[0]:.2f} / **{statistics.median(finished):.2f}** / {finished[-1]:.2f} s"


def sync_table(runs: list[SyncRun], profile: str, reference_name: str) -> list[str]:
    lines = [
        f"| scenario | contender | whole process, min / **median** / max | vs {reference_name} (median) "
        "| of which the state machine execution (median) | source requests (listing / HEAD / GET) "
        "| peak requests in any 1 s | bytes downloaded | S3 requests | S3 requests by operation | correct |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for scenario in SCENARIOS:
        reference = _find(runs, reference_name, scenario, profile)
        for run in (r for r in runs if r.scenario == scenario and r.profile == profile):
            if run.failure:
                lines.append(f"| {scenario} | {run.title} | **failed**: {_one_line(run.failure)} | | | | | | | | **NO** |")
                continue
            ops = ", ".join(f"{k} {v}" for k, v in run.s3["operations"].items())
            execution = f"{statistics.median(run.state_seconds):.2f} s" if run.state_seconds else "—"
            lines.append(
                f"| {scenario} | {run.contender} | {_spread(run.all_seconds)} | "
                f"{_ratio(run.seconds, reference.seconds) if reference else '—'} | {execution} | "
                f"{_source_total(run)} ({run.source['listing']} / {run.source['head']} / {run.source['get']}) | "
                f"{run.peak_per_second} | {_mib(run.source['bytes'])} | {run.s3['requests']} | {ops} | "
                f"{'yes' if run.correct else '**NO**'} |"
            )
    return lines


def sync_sections(results: Results) -> list[str]:
    out: list[str] = []
    for profile in sync_profiles():
        if not any(r.profile == profile.name for r in results.sync):
            continue
        out += [f"### {profile.title}", "", *sync_table(results.sync, profile.name, profile.reference), ""]
    return out


def targets(results: Results) -> list[Target]:
    found: list[Target] = []
    noop = _find(results.sync, "pipeline", "noop", "polite") or _find(results.sync, "pipeline", "noop")
    if noop and noop.failure:
        found.append(Target("no-op resync: exactly one source request", f"run failed: {_one_line(noop.failure, 120)}", False))
    elif noop:
        found.append(Target(
            "no-op resync: exactly one source request (the listing), zero bytes downloaded",
            f"{_source_total(noop)} request(s) ({noop.source['listing']} listing, {noop.source['head']} HEAD, "
            f"{noop.source['get']} GET), {noop.source['bytes']} bytes",
            _source_total(noop) == 1 and noop.source["listing"] == 1 and noop.source["bytes"] == 0,
        ))
    latency_ms = results.setup["latency"] * 1000
    for profile, scenario, name, share in (
        ("unthrottled", "cold", "cold sync, whole process ≤ rclone's (real `pr` sizes, no rate limit)", 1.0),
        ("polite", "cold", "polite cold sync (1 request/s) about half of rclone --tpslimit 1", 0.6),
        ("polite", "noop", "polite no-op resync far below rclone --tpslimit 1", 0.5),
    ):
        ours, theirs = _find(results.sync, "pipeline", scenario, profile), _find(results.sync, "rclone", scenario, profile)
        if not (ours and theirs):
            continue
        if ours.failure or theirs.failure:
            found.append(Target(name, "a run failed: " + _one_line(ours.failure or theirs.failure, 120), False))
            continue
        found.append(Target(
            f"{name} (same transfers, {latency_ms:.0f} ms latency)",
            f"pipeline {ours.seconds:.2f} s vs rclone {theirs.seconds:.2f} s ({_ratio(ours.seconds, theirs.seconds)}; "
            f"medians of {len(ours.all_seconds)})",
            ours.seconds <= share * theirs.seconds,
        ))
    for run in (r for r in results.sync if r.profile == "polite" and not r.failure and r.contender == "pipeline"):
        found.append(Target(f"polite {run.scenario}: {run.contender} never more than 1 request to the source in any second",
                            f"peak {run.peak_per_second} over {len(run.all_seconds)} repetition(s)",
                            run.peak_per_second <= 1))
    if results.copy:
        copy = results.copy
        full_size = copy.size >= 1024 * MiB
        found.append(Target(
            f"copying a {_mib(copy.size)} file{'' if full_size else ' (quick mode; the target is 1 GiB)'}: "
            "copy step's peak memory < 100 MB",
            f"{copy.copy_rss / MB:.1f} MB RSS added by the copy (tracemalloc peak {copy.tracemalloc_peak / MB:.1f} MB; "
            f"process peak {copy.peak_rss / MB:.1f} MB)",
            max(copy.copy_rss, copy.tracemalloc_peak) < COPY_MEMORY_LIMIT,
        ))
    if results.analytics:
        base = results.analytics[0]
        found.append(Target(
            "analytics ≤ half the time of pandas (fresh process each, imports included)",
            f"{base.pipeline_seconds:.2f} s vs pandas {base.pandas_seconds:.2f} s ({base.ratio:.2f}× pandas)",
            base.ratio <= 0.5,
        ))
        if len(results.analytics) > 1:
            big = results.analytics[1]
            found.append(Target(
                f"analytics memory bounded on a {big.label} input: peak RSS under the Analytics function's "
                f"MemorySize ({results.analytics_memory_limit} MB)",
                f"{big.pipeline_peak_rss / MB:.0f} MB at {big.input_bytes / MB:.0f} MB input "
                f"({base.pipeline_peak_rss / MB:.0f} MB at {base.input_bytes / MB:.1f} MB); pandas {big.pandas_peak_rss / MB:.0f} MB",
                big.pipeline_peak_rss < results.analytics_memory_limit * MB,
            ))
    boto3 = next((r for r in results.import_references if r.module == "boto3"), None)
    for item in results.imports:
        found.append(Target(
            f"cold import of {item.module} < {IMPORT_LIMIT_MS} ms",
            f"{item.median_ms:.0f} ms median of {item.runs} (min {item.min_ms:.0f} ms)"
            + (f"; {item.own_ms:.0f} ms of it once boto3, urllib3 and Powertools are loaded" if item.own_ms is not None else "")
            + (f"; boto3 alone {boto3.median_ms:.0f} ms" if boto3 else ""),
            item.median_ms < IMPORT_LIMIT_MS,
        ))
    if results.local_runner:
        for ratio in results.local_runner.ratios():
            if ratio.rate == RATES[0][0]:
                found.append(Target(
                    f"local runner {ratio.case} run, whole process ≤ {ratio.goal:.0%} of main {BASELINE_COMMIT}'s "
                    f"(real `pr` files, {ratio.rate})",
                    f"{ratio.new:.2f} s vs {ratio.old:.2f} s ({ratio.value:.0%}; medians of "
                    f"{results.local_runner.repeat})", ratio.met))
    if results.many:
        many = results.many
        as_is = next((r for r in many.runs if r.contender == "pipeline" and r.scenario == "cold" and not r.label), None)
        finished = next((r for r in many.runs if r.contender == "pipeline" and r.scenario == "cold" and not r.failure), None)
        if as_is:
            found.append(Target(
                f"a {many.files:,}-file listing runs through the state machine (local engine, MaxConcurrency "
                f"{results.setup['concurrency']})",
                f"failed: {_one_line(as_is.failure, 160)}" if as_is.failure else f"{as_is.seconds:.0f} s",
                not as_is.failure and as_is.correct,
            ))
        if finished:
            state, largest = largest_payload(finished)
            found.append(Target(
                f"{many.files:,}-file listing: every state's input/output < 256 KB",
                f"largest {largest:,} bytes ({state})" + (f"; measured on the run \"{finished.label}\"" if finished.label else ""),
                largest < STATE_PAYLOAD_LIMIT,
            ))
    return found


def target_lines(results: Results) -> list[str]:
    lines = ["| target | measured | result |", "|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | **{t.verdict}** |" for t in targets(results)]
    return lines


def many_files_lines(many: ManyFilesResult) -> list[str]:
    lines = [
        f"Source: pr.data.0.Current and {many.files - 1:,} files of 100–400 bytes, {many.latency * 1000:.0f} ms latency per request.",
        "",
        "| contender | scenario | wall time | source requests (listing / HEAD / GET) | S3 requests | mirrored | largest state payload | seconds per state |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    for run in many.runs:
        payload = "—"
        if run.contender == "pipeline" and not run.failure:
            state, largest = largest_payload(run)
            payload = f"{largest:,} B ({state})"
        seconds = f"**failed**: {_one_line(run.failure, 200)}" if run.failure else f"{run.seconds:.1f} s"
        lines.append(
            f"| {run.title} | {run.scenario} | {seconds} | {_source_total(run)} ({run.source['listing']} / "
            f"{run.source['head']} / {run.source['get']}) | {run.s3['requests']:,} | {'all' if run.correct else '**not all**'} | {payload} | "
            + ", ".join(f"{k} {v:.1f}" for k, v in run.detail.get("state_seconds", {}).items() if v >= 0.1) + " |"
        )
    cold = next((r for r in many.runs if r.contender == "pipeline" and r.scenario == "cold" and not r.failure), None)
    if cold:
        lines += ["", f"Largest payload per state ({cold.title}, cold):", "",
                  "| state or task | largest input/output | event |", "|---|---:|---|"]
        by_state = sorted(cold.detail["payloads"]["by_state"].items(), key=lambda kv: -kv[1]["bytes"])
        for state, info in by_state[:12]:
            lines.append(f"| {state.rsplit(':', 1)[-1]} | {info['bytes']:,} B | {info['event']}.{info['field']} |")
        items = cold.detail.get("map_item_payloads", {})
        if items:
            lines.append(f"| CopyFile (each of {items['items']:,} Map items; moto writes no child-execution history, "
                         f"so read from the Lambda events) | {items['largest_input_bytes']:,} B in, "
                         f"{items['largest_output_bytes']:,} B out | Lambda event / result |")
        lines += ["", f"The execution history has {cold.detail['history_events']:,} events. Seconds per state "
                  f"({cold.title}, cold): " + ", ".join(f"{k} {v:.1f}" for k, v in cold.detail["state_seconds"].items() if v >= 0.05),
                  "", *invocation_lines(cold)]
    return lines


def invocation_lines(run: SyncRun) -> list[str]:
    stats = run.detail.get("invocations", {})
    if not stats:
        return []
    lines = ["| function | invocations | errors | seconds in the handler: total / mean / max |", "|---|---:|---:|---|"]
    for name, s in stats.items():
        lines.append(f"| {name} | {s['count']:,} | {s['errors']} | {s['seconds']:.2f} / {s['mean_seconds']:.3f} / "
                     f"{s['max_seconds']:.2f} |")
    return lines


def render_markdown(results: Results) -> str:
    setup, machine = results.setup, results.machine
    out = [
        "# Benchmark results",
        "",
        f"`{setup['command']}` ({results.mode} mode) on {machine['date']}; the whole run took "
        f"{results.elapsed / 60:.1f} min. Regenerate with the same command plus `--write-results` (without it a run "
        "writes bench/.last-run.md); see bench/README.md.",
        "",
        "## Targets",
        "",
        *target_lines(results),
        "",
        *(["**Sections that failed** (their targets are missing above): "
           + "; ".join(f"{k}: {_one_line(v, 400)}" for k, v in results.section_errors.items()), ""]
          if results.section_errors else []),
        "## Setup",
        "",
        f"* **Source**: tests/bls_server.py's BLS-like server (IIS-style listing, Content-Length, Last-Modified) on "
        f"127.0.0.1, {setup['latency'] * 1000:.0f} ms added before every answer, "
        + (f"{setup['bandwidth'] / MiB:.0f} MiB/s per response" if setup["bandwidth"] else "unlimited bandwidth")
        + f". It serves byte ranges (206 with Content-Range), as download.bls.gov does, and logs when each request "
        "arrives (the peak per second below). Directory shaped like `pr`: its 12 files at their real sizes (data files "
        f"generated in the real layout, {setup['pr_bytes'] / MiB:.1f} MiB); the large-file profile adds one generated "
        f"file of {_mib(setup['large_bytes'])} (`{setup['large_name']}`). The changed-file scenario appends a row to "
        "`pr.data.0.Current` and gives it a new listing stamp and Last-Modified.",
        f"* **Destination**: SeaweedFS {machine['seaweedfs']} (`weed server`, disk-backed, 127.0.0.1) behind a counting "
        "reverse proxy on 127.0.0.1; every contender writes to its own bucket through the proxy, so S3 requests are "
        "counted the same way for all. Correctness is checked after each run by reading every mirrored object back "
        "(directly, not counted) and comparing SHA-256 with the source.",
        f"* **pipeline**: `python -m bench.pipeline_run`, a fresh process per run: local_runner's LocalEngine "
        f"(moto: Step Functions, Lambda, SQS) running statemachine/pipeline.asl.json with the real handlers, "
        f"CopyConcurrency (the Map's MaxConcurrency) = {setup['concurrency']}. Its S3 clients (the handlers' and the "
        "Distributed Map ItemReader's) use the SeaweedFS endpoint (AWS_ENDPOINT_URL_S3). Polite profile: "
        "SourceRequestsPerSecond 1; the others: 1000 (no practical limit); large-file profile: RangeStreams 4. Time = "
        "the whole process; the execution's span (StartExecution to its end: ListSource, CopyFiles, PruneMirror, "
        "FetchPopulation, Analytics) beside it.",
        f"* **rclone**: `{setup['rclone_version']}`, `rclone sync bls: mirror:<bucket>/bls/pr "
        f"{' '.join(setup['rclone_flags'])}` with an HTTP remote and an S3 remote (provider Other, path style) from "
        "environment variables; it compares size and modification time (its default; over HTTP one HEAD per file). "
        f"Polite profile: plus `{' '.join(setup.get('rclone_polite_flags', []))}`, rclone's own rate limit. Time = the "
        "whole process.",
        f"* **rclone-ranged**: the same plus `{' '.join(setup.get('rclone_ranged_flags', []))}`: rclone reading files from "
        "8 MiB up in byte ranges, several streams per file, as the pipeline's CopyFile does (its default cutoff, "
        "256 MiB, leaves the large file to one stream). The large-file profile's reference.",
        "* **naive**: bench/naive_sync.py (requests + boto3): GET the listing and every file, sequentially, into "
        "memory; delete everything under the prefix; PutObject every file. Wall time = the process.",
        f"* Each profile runs {setup['repeat']} repetition(s); in each, every contender gets a fresh source and a fresh "
        "bucket warmed by one write, and the contenders' order rotates from one repetition to the next. Times are "
        "min / median / max over the repetitions; counts are from the last one (they do not vary); the peak per "
        "second is the largest seen.",
        "",
        "## Machine",
        "",
        *[f"* {k}: {v}" for k, v in machine.items()],
        "",
        "## Sync scenarios",
        "",
    ]
    for scenario in SCENARIOS:
        out.append(f"* **{scenario}**: {SCENARIO_TITLES[scenario]}")
    out += ["", *sync_sections(results)]
    pipeline_runs = [r for r in results.sync if r.contender == "pipeline"]
    if pipeline_runs:
        out += ["Pipeline, seconds per state (last repetition; its engine start-up in brackets):", ""]
        for run in pipeline_runs:
            states = ", ".join(f"{k} {v:.2f}" for k, v in run.detail.get("state_seconds", {}).items() if v >= 0.01)
            out.append(f"* {run.profile} {run.scenario}: {states} (engine start-up "
                       f"{run.detail.get('engine_setup_seconds', 0):.1f} s)")
        cold = _find(results.sync, "pipeline", "cold")
        if cold:
            out += ["", "Pipeline, time inside each handler in the cold run (handlers run concurrently inside the Map; "
                    "the first call of each pays its cold imports):", "", *invocation_lines(cold)]
        out.append("")
    if results.many:
        out += [f"## {results.many.files:,}-file run", "", *many_files_lines(results.many), ""]
    if results.copy:
        c = results.copy
        ops = ", ".join(f"{k} {v}" for k, v in c.s3["operations"].items())
        out += [
            "## Copy step memory",
            "",
            f"`bls_pipeline.copier.copy_file` in a fresh process copying a {_mib(c.size)} generated file from the loopback "
            "source (streamed, no latency or bandwidth limit) to SeaweedFS.",
            "",
            "| measure | value |", "|---|---:|",
            f"| RSS before the copy (interpreter, boto3, handler modules) | {_mib(c.rss_before_copy)} |",
            f"| process peak RSS (VmHWM) | {_mib(c.peak_rss)} |",
            f"| **added by the copy step** (peak − before) | **{_mib(c.copy_rss)}** ({c.copy_rss / MB:.1f} MB) |",
            f"| tracemalloc peak during the copy (second run) | {_mib(c.tracemalloc_peak)} ({c.tracemalloc_peak / MB:.1f} MB) |",
            f"| time | {c.seconds:.1f} s ({c.size / MiB / c.seconds:.0f} MiB/s) |",
            f"| S3 requests | {c.s3['requests']} ({ops}) |",
            "",
        ]
        if c.peak_sites:
            out += ["What tracemalloc found allocated at the highest sampled point (largest first; innermost frame first):",
                    "", "```", *c.peak_sites, "```", ""]
    if results.analytics:
        out += [
            "## Analytics",
            "",
            "The three reports from a data file and the population JSON, each implementation in a fresh process "
            "(`python bench/reports_child.py pipeline|pandas`), wall time from outside, so interpreter start and imports "
            "count. pipeline = `bls_pipeline.analytics.load_reports_from_files`; pandas = `read_csv`, strip, "
            "`groupby`/`merge` (bench/reports_child.py). Both answers are compared. Median of the runs; the larger "
            "input runs once.",
            "",
            "| input | size | pipeline | pandas | pipeline / pandas | peak RSS pipeline | peak RSS pandas | same answers |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for a in results.analytics:
            out.append(f"| {a.label} | {a.input_bytes / MB:.1f} MB | {a.pipeline_seconds:.2f} s | {a.pandas_seconds:.2f} s | "
                       f"{a.ratio:.2f}× | {a.pipeline_peak_rss / MB:.0f} MB | {a.pandas_peak_rss / MB:.0f} MB | "
                       f"{'yes' if a.answers_agree else '**NO**'} |")
        out.append("")
    if results.imports:
        out += [
            "## Handler import times",
            "",
            "`python -X importtime -c 'import <module>'`, PYTHONPATH=functions/, a fresh process each (after one "
            "untimed run that writes the .pyc files).",
            "",
            "The last column but one is the same import in a process that has already imported boto3, urllib3 and "
            "aws_lambda_powertools: what the handler's own code and its other imports add to the SDK floor.",
            "",
            "| module | median | min | once the SDKs are loaded (median) | heaviest direct imports (median cumulative) |",
            "|---|---:|---:|---:|---|",
        ]
        for item in results.imports:
            heavy = ", ".join(f"{n} {ms:.0f} ms" for n, ms in item.heaviest)
            own = "" if item.own_ms is None else f"{item.own_ms:.0f} ms"
            out.append(f"| {item.module} | {item.median_ms:.0f} ms | {item.min_ms:.0f} ms | {own} | {heavy} |")
        for item in results.import_references:
            out.append(f"| *{item.module} alone (reference)* | {item.median_ms:.0f} ms | {item.min_ms:.0f} ms | | |")
        out.append("")
    if results.local_runner:
        out += [*local_runner_lines(results.local_runner), ""]
    if results.tree:
        out += [*tree_lines(results.tree, results.section_errors.get("tree", "")), ""]
    if results.profiles:
        out += ["## Profiles", ""]
        for title, text in results.profiles.items():
            out += [f"### {title}", "", "```", text.rstrip(), "```", ""]
    if results.caveats:
        out += ["## Caveats", "", *[f"* {c}" for c in results.caveats], ""]
    return "\n".join(out)


def failures(results: Results) -> list[str]:
    """What did not succeed in this run: failed sections, and runs that failed (a pipeline execution that did not
    SUCCEED, a contender that exited non-zero or timed out). `python -m bench` exits 1 when there are any. The
    10,000-file run's RecursionError is left out when the recursion-limit rerun (a labelled run) was made."""
    found = [f"section {name}: {error}" for name, error in results.section_errors.items()]
    found += [f"sync {r.profile} {r.scenario} {r.title}: {r.failure}" for r in results.sync if r.failure]
    if results.many:
        rerun = any(r.label for r in results.many.runs)
        found += [f"many {r.scenario} {r.title}: {r.failure}" for r in results.many.runs
                  if r.failure and not (rerun and not r.label and "RecursionError" in r.failure)]
    if results.tree:
        found += [f"tree {r.scenario} {r.contender}: {r.failure}" for r in results.tree.runs if r.failure]
    return found


def render_console(results: Results) -> str:
    lines = ["", "Sync scenarios", *sync_sections(results)] if results.sync else []
    lines += ["", "Targets", *target_lines(results)]
    lines += [f"section {name} FAILED: {error[:500]}" for name, error in results.section_errors.items()]
    if results.many:
        lines += ["", f"{results.many.files:,}-file run", *many_files_lines(results.many)]
    if results.local_runner:
        lines += ["", *local_runner_lines(results.local_runner)[2:]]
    if results.tree:
        lines += ["", *tree_lines(results.tree, results.section_errors.get("tree", ""))]
    return "\n".join(lines)


# -- the local runner's start-up (issue 14) --------------------------------------------------------------------
LOCAL_RUNNER_HEADING = "## Local runner start-up"


def _phase_cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def local_runner_lines(lr: LocalRunnerResult) -> list[str]:
    mib = lr.file_bytes / MiB
    out = [
        LOCAL_RUNNER_HEADING,
        "",
        f"`{lr.command}` on {lr.date}, {lr.repeat} repetition{'s' if lr.repeat != 1 else ''}: this checkout at {lr.revision} against today's main "
        f"before any start-up work, `{lr.baseline}`. Python {lr.python}; load average (1/5/15 min) {lr.load_start} "
        f"at the start, {lr.load_end} at the end. `make bench ARGS=\"--only local-runner --write-results\"` rewrites "
        "only this section; see bench/README.md.",
        "",
        "`python -m local_runner --contact-email … --source-url … --population-url … --state-dir … "
        "--allow-private-source` as its users run it (this checkout also with `--timings`), a fresh process each, with "
        "the checkout as working directory and the same interpreter (the bench venv) for both; time = the whole process, "
        "from spawn to exit. The baseline is a `git worktree add --detach` of its commit in the scratch directory; an "
        "untimed warm-up run of each under `python -v` checks that it imports only its own bls_pipeline / local_runner "
        "code (" + ", ".join(f"{name}: {count} files" for name, count in lr.imports_checked.items())
        + ") and writes the .pyc files.",
        "",
        f"Source: the real `pr` files ({lr.files} files, {mib:.1f} MiB: the 2026-08-06 snapshot at its listing stamps, "
        "with pr.contacts and pr.txt from the 2024 snapshot, which the 2026 crawl skipped) on a loopback BLS-like "
        f"server, {lr.latency * 1000:.0f} ms added before every answer, "
        + (f"{lr.bandwidth / MiB:.0f} MiB/s per response" if lr.bandwidth else "unlimited bandwidth")
        + "; it never blocks (max_requests_per_second None; the peak per second is counted instead). The real "
        "DataUSA population JSON on a second loopback server (another host, as DataUSA is). **cold**: a fresh state "
        "directory; **no-op**: a second run on the same state directory, nothing changed (one source request, the "
        "listing; checked). Each repetition: both contenders in turn, the order rotating, each cold then no-op.",
        "",
        f"Rates: **{RATES[0][0]}** is the runner's default (1 request per second to the source and to the population "
        "API), as its users run it against BLS: the headline. **1000/s** (`--source-requests-per-second 1000 "
        "--population-requests-per-second 1000`) isolates the runner's own start-up and overhead from the politeness "
        "pacing, which both contenders apply the same way (slots 1.15 s apart in the baseline, 1.2 s in this checkout).",
        "",
        "| contender | case | rate | whole process, min / **median** / max | source requests | peak requests in any 1 s "
        "| imports | engine start | execution | exit | whole − phases |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in lr.rows:
        phases = [row.phase_median(p) for p in PHASES]
        rest = "—" if None in phases else f"{row.median() - sum(phases):.2f} s"
        out.append(f"| {row.contender} | {row.case} | {row.rate} | {_spread(row.seconds)} | "
                   f"{statistics.median(row.source_requests):.0f} | {row.peak_per_second} | "
                   + " | ".join(_phase_cell(v) for v in phases) + f" | {rest} |")
    out += ["", f"Phases: medians of `--timings` ({THIS} only; the baseline has no such flag). imports: from the "
            "process's start (the kernel's clock tick) until the engine's modules are loaded; engine_start: moto, the "
            "functions and the state machine created, the state directory loaded; execution: StartExecution to its "
            "end; exit: saving the state directory, the reports, stopping the engine. The last column is what the "
            "phases do not cover, spawning the process and its exit (a difference of medians, so it can come out "
            "slightly negative).", "",
            "Goals (issue 14): this checkout's whole process, median, against the baseline's in the same run:", ""]
    for ratio in lr.ratios():
        verdict = "met" if ratio.met else "MISSED"
        label = "headline" if ratio.rate == RATES[0][0] else "runner overhead only"
        out.append(f"* {ratio.case}, {ratio.rate} ({label}): {ratio.new:.2f} s / {ratio.old:.2f} s = "
                   f"**{ratio.value:.0%}**; goal ≤ {ratio.goal:.0%}: **{verdict}**")
    out += ["", "A no-op run makes one request to each host, so the pacing does not make it wait (the cold run's "
            "last slot has passed by then): its two rows do the same work, and the difference between them is this "
            "shared machine's noise, not the pacing."]
    return out


def splice_section(document: str, section: list[str], heading: str = LOCAL_RUNNER_HEADING) -> str:
    """`document` with its `heading` section (up to the next `## ` heading) replaced by `section`, or with
    `section` inserted before the Profiles or Caveats section (else at the end); everything else kept as it was."""
    lines = document.rstrip("\n").split("\n")
    block = [*section, ""]
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        at = next((i for i, line in enumerate(lines) if line.strip() in ("## Profiles", "## Caveats")), None)
        if at is None:
            lines, at = [*lines, ""], len(lines) + 1
        return "\n".join(lines[:at] + block + lines[at:]).rstrip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + block + lines[end:]).rstrip("\n") + "\n"


# -- the BLS tree (issue 17) -----------------------------------------------------------------------------------
TREE_HEADING = "## BLS tree: 60 surveys, 3,000 files"


def tree_heading(mode: str, surveys: int = 60, files: int = 3000) -> str:
    """One section per mode, so that a quick run and a full run each keep their numbers in RESULTS.md; a smaller
    tree (a smoke run, --tree-surveys / --tree-files) is a section of its own."""
    if (surveys, files) == (60, 3000):
        return f"{TREE_HEADING} ({mode} mode)"
    return f"## BLS tree: {surveys} surveys, {files:,} files, a smoke run ({mode} mode)"


def _tree_source(run: TreeRun) -> str:
    s = run.source
    total = s["tree_listing"] + s["survey_listing"] + s["head"] + s["get"] + s["other"]
    extra = f" + {s['other']} other" if s["other"] else ""
    refused = f"; **{s['refused']} refused**" if s.get("refused") else ""
    return f"{total:,} ({s['tree_listing']} / {s['survey_listing']} / {s['head']:,} / {s['get']:,}{extra}){refused}"


def _catalog_cell(run: TreeRun) -> str:
    if not run.catalog_seconds:
        return "—"
    calls = "/".join(str(c) for c in sorted(set(run.catalog_calls)))
    return f"{statistics.median(run.catalog_seconds):.1f} s; {calls}"


def catalog_lines(tree: TreeResult) -> list[str]:
    """How much of each pipeline run is the catalog step: CatalogSurveys' spans in the execution history, summed over
    its calls (the state machine calls it again while surveys remain), against the execution and the whole process."""
    parts = []
    for scenario in ("cold", "noop", "changed"):
        run = tree.run("pipeline", scenario)
        if run is None or run.failure or not run.catalog_seconds or not run.state_seconds:
            continue
        catalog, execution = statistics.median(run.catalog_seconds), statistics.median(run.state_seconds)
        calls = "/".join(str(c) for c in sorted(set(run.catalog_calls)))
        parts.append(f"{scenario} {catalog:.1f} s in {calls} call(s): {catalog / execution:.0%} of the execution "
                     f"({execution:.1f} s), {catalog / run.seconds:.0%} of the whole process ({run.seconds:.1f} s)")
    out = []
    if parts:
        out += ["", f"The catalog step ({CATALOG_STATE}: its state's spans in the execution history, entered to exited, "
                "summed over its calls; medians over the repetitions): " + "; ".join(parts) + "."]
    cold = tree.run("pipeline", "cold")
    summary = ((cold.detail.get("output") or {}).get("catalog") if cold and not cold.failure else None) or {}
    if summary:
        samples = summary.get("warning_samples") or []
        out += ["", f"What the catalog step said of the cold run (the execution's output, last call): "
                f"{summary.get('surveys', '?')} survey(s), {summary.get('tables_created', '?')} table(s) created and "
                f"{summary.get('views', '?')} view(s) in that call, {summary.get('failures', 0)} failure(s), "
                f"{summary.get('warnings', 0)} warning(s)"
                + (": " + "; ".join(f"`{_one_line(w, 200)}`" for w in samples) if samples else "") + "."]
    return out


def tree_lines(tree: TreeResult, section_error: str = "") -> list[str]:
    rate = f"{tree.rate:g} requests/s"
    largest = ", ".join(f"{name} {size / MB:,.1f} MB" for name, size in tree.largest)
    out = [
        tree_heading(tree.mode, tree.surveys, tree.files),
        "",
        f"`{tree.command}` ({tree.mode} mode) on {tree.date}; the section took {tree.elapsed / 60:.1f} min, "
        f"{tree.repeat} repetition{'s' if tree.repeat != 1 else ''}. "
        + (f"A run of this section alone with `--write-results` rewrites only this section of RESULTS.md (the "
           f"{tree.mode} mode's)" if (tree.surveys, tree.files) == (60, 3000) else
           "A smoke run of a smaller tree (`--tree-surveys`, `--tree-files`), never written into RESULTS.md")
        + "; see bench/README.md. Measured, not targets.",
        "",
        f"* **Source**: a loopback BLS time.series tree (bls_loopback BlsTree, one port) of {tree.surveys} surveys and "
        f"{tree.files:,} files, {tree.total_bytes / MB:,.1f} MB, laid out by bench/tree_layout.py "
        f"(scale {tree.scale:g}: " + ("the real sizes of the largest files" if tree.scale == 1 else
                                      f"the largest files at {tree.scale:g} of their real sizes")
        + f"; largest {largest}); bodies generated while they are sent, never held in memory. "
        f"{tree.latency * 1000:.0f} ms added before every answer, "
        + (f"{tree.bandwidth / MiB:.0f} MiB/s per response" if tree.bandwidth else "unlimited bandwidth")
        + ". It never blocks; every request to the host is logged with its arrival (the peak per second below). The "
        "population API is another loopback host, not counted. **changed**: one data file of `cu` gets 1,000 more "
        "bytes, other bytes and a new listing stamp.",
        "* **Headers**: every file starts with the first line its kind has in the real `pr` directory (data, series "
        "and mapping files a tab-separated header row, which the catalog step makes a table of; documentation a line "
        "of text), and three are odd **on purpose**, as a mirror of LABSTAT must survive: "
        + ("; ".join(f"{what} in `{name}`" for what, name in tree.hostile.items()) or "none recorded")
        + " (bench/tree_layout.py). A pipeline execution that does not succeed is an **ERROR** row with its cause "
        "and no numbers.",
        f"* **Rate**: both contenders at **{rate}** to the source: the pipeline with SourceRequestsPerSecond "
        f"{tree.rate:g} (its own pacing, across every survey and copy), rclone with `--tpslimit {tree.rate:g}`, which "
        "paces every request rclone makes, its S3 requests too (it has no per-remote rate); the pipeline paces only "
        "the source and the population API. Not BLS's 1 request/s: 3,000 files at 1/s is about 50 minutes per cold "
        "run and contender.",
        f"* **pipeline**: `python -m bench.pipeline_run` (local_runner's engine, moto for Step Functions / Lambda / "
        f"SQS, S3 on SeaweedFS through the counting proxy), SourceTreeUrl = the tree, **Surveys='*'** (so it also "
        f"reads the tree listing), CopyConcurrency {tree.concurrency}.",
        f"* **rclone**: `rclone sync bls: mirror:<bucket>/bls {' '.join(tree.rclone_flags)}`, an HTTP remote at the "
        "tree's root (rclone descends into every survey directory) and an S3 remote; size and modification time "
        "compared (one HEAD per file over HTTP).",
        "* Each contender in its own process, whole process timed; a fresh bucket per contender and repetition, the "
        "order rotating. Counts are from the last repetition; the peak per second is the largest seen. Correctness "
        "after every run, read back directly from SeaweedFS: every file present with its size and nothing else under "
        "bls/, and SHA-256 as the column says.",
        "",
        "| scenario | contender | whole process, min / **median** / max | vs rclone (median) | of which the "
        f"execution (median) | of which {CATALOG_STATE} (median; calls) "
        "| source requests (tree listing / survey listings / HEAD / GET) | peak requests in any 1 s "
        "| bytes downloaded | S3 requests | S3 requests by operation | largest state payload | correct |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|---|",
    ]
    slower = []
    for scenario in ("cold", "noop", "changed"):
        reference = tree.run("rclone", scenario)
        for run in (r for r in tree.runs if r.scenario == scenario):
            if run.failure:
                # No numbers for a run that did not succeed: they would measure something other than a mirror.
                out.append(f"| {scenario} | {run.contender} | **ERROR**: {_one_line(run.failure, 600)} "
                           "| | | | | | | | | | **NO** |")
                continue
            payload = "—"
            if run.detail.get("payloads"):
                state, size = largest_payload(run)
                payload = f"{size:,} B ({state})"
            ops = ", ".join(f"{k} {v:,}" for k, v in run.s3["operations"].items())
            execution = f"{statistics.median(run.state_seconds):.1f} s" if run.state_seconds else "—"
            catalog = _catalog_cell(run)
            ratio = _ratio(run.seconds, reference.seconds) if reference and not reference.failure and run is not reference else "—"
            out.append(
                f"| {scenario} | {run.contender} | {_spread(run.all_seconds)} | {ratio} | {execution} | {catalog} | "
                f"{_tree_source(run)} | {run.peak_per_second} | {_mib(run.source['bytes'])} | {run.s3['requests']:,} | "
                f"{ops} | {payload} | {'yes' if run.correct else '**NO**'}: {run.checked} |")
            if run.contender == "pipeline" and reference and not reference.failure and run.seconds > reference.seconds:
                slower.append(f"{scenario} ({run.seconds:.1f} s vs {reference.seconds:.1f} s)")
    failed = [r for r in tree.runs if r.failure]
    if failed:
        out += ["", "**ERROR: " + ", ".join(f"{r.contender} {r.scenario}" for r in failed) + " did not succeed**, so "
                "their rows have no numbers; the cause is in each row. The section measured no complete run of them."]
    if section_error:
        out += ["", f"**The section failed**: {_one_line(section_error, 600)}"]
    out += catalog_lines(tree)
    out += ["", "The pipeline is **slower than rclone** (median whole process) in: " + ", ".join(slower) + "."
            if slower else "The pipeline's median whole process is not slower than rclone's in any scenario measured."]
    for run in tree.runs:
        if not run.failure and run.peak_per_second < 0.8 * tree.rate and run.scenario == "cold":
            out += ["", f"The {run.contender}'s cold run never reached the rate: at most {run.peak_per_second} source "
                    f"requests in any second against {tree.rate:g} allowed, so its time is its own work, not the "
                    "pacing."]
    cold = tree.run("pipeline", "cold")
    if cold and cold.detail.get("payloads"):
        out += ["", "Largest payload per state (pipeline, cold; Step Functions' limit is 256 KiB):", "",
                "| state or task | largest input/output | event |", "|---|---:|---|"]
        by_state = sorted(cold.detail["payloads"]["by_state"].items(), key=lambda kv: -kv[1]["bytes"])
        for state, info in by_state[:8]:
            out.append(f"| {state.rsplit(':', 1)[-1]} | {info['bytes']:,} B | {info['event']}.{info['field']} |")
        items = cold.detail.get("map_item_payloads", {})
        if items:
            out.append(f"| CopyFile (each of {items['items']:,} Map items; moto writes no child-execution history, so "
                       f"read from the Lambda events) | {items['largest_input_bytes']:,} B in, "
                       f"{items['largest_output_bytes']:,} B out | Lambda event / result |")
        out += ["", f"Execution history: {cold.detail.get('history_events', 0):,} events. Seconds per state (cold, last "
                "repetition): " + ", ".join(f"{k} {v:.1f}" for k, v in cold.detail.get("state_seconds", {}).items()
                                            if v >= 0.05)
                + f"; engine start-up {cold.detail.get('engine_setup_seconds', 0):.1f} s.", "", *invocation_lines(cold)]
    out += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in tree.machine.items()) + "."]
    return out

