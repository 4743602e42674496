"""What the local runner shows while the state machine runs, and the summary at the end."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TextIO

from .engine import ExecutionResult, Invocation


def human_bytes(count: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


class Progress:
    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self._lock = threading.Lock()
        self.total_files = 0
        self.total_bytes = 0
        self.done_files = 0
        self.done_bytes = 0
        self.failed_attempts = 0
        self._line_open = False

    def start(self, source_url: str) -> None:
        self._print(f"ListSource    reading {source_url}")

    def on_invocation(self, call: Invocation) -> None:
        with self._lock:
            handler = getattr(self, f"_on_{call.function}", None)
            if handler is not None:
                handler(call)

    def _on_ListSourceFunction(self, call: Invocation) -> None:
        if call.error_type:
            self._print(f"ListSource    failed: {call.error_type}: {call.error_message}")
            return
        r = call.result
        self.total_files, self.total_bytes = r["to_copy"], r["to_copy_bytes"]
        self._print(
            f"ListSource    {r['listed']} files listed: {r['to_copy']} to copy ({human_bytes(r['to_copy_bytes'])}), "
            f"{r['unchanged']} unchanged, {r['to_delete']} to delete"
        )
        for refused in r.get("refused_names", []):
            self._print(f"ListSource    not mirrored: the listed name {refused}")
        if self.total_files:
            self._print(f"CopyFiles     copying {self.total_files} files")

    def _on_CopyFileFunction(self, call: Invocation) -> None:
        name = call.event.get("file", {}).get("name", "?")
        if call.error_type:
            self.failed_attempts += 1
            self._end_line()
            self._print(f"CopyFiles     {name}: {call.error_type}: {call.error_message}")
            return
        self.done_files += 1
        self.done_bytes += call.result.get("bytes", 0)
        line = (
            f"CopyFiles     {self.done_files}/{self.total_files} files, "
            f"{human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)}  ({name})"
        )
        if self.tty:
            self.out.write("\r\033[K" + line)
            self.out.flush()
            self._line_open = True
            return
        step = max(1, self.total_files // 20)
        if self.done_files == self.total_files or self.done_files % step == 0 or self.total_files <= 50:
            self._print(line)

    def _on_PruneMirrorFunction(self, call: Invocation) -> None:
        self._end_line()
        if call.error_type:
            self._print(f"PruneMirror   failed: {call.error_type}: {call.error_message}")
            return
        m = call.result["mirror"]
        names = ", ".join(m["deleted_files"])
        self._print(f"PruneMirror   deleted {m['deleted']}" + (f": {names}" if names else ""))

    def _on_FetchPopulationFunction(self, call: Invocation) -> None:
        if call.error_type:
            self._print(f"FetchPopulation failed: {call.error_type}: {call.error_message}")
            return
        r = call.result
        change = "changed, stored; reports come through S3 -> SQS" if r["changed"] else "unchanged"
        self._print(f"FetchPopulation {r['years']} years ({r['first_year']}-{r['last_year']}), {change}")

    def _on_AnalyticsFunction(self, call: Invocation) -> None:
        via = "SQS message" if "Records" in call.event else "state machine"
        if call.error_type:
            self._print(f"Analytics     ({via}) failed: {call.error_type}: {call.error_message}")
            return
        failures = (call.result or {}).get("batchItemFailures") if "Records" in call.event else None
        if failures:
            self._print(f"Analytics     ({via}) {len(failures)} message(s) failed; see --verbose")
            return
        self._print(f"Analytics     ({via}) reports written")

    def show_reports(self, reports: dict[str, list[dict]], location: str) -> None:
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
        self._print(f"Reports (JSON and CSV): {location}")

    def finish(self, result: ExecutionResult, seconds: float, mirror_dir: Path, saved: dict | None) -> None:
        self._end_line()
        mirror = next(
            (c.result["mirror"] for c in result.invocations if c.function == "PruneMirrorFunction" and not c.error_type),
            None,
        )
        if mirror is None:
            self._print(f"{result.status} after {seconds:.1f} s; nothing was changed.")
            return
        self._print("")
        self._print(
            f"{result.status} in {seconds:.1f} s: copied {mirror['copied']} ({human_bytes(mirror['copied_bytes'])}), "
            f"unchanged {mirror['unchanged']}, deleted {mirror['deleted']}, failed {mirror['failed']}"
        )
        self._print(f"Mirror on disk: {mirror_dir}/")

    def _end_line(self) -> None:
        if self._line_open:
            self.out.write("\n")
            self.out.flush()
            self._line_open = False

    def _print(self, line: str) -> None:
        """One line to the terminal; control characters from the source (a name, an error page) are escaped."""
        print("".join(c if c.isprintable() else repr(c)[1:-1] for c in line), file=self.out, flush=True)
