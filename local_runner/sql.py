"""`python -m local_runner.sql` (`make sql`): query a local run's mirror with the SQL that Athena runs, in DuckDB.

Every mirrored BLS file in the state directory (default .local-state) becomes the table Glue would have
(bls_pipeline.catalog: pr.series -> pr_series, all columns strings), read in place with DuckDB's read_csv; the
population becomes datausa_population (the normalized copy, made from the raw JSON when the run did not write one);
then the same views (<table>_clean, <data table>_labeled, <survey>_series_search) and the three report queries as in
Athena. A file or view that cannot be opened is named in a note, and every other one is still opened.

What it does (one of):
  --list (or no option)   the tables and views, the file(s) each table reads, and the notes
  --query REPORT          a report: population_stats, best_year_by_series (or best_year), series_population
  --sql SELECT            any query over the tables and views
  --find WORDS            the series whose labels contain every word (case-insensitive), in every survey
Output: --format table (default, at most --limit 50 rows), csv (a header row, then the rows; NULL is an empty
field) or json (JSON Lines: one object a row; DECIMAL values as strings of their exact digits, "4.200000", so that
no reader rounds them; NULL is null); csv and json print every row unless --limit is given.
Exit codes: 0 done, 1 the query failed (DuckDB's error on one line), 2 a usage or state error (no state directory,
an unknown option value, nothing to search). With --query, --sql and --find the notes go to stderr, at most
NOTES_SHOWN lines.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, Sequence, TextIO

from bls_pipeline import catalog, catalog_labels
from bls_pipeline.config import DEFAULTS
from bls_pipeline.population import normalized_population_key, parse_population, population_json_lines

from .cli import DEFAULT_STATE_DIR

MIRROR_ROOT = "bls/"  # the mirrors of the default MirrorPrefix bls/pr/ and its sibling surveys (bls/ce/, ...)
# The reports by the names the README and Athena's named queries give them, and the short name best_year.
QUERIES = {**{name: name for name in catalog.REPORT_QUERIES}, "best_year": "best_year_by_series"}
FORMATS = ("table", "csv", "json")
TABLE_LIMIT = 50  # rows a table prints without --limit
NOTES_SHOWN = 10  # notes printed to stderr with a query's result
NOTE_CHARS = 300
LABELS_SEPARATOR = " | "  # between the labels of a series that --find prints


class StateError(ValueError):
    """The state directory has nothing to query."""


class UsageError(ValueError):
    """The command line asks for something that cannot be done (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m local_runner.sql", description=__doc__.splitlines()[0],
                     epilog="\n".join(__doc__.split("\n\n", 2)[2].splitlines()),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR),
                        help=f"a local runner's state directory (default: {DEFAULT_STATE_DIR})")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="the tables and views, the files they read, and the notes "
                      "(also what no option does)")
    what.add_argument("--query", choices=sorted(QUERIES), metavar="REPORT",
                      help="one of the three reports, as Athena's named queries: " + ", ".join(sorted(QUERIES)))
    what.add_argument("--sql", metavar="SELECT", help="any query over the tables and views (see --list)")
    what.add_argument("--find", metavar="WORDS", help="series whose labels contain every word, e.g. "
                      "'output per hour nonfarm' (every survey's <survey>_series_search view)")
    parser.add_argument("--format", choices=FORMATS, default="table", metavar="FORMAT",
                        help="table (default), csv or json (JSON Lines, decimals as strings)")
    parser.add_argument("--series-id", default=os.environ.get("REPORT_SERIES_ID") or DEFAULTS["report_series"],
                        help="series_population's series (default: REPORT_SERIES_ID, else %(default)s)")
    parser.add_argument("--period", default=os.environ.get("REPORT_PERIOD") or DEFAULTS["report_period"],
                        help="series_population's period (default: REPORT_PERIOD, else %(default)s)")
    parser.add_argument("--data-file", default=DEFAULTS["data_file"],
                        help="the data file the reports read (default: %(default)s)")
    parser.add_argument("--show-sql", action="store_true", help="print the query's SQL (what Athena runs) before its result")
    parser.add_argument("--limit", type=int, default=None,
                        help=f"rows printed at most (default: {TABLE_LIMIT} in a table, all in csv and json; 0: all)")
    return parser


