"""What the local runner shows while the state machine runs, and the summary at the end."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TextIO

from .engine import ExecutionResult, Invocation

LABEL_WIDTH = len("FetchPopulation") + 1
SHORT_MESSAGE = 100  # characters of an error shown for an attempt that will be retried


def human_bytes(count: int | float) -> str:
    """Binary units, named as such: 1 KiB is 1,024 bytes."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _short(text: str, limit: int = SHORT_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Progress:
    """retries: error name -> how many times the state machine retries it (as the ASL's Retry says)."""

    def __init__(self, out: TextIO, retries: dict[str, int] | None = None):
        self.out = out
        self.tty = out.isatty()
        self.retries = retries or {}
        self._lock = threading.Lock()
        self.total_files = 0
        self.total_bytes = 0
        self.done_files = 0
        self.done_bytes = 0
        self.failed_attempts = 0
        self._attempts: dict[tuple[str, str], list[str]] = {}  # (step, item) -> messages of its failed attempts
        self._line_open = False
        self.queue_handled = False

    def start(self, source_url: str, surveys: str, run_id: str) -> None:
        self._print(f"Run {run_id}")
        which = "every survey the tree lists" if surveys.strip() == "*" else f"surveys {surveys}"
        self._step("ListSource", f"reading {source_url}: {which}")

    def on_invocation(self, call: Invocation) -> None:
        with self._lock:
            handler = getattr(self, f"_on_{call.function}", None)
            if handler is not None:
                handler(call)

    def _on_ListSourceFunction(self, call: Invocation) -> None:
        if call.error_type:
            self._failure("ListSource", "listing", call)
            return
        r = call.result
        self.total_files, self.total_bytes = r["to_copy"], r["to_copy_bytes"]
        surveys = r.get("surveys", 1)
        failed = f" ({r['failed_surveys']} not listed: see the error at the end)" if r.get("failed_surveys") else ""
        self._step(
            "ListSource",
            (f"{plural(surveys, 'survey')}{failed}, " if surveys != 1 or failed else "")
            + f"{plural(r['listed'], 'file')} listed: {r['to_copy']} to copy ({human_bytes(r['to_copy_bytes'])}), "
            f"{r['unchanged']} unchanged, {r['to_delete']} to delete",
        )
        for refused in r.get("refused_names", []):
            self._step("ListSource", f"not mirrored: the listed name {refused}")
        if self.total_files:
            self._step("CopyFiles", f"copying {plural(self.total_files, 'file')}")

    def _on_CopyFileFunction(self, call: Invocation) -> None:
        file = call.event.get("file", {})
        name = f"{file['survey']}/{file.get('name', '?')}" if file.get("survey") else file.get("name", "?")
        if call.error_type:
            self.failed_attempts += 1
            self._failure("CopyFiles", name, call)
            return
        self.done_files += 1
        self.done_bytes += call.result.get("bytes", 0)
        line = (
            f"{'CopyFiles':<{LABEL_WIDTH}}{self.done_files}/{plural(self.total_files, 'file')}, "
            f"{human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)}  ({name})"
        )
        if self.tty:
            self.out.write("\r\033[K" + _printable(line))
            self.out.flush()
            self._line_open = True
            return
        step = max(1, self.total_files // 20)
        if self.done_files == self.total_files or self.done_files % step == 0 or self.total_files <= 50:
            self._print(line)

    def _on_PruneMirrorFunction(self, call: Invocation) -> None:
        if call.error_type:
            self._failure("PruneMirror", "prune", call)
            return
        m = call.result["mirror"]
        names = ", ".join(m["deleted_files"])
        self._step("PruneMirror", f"deleted {m['deleted']}" + (f": {names}" if names else ""))

    def _on_FetchPopulationFunction(self, call: Invocation) -> None:
        if call.error_type:
            self._failure("FetchPopulation", "population", call)
            return
        r = call.result
        change = "changed, stored; reports come through S3 -> SQS" if r["changed"] else "unchanged"
        self._step("FetchPopulation", f"{r['years']} years ({r['first_year']}-{r['last_year']}), {change}")

    def _on_CatalogSurveysFunction(self, call: Invocation) -> None:
        if call.error_type:
            self._step("CatalogSurveys", f"failed: {_first_cause(call.error_type, call.error_message or '')}")
            return
        r = call.result
        built = (f"built {', '.join(r['rebuilt'])}: {plural(r['tables_created'], 'table')} created, "
                 f"{r['tables_updated']} updated, {plural(r['views'], 'view')}") if r["rebuilt"] else "tables unchanged"
        left = f"; {plural(r['remaining'], 'survey')} left for its next call" if r.get("remaining") else ""
        dropped = f", {plural(r['dropped'], 'table or view')} dropped" if r.get("dropped") else ""
        self._step("CatalogSurveys", f"SQL catalog of {plural(r['surveys'], 'survey')}: {built}{dropped}; population "
                                     f"table {r['population']}, report queries {r['named_queries']}{left}")
        if r.get("remaining"):
            return  # the last call tells the warnings and failures of them all
        for warning in r.get("warning_samples", []):
            self._print(f"{'':<{LABEL_WIDTH}}warning: {warning}")
        more = r.get("warnings", 0) - len(r.get("warning_samples", []))
        if more > 0:
            self._print(f"{'':<{LABEL_WIDTH}}and {plural(more, 'more warning')} (the run manifest's catalog section)")
        for failure in r.get("failed", []):
            self._print(f"{'':<{LABEL_WIDTH}}failed: survey {failure['survey']}: {failure['error']}: {failure['message']}")

    def _on_AnalyticsFunction(self, call: Invocation) -> None:
        via = "(SQS message)" if "Records" in call.event else "(state machine)"
        if call.error_type:
            self._step("Analytics", f"{via} failed: {_first_cause(call.error_type, call.error_message or '')}")
            return
        result = call.result or {}
        failures = result.get("batchItemFailures") if "Records" in call.event else None
        if failures:
            self._step("Analytics", f"{via} {plural(len(failures), 'message')} failed; see --verbose")
        elif "Records" in call.event:
            self.queue_handled = True  # what it did is not in a batch response: see queue_outcome
        elif result.get("skipped"):
            self._step("Analytics", f"{via} no new reports: {result['skipped']}")
        else:
            self._step("Analytics", f"{via} reports written")

    def queue_outcome(self, skipped: str | None) -> None:
        """What the S3 -> SQS analytics did, known from S3 once the run is over (skipped: why no reports)."""
        self._step("Analytics", f"(SQS message) no new reports: {skipped}" if skipped else "(SQS message) reports written")

    def _failure(self, step: str, item: str, call: Invocation) -> None:
        """One line per failed attempt: short while the state machine will retry, the whole error at the end."""
        self._end_line()
        attempts = self._attempts.setdefault((step, item), [])
        message = f"{call.error_type}: {call.error_message}"
        allowed = self.retries.get(call.error_type or "", 0)
        label = "" if item in ("listing", "prune", "population") else f"{item}: "
        if len(attempts) < allowed:
            what = "the same error" if attempts and attempts[-1] == message else _short(message)
            attempts.append(message)
            self._step(step, f"{label}attempt {len(attempts)} of {allowed + 1} failed ({what}); retrying")
            return
        tries = f" after {plural(len(attempts) + 1, 'attempt')}" if attempts else ""
        self._step(step, f"{label}failed{tries}: {message}")

    def show_reports(self, reports: dict[str, list[dict]], vintage: dict, location: str) -> None:
        if not reports:
            return
        self._print("")
        stats = (reports.get("population_stats") or [{}])[0]
        if stats and stats.get("stddev") is None:
            missing = ", ".join(map(str, stats.get("missing_years") or [])) or "none"
            self._print(
                f"US population {stats['first_year']}-{stats['last_year']}: only {stats['years_used']} year(s) in the "
                f"population data (missing: {missing}); a mean and standard deviation need at least two"
            )
        elif stats:
            self._print(
                f"US population {stats['first_year']}-{stats['last_year']}: mean {stats['mean']:,.2f}, "
                f"standard deviation {stats['stddev']:,.2f} ({stats['stddev_kind']}), {stats['years_used']} years"
            )
        best = reports.get("best_year_by_series") or []
        if best:
            self._print(f"Best year by series (largest sum of Q01-Q04), {len(best)} series, first 10:")
            for row in best[:10]:
                self._print(f"  {row['series_id']:<14} {row['year']}  {row['value']}")
        joined = reports.get("series_population") or []
        if joined:
            self._print(f"{joined[0]['series_id']} {joined[0]['period']} by year, with US population:")
            for row in joined:
                population = "" if row["Population"] is None else f"{row['Population']:,}"
                self._print(f"  {row['year']}  {row['value']:>8}  {population}")
        if vintage.get("bad_rows"):
            lines = ", ".join(map(str, vintage.get("bad_row_lines") or []))
            self._print(f"Skipped {plural(vintage['bad_rows'], 'bad row')} of the data file (lines {lines}"
                        f"{', …' if vintage['bad_rows'] > len(vintage.get('bad_row_lines') or []) else ''})")
        self._print(f"Reports (JSON and CSV): {location}")

    def show_unchanged_reports(self, location: str) -> None:
        self._print(f"Reports unchanged: {location}")

    def finish(self, result: ExecutionResult, seconds: float, mirror_dir: Path) -> None:
        self._end_line()
        mirror = next(
            (c.result["mirror"] for c in result.invocations if c.function == "PruneMirrorFunction" and not c.error_type),
            None,
        )
        if mirror is not None:
            self._print("")
            self._print(
                f"{result.status} in {seconds:.1f} s: copied {mirror['copied']} ({human_bytes(mirror['copied_bytes'])}), "
                f"unchanged {mirror['unchanged']}, deleted {mirror['deleted']}, failed {mirror['failed']}"
                + (f"; surveys failed {mirror['failed_surveys']} of {mirror['surveys']}"
                   if mirror.get("failed_surveys") else "")
            )
            self._print(f"Mirror on disk: {mirror_dir}/")
            return
        copies = [c for c in result.invocations if c.function == "CopyFileFunction" and not c.error_type]
        if not copies:
            self._print(f"{result.status} after {seconds:.1f} s; nothing was changed.")
            return
        copied = sum(c.result.get("bytes", 0) for c in copies)
        self._print("")
        self._print(f"{result.status} after {seconds:.1f} s: copied {len(copies)} ({human_bytes(copied)}) before it "
                    "failed; nothing was deleted")
        self._print(f"Mirror on disk: {mirror_dir}/")

    def interrupted(self, seconds: float, copied: int, mirror_dir: Path | None) -> None:
        self._end_line()
        if mirror_dir is None:
            self._print(f"Interrupted after {seconds:.1f} s, before the run started; nothing was changed.")
            return
        self._print(f"Interrupted after {seconds:.1f} s: the {plural(copied, 'file')} copied so far are kept in "
                    f"{mirror_dir}/; the next run copies the rest.")

    def _end_line(self) -> None:
        if self._line_open:
            self.out.write("\n")
            self.out.flush()
            self._line_open = False

    def _step(self, step: str, text: str) -> None:
        self._print(f"{step:<{LABEL_WIDTH}}{text}")

    def _print(self, line: str) -> None:
        """One line to the terminal; control characters from the source (a name, an error page) are escaped."""
        print(_printable(line), file=self.out, flush=True)


def _first_cause(error_type: str, message: str) -> str:
    """Powertools' BatchProcessingError carries each record's traceback: its last line is the cause."""
    if error_type == "BatchProcessingError":
        causes = re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception): .*)$", message, flags=re.MULTILINE)
        if causes:
            return causes[-1]
    return f"{error_type}: {message}"


def _printable(line: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
