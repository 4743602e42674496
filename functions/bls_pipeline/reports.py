"""The three reports, computed from the BLS data file and the DataUSA population; no AWS here.

The data file is read once, line by line, so memory stays bounded by the number of (series, year) pairs.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from .population import YearPopulation

QUARTERS = frozenset({"Q01", "Q02", "Q03", "Q04"})  # pr.period: Q05 is the annual average, not a quarter
REQUIRED_COLUMNS = ("series_id", "year", "period", "value")
BAD_ROWS_KEPT = 50


class AnalyticsInputError(Exception):
    """An input file cannot be read as what it should be."""


@dataclass
class BadRow:
    line: int
    reason: str


@dataclass
class Reports:
    population_stats: dict
    best_year_by_series: list[dict]
    series_population: list[dict]
    series_id: str
    period: str
    rows_read: int = 0
    bad_row_count: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)

    def tables(self) -> dict[str, list[dict]]:
        """Each report as rows, in the order the reports are named in the README."""
        return {
            "population_stats": [self.population_stats],
            "best_year_by_series": self.best_year_by_series,
            "series_population": self.series_population,
        }


def compute_reports(
    data_lines: Iterable[bytes | str],
    population: list[YearPopulation],
    series_id: str = "PRS30006032",
    period: str = "Q01",
    stats_years: tuple[int, int] = (2013, 2018),
) -> Reports:
    sums: dict[str, dict[int, Decimal]] = {}
    chosen: dict[int, Decimal] = {}
    bad: list[BadRow] = []
    bad_count = 0
    rows = 0
    lines = iter(data_lines)
    header = _split(next(lines, b""))
    header[0] = header[0].lstrip("\ufeff")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise AnalyticsInputError(
            f"the data file's header {header!r:.120} lacks column(s) {', '.join(missing)}; is it a BLS data file?"
        )
    width = len(header)
    i_series, i_year, i_period, i_value = (header.index(c) for c in REQUIRED_COLUMNS)
    for number, line in enumerate(lines, start=2):
        fields = _split(line)
        if fields == [""]:
            continue
        rows += 1
        problem = None
        if line == OVERLONG_LINE:
            problem = f"the line is longer than {MAX_LINE_BYTES:,} bytes"
        elif len(fields) != width:
            problem = f"{len(fields)} columns, expected {width}"
        else:
            try:
                year = int(fields[i_year])
            except ValueError:
                problem = f"year {fields[i_year]!r} is not a number"
            else:
                try:
                    value = Decimal(fields[i_value])
                    if not value.is_finite():
                        raise InvalidOperation
                except InvalidOperation:
                    problem = f"value {fields[i_value][:40]!r} is not a number"
                else:
                    # adjusted() and the digit count read the literal without the decimal context, which a sum of an
                    # exponent like 1e999999999 would overflow: such a value is a bad row, not the end of the reports.
                    if not MIN_EXPONENT <= value.adjusted() <= MAX_EXPONENT or len(value.as_tuple().digits) > MAX_DIGITS:
                        problem = f"value {fields[i_value][:40]!r} is outside the range of BLS values"
                    elif not MIN_DATA_YEAR <= year <= MAX_DATA_YEAR:
                        problem = f"year {year} is outside {MIN_DATA_YEAR}-{MAX_DATA_YEAR}"
        if problem is not None:
            bad_count += 1
            if len(bad) < BAD_ROWS_KEPT:
                bad.append(BadRow(number, problem))
            continue
        series, row_period = fields[i_series], fields[i_period]
        if row_period in QUARTERS:
            per_year = sums.setdefault(series, {})
            per_year[year] = per_year.get(year, Decimal(0)) + value
        if series == series_id and row_period == period:
            chosen[year] = value
    return Reports(
        population_stats=population_stats(population, *stats_years),
        best_year_by_series=_best_years(sums),
        series_population=_join_population(chosen, population, series_id, period),
        series_id=series_id,
        period=period,
        rows_read=rows,
        bad_row_count=bad_count,
        bad_rows=bad,
    )


MAX_LINE_BYTES = 64 * 1024  # a BLS data row is under 100 bytes
OVERLONG_LINE = b"\x00 line too long \x00\n"


def bounded_lines(chunks: Any, limit: int = MAX_LINE_BYTES) -> Any:
    """Lines (with their ends) from a stream of byte chunks, in time linear in the input (botocore's iter_lines
    re-joins a long line with every chunk). A line longer than `limit` is not held in memory: it is given as
    OVERLONG_LINE, which compute_reports counts as a bad row."""
    pending: list[bytes] = []
    held = 0
    overlong = False
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            piece = chunk[start:end + 1]
            if overlong or held + len(piece) > limit:
                yield OVERLONG_LINE
            else:
                yield b"".join(pending) + piece
            pending, held, overlong = [], 0, False
            start = end + 1
        rest = chunk[start:]
        if rest and not overlong:
            if held + len(rest) > limit:
                pending, held, overlong = [], 0, True
            else:
                pending.append(rest)
                held += len(rest)
    if overlong:
        yield OVERLONG_LINE
    elif pending:
        yield b"".join(pending)


# BLS values are indexes, rates and levels: far from 10^15, and given to a few decimals. Anything beyond these is a
# corrupted row, counted as bad.
MIN_EXPONENT, MAX_EXPONENT, MAX_DIGITS = -20, 14, 34
MIN_DATA_YEAR, MAX_DATA_YEAR = 1800, 2200


def population_stats(population: list[YearPopulation], first: int, last: int) -> dict:
    values = [p.population for p in population if first <= p.year <= last]
    years = [p.year for p in population if first <= p.year <= last]
    missing = [y for y in range(first, last + 1) if y not in years]
    return {
        "first_year": first,
        "last_year": last,
        "years_used": len(values),
        "missing_years": missing,
        "mean": statistics.fmean(values) if values else None,
        "stddev": statistics.stdev(values) if len(values) > 1 else None,
        "stddev_kind": "sample (n-1), as pandas .std() and SQL STDDEV_SAMP",
    }


def _best_years(sums: dict[str, dict[int, Decimal]]) -> list[dict]:
    best = []
    for series in sorted(sums):
        per_year = sums[series]
        year = min(per_year, key=lambda y: (-per_year[y], y))  # largest sum; ties to the earliest year
        best.append({"series_id": series, "year": year, "value": _number(per_year[year])})
    return best


def _join_population(chosen: dict[int, Decimal], population: list[YearPopulation], series: str, period: str) -> list[dict]:
    by_year = {p.year: p.population for p in population}
    return [
        {"series_id": series, "year": year, "period": period, "value": _number(value), "Population": by_year.get(year)}
        for year, value in sorted(chosen.items())
    ]


def _number(value: Decimal) -> int | float:
    """A JSON number that prints as the exact decimal: 17.8, never 17.799999999999997."""
    return int(value) if value == value.to_integral_value() else float(value)


def _split(line: bytes | str) -> list[str]:
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    return [part.strip() for part in text.rstrip("\r\n").split("\t")]


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (";".join(map(str, v)) if isinstance(v, list) else v)) for k, v in row.items()})
    return buffer.getvalue()