@dataclass
class Catalog:
    """A DuckDB database over a state directory, and what it holds: each table's file, each view's sources."""

    con: Any
    objects: Path  # the state directory's s3/ folder
    tables: dict[str, tuple[str, catalog.Table]] = field(default_factory=dict)  # name -> (survey, table)
    views: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name -> (survey, what it reads)
    search_views: dict[str, str] = field(default_factory=dict)  # survey -> its series search view
    population: str = ""  # the file datausa_population reads, "" when there is none
    notes: list[str] = field(default_factory=list)


def open_catalog(state_dir: Path, population_key: str = DEFAULTS["population_key"]) -> Catalog:
    """The catalog's tables over the state directory's files, and its views; every table and view that can be
    made is, and each one that cannot is a note (as are files that are no table and renamed columns)."""
    import duckdb

    objects = Path(state_dir) / "s3"
    root = objects / MIRROR_ROOT
    mirrors = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not mirrors:
        raise StateError(f"no mirrored survey under {root}: run `make run` first (it fills {state_dir}), or pass "
                         "--state-dir DIR")
    found = Catalog(duckdb.connect(), objects)
    con = found.con
    for folder in mirrors:
        survey = folder.name
        headers = {p.name: _first_line(p) for p in sorted(folder.iterdir()) if p.is_file()}
        survey_catalog = catalog.survey_catalog(survey, f"{MIRROR_ROOT}{survey}/", headers, taken=TAKEN_NAMES)
        found.notes += [f"{survey}: {warning}" for warning in survey_catalog.warnings]
        opened = []
        for table in survey_catalog.tables:
            try:
                con.execute(f"CREATE OR REPLACE VIEW {catalog.quote(table.name)} AS SELECT * FROM "
                            f"{_read_tsv(objects / table.keys[0], table.columns)}")
            except duckdb.Error as error:  # one file that cannot be read leaves every other one
                found.notes.append(f"{survey}: no table {table.name} ({table.file}): {_first_error_line(error)}")
                continue
            found.tables[table.name] = (survey, table)
            opened.append(table)
        search_view = catalog_labels.series_search_view(survey)
        for name, select in catalog.views(survey, opened):
            try:
                con.execute(catalog.view_ddl(name, select))
            except duckdb.Error as error:  # one view that cannot be made leaves every other one
                found.notes.append(f"{survey}: no view {name}: {_first_error_line(error)}")
                continue
            found.views[name] = (survey, list(dict.fromkeys(catalog.read_names(select))))
            if name == search_view:
                found.search_views[survey] = name
        missing = catalog.missing_for_labels(survey, opened)
        if f"{survey}.series" in missing:
            found.notes.append(f"{survey}: no {catalog.LABELED_SUFFIX} or {catalog.SERIES_SEARCH_SUFFIX} views: "
                               f"{survey}.series is not mirrored")
        elif missing:
            found.notes.append(f"{survey}: the label views leave out the labels of {', '.join(missing)}: "
                               f"{'that file is' if len(missing) == 1 else 'those files are'} not mirrored")
    try:
        found.population = _load_population(con, objects, population_key)
    except StateError as error:
        found.notes.append(f"no table {catalog.POPULATION_TABLE}: {error}")
    return found


def connect(state_dir: Path, population_key: str = DEFAULTS["population_key"], notes: list[str] | None = None) -> Any:
    """An in-memory DuckDB database with the catalog's tables over the state directory's files, and its views.
    notes, when given, gets a line for each file that is no table, each renamed column, and each table or view that
    could not be made (the others are all made)."""
    found = open_catalog(state_dir, population_key)
    if notes is not None:
        notes += found.notes
    return found.con


# The names the catalog holds besides the surveys' tables (a survey's file may not take them).
TAKEN_NAMES = {catalog.POPULATION_TABLE: "the population table"}


def _first_line(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.readline(64 * 1024).decode("utf-8", errors="replace")


def _first_error_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _one_line(error: Exception) -> str:
    """DuckDB's message up to its first blank line (the part before the LINE n: excerpt), on one line."""
    head = str(error).strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in head.splitlines() if line.strip()) or type(error).__name__


def _read_tsv(path: Path, columns: Sequence[str]) -> str:
    """read_csv as Athena's LazySimpleSerDe reads the file: tab-separated, no quoting or escaping, header skipped,
    every column a string, a short row padded with NULLs."""
    names = ", ".join(f"{_literal(c)}: 'VARCHAR'" for c in columns)
    return (f"read_csv({_literal(str(path))}, delim = '\t', header = true, quote = '', escape = '', auto_detect = false,"
            f" null_padding = true, columns = {{{names}}})")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load_population(con: Any, objects: Path, population_key: str) -> str:
    """datausa_population from the normalized copy beside the raw JSON, or made from the raw JSON by the same function
    that writes that copy in AWS; returns the file it read."""
    normalized, raw = objects / normalized_population_key(population_key), objects / population_key
    if normalized.is_file():
        lines, source = normalized.read_bytes(), normalized_population_key(population_key)
    elif raw.is_file():
        lines, source = population_json_lines(parse_population(raw.read_bytes())), population_key
    else:
        raise StateError(f"{raw} not found: the population is fetched by `make run`")
    columns = ", ".join(f"{name}: '{'INTEGER' if kind == 'int' else kind.upper()}'"
                        for name, kind in catalog.POPULATION_COLUMNS)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "population.jsonl"
        path.write_bytes(lines)
        con.execute(f"CREATE OR REPLACE TABLE {catalog.quote(catalog.POPULATION_TABLE)} AS SELECT * FROM "
                    f"read_json({_literal(str(path))}, format = 'newline_delimited', columns = {{{columns}}})")
    return source


def run_report(con: Any, name: str, data_file: str = DEFAULTS["data_file"], series_id: str = DEFAULTS["report_series"],
               period: str = DEFAULTS["report_period"]) -> tuple[list[str], list[tuple]]:
    """One of the three reports (population_stats, best_year_by_series, series_population): column names and rows."""
    sql = catalog.report_queries(data_file)[QUERIES.get(name, name)]
    cursor = con.execute(sql, [series_id, period] if QUERIES.get(name, name) == "series_population" else [])
    return [d[0] for d in cursor.description], cursor.fetchall()


def find_sql(view: str, words: int) -> str:
    """A series search view's rows whose search_text contains each of `words` bound parameters."""
    text = catalog.quote(catalog_labels.SEARCH_TEXT)
    where = " AND ".join([f"STRPOS({text}, ?) > 0"] * words)
    return f"SELECT * FROM {catalog.quote(view)} WHERE {where} ORDER BY {catalog.quote('series_id')}"


def find_series(found: Catalog, text: str, sql_out: TextIO | None = None) -> tuple[list[str], list[tuple]]:
    """The series of every survey whose labels contain every word of text (case-insensitive): series_id, survey and
    its labels (series_title too) joined by LABELS_SEPARATOR. The words are bound parameters, never SQL."""
    words = [word.lower() for word in text.split()]
    if not words:
        raise UsageError("--find needs at least one word")
    if not found.search_views:
        raise UsageError(f"no mirrored survey has a series file with labels to search (<survey>.series and its "
                         f"mapping files, e.g. {MIRROR_ROOT}pr/pr.series): nothing to find in {found.objects.parent}")
    rows = []
    skip = {"series_id", catalog_labels.SEARCH_TEXT}
    for survey, view in sorted(found.search_views.items()):
        sql = find_sql(view, len(words))
        if sql_out is not None:
            print(f"{sql};  -- parameters: {', '.join(_literal(w) for w in words)}\n", file=sql_out)
        cursor = found.con.execute(sql, words)
        columns = [d[0] for d in cursor.description]
        for values in cursor.fetchall():
            record = dict(zip(columns, values))
            labels = [str(v) for c, v in record.items() if c not in skip and v is not None]
            rows.append((record["series_id"], survey, LABELS_SEPARATOR.join(labels)))
    return ["series_id", "survey", "labels"], rows


def listing(found: Catalog) -> tuple[list[str], list[tuple]]:
    """Each table (kind data, mapping or population, and the file it reads) and each view (what it reads)."""
    rows = [(name, table.kind, ", ".join(table.keys)) for name, (_, table) in sorted(found.tables.items())]
    if found.population:
        rows.append((catalog.POPULATION_TABLE, "population", found.population))
    rows += [(name, "view", ", ".join(reads)) for name, (_, reads) in sorted(found.views.items())]
    return ["name", "kind", "reads"], rows


def write_rows(columns: list[str], rows: list[tuple], out: TextIO, fmt: str = "table", limit: int | None = None,
               err: TextIO | None = None) -> None:
    """The rows in the format; at most limit rows (None: TABLE_LIMIT in a table, all otherwise; 0: all). A table
    ends with a count line; csv and json say on err how many rows were left out."""
    limit = (TABLE_LIMIT if fmt == "table" else 0) if limit is None else limit
    shown = rows if limit <= 0 else rows[:limit]
    more = len(rows) - len(shown)
    if fmt == "table":
        print_rows(columns, shown, out)
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{f', {more} not shown (--limit)' if more else ''})",
              file=out)
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_csv_cell(v) for v in row] for row in shown)
    else:
        keys = _unique(columns)
        for row in shown:
            print(json.dumps(dict(zip(keys, map(_json_value, row))), ensure_ascii=False, allow_nan=False), file=out)
    if more:
        print(f"note: {len(rows)} rows, {more} not shown (--limit)", file=err or sys.stderr)


def print_rows(columns: list[str], rows: list[tuple], out: TextIO, limit: int = 0) -> None:
    """The rows as an aligned table (numbers right-aligned), without the count line."""
    shown = rows if limit <= 0 else rows[:limit]
    cells = [[_cell(v) for v in row] for row in shown]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    for row in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "[" + ", ".join(map(_cell, value)) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _csv_cell(value: Any) -> str:
    return "" if value is None else _cell(value)


def _json_value(value: Any) -> Any:
    """A value JSON keeps exactly: DECIMAL as the string of its digits, a float that is not finite as a string."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def _unique(columns: list[str]) -> list[str]:
    """Column names as JSON keys: a repeated name gets _2, _3, ..."""
    keys: list[str] = []
    for column in columns:
        key, number = column, 2
        while key in keys:
            key, number = f"{column}_{number}", number + 1
        keys.append(key)
    return keys


def _numeric(text: str) -> bool:
    return text.lstrip("-").replace(".", "", 1).isdigit()


def _print_notes(notes: list[str], err: TextIO) -> None:
    for note in notes[:NOTES_SHOWN]:
        print(f"note: {note if len(note) <= NOTE_CHARS else note[:NOTE_CHARS - 1] + '…'}", file=err)
    if len(notes) > NOTES_SHOWN:
        print(f"note: and {len(notes) - NOTES_SHOWN} more (--list shows them all)", file=err)


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        import duckdb
    except ImportError:
        print("error: DuckDB is not installed: `make sql` installs it (requirements-sql.txt)", file=err)
        return 2
    try:
        found = open_catalog(args.state_dir)
    except (StateError, catalog.CatalogError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    listed = args.query is None and args.sql is None and args.find is None
    if not listed:
        _print_notes(found.notes, err)
    try:
        if args.query:
            if args.show_sql:
                print(catalog.report_queries(args.data_file)[QUERIES[args.query]] + ";\n", file=out)
            columns, rows = run_report(found.con, args.query, args.data_file, args.series_id, args.period)
        elif args.sql is not None:
            if args.show_sql:
                print(args.sql.strip().rstrip(";") + ";\n", file=out)
            cursor = found.con.execute(args.sql)
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall() if cursor.description else []
        elif args.find is not None:
            columns, rows = find_series(found, args.find, out if args.show_sql else None)
        else:
            if args.format == "table":
                print(f"tables and views over {args.state_dir} (query one with --sql, a report with --query, "
                      "series with --find):", file=out)
            columns, rows = listing(found)
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except duckdb.Error as exc:
        hint = " (--list shows the tables and views)" if isinstance(exc, duckdb.CatalogException) else ""
        print(f"error: {_one_line(exc)}{hint}", file=err)
        return 1
    write_rows(columns, rows, out, args.format, args.limit, err)
    if listed:
        for note in found.notes:
            print(f"note: {note}", file=out if args.format == "table" else err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
