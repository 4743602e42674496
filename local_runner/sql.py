"""`python -m local_runner.sql` (`make sql`): query a local run's mirror with the SQL that Athena runs, in DuckDB.

Every mirrored BLS file in the state directory (default .local-state) becomes the table Glue would have
(bls_pipeline.catalog: pr.series -> pr_series, all columns strings), read in place with DuckDB's read_csv; the
population becomes datausa_population (the normalized copy, made from the raw JSON when the run did not write one);
then the same views (<table>_clean, <data table>_labeled) and the three report queries as in Athena.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence, TextIO

from bls_pipeline import catalog
from bls_pipeline.config import DEFAULTS
from bls_pipeline.population import normalized_population_key, parse_population, population_json_lines

from .cli import DEFAULT_STATE_DIR

MIRROR_ROOT = "bls/"  # the mirrors of the default MirrorPrefix bls/pr/ and its sibling surveys (bls/ce/, ...)
QUERIES = {"population_stats": "population_stats", "best_year": "best_year_by_series",
           "series_population": "series_population"}


class StateError(ValueError):
    """The state directory has nothing to query."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local_runner.sql", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR),
                        help=f"a local runner's state directory (default: {DEFAULT_STATE_DIR})")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--query", choices=sorted(QUERIES), help="one of the three reports, as Athena's named queries")
    what.add_argument("--sql", metavar="SELECT", help="any query over the tables and views (see the list without options)")
    parser.add_argument("--series-id", default=os.environ.get("REPORT_SERIES_ID") or DEFAULTS["report_series"],
                        help="series_population's series (default: REPORT_SERIES_ID, else %(default)s)")
    parser.add_argument("--period", default=os.environ.get("REPORT_PERIOD") or DEFAULTS["report_period"],
                        help="series_population's period (default: REPORT_PERIOD, else %(default)s)")
    parser.add_argument("--data-file", default=DEFAULTS["data_file"],
                        help="the data file the reports read (default: %(default)s)")
    parser.add_argument("--show-sql", action="store_true", help="print the query's SQL (what Athena runs) before its result")
    parser.add_argument("--limit", type=int, default=50, help="rows printed at most (default: %(default)s; 0: all)")
    return parser


def connect(state_dir: Path, population_key: str = DEFAULTS["population_key"], notes: list[str] | None = None) -> Any:
    """An in-memory DuckDB database with the catalog's tables over the state directory's files, and its views.
    notes, when given, gets a line for each file that is no table, each renamed column, and each view that could not
    be made (the others are all made)."""
    import duckdb

    objects = Path(state_dir) / "s3"
    con = duckdb.connect()
    mirrors = sorted(p for p in (objects / MIRROR_ROOT).glob("*/") if p.is_dir()) if (objects / MIRROR_ROOT).is_dir() else []
    if not mirrors:
        raise StateError(f"no mirrored survey under {objects / MIRROR_ROOT}: run `make run` first (it fills "
                         f"{state_dir}), or pass --state-dir DIR")
    for folder in mirrors:
        survey = folder.name
        headers = {p.name: _first_line(p) for p in sorted(folder.iterdir()) if p.is_file()}
        found = catalog.survey_catalog(survey, f"{MIRROR_ROOT}{survey}/", headers, taken=TAKEN_NAMES)
        for warning in found.warnings:
            _note(notes, f"{survey}: {warning}")
        for table in found.tables:
            con.execute(f"CREATE OR REPLACE VIEW {catalog.quote(table.name)} AS SELECT * FROM "
                        f"{_read_tsv(objects / table.keys[0], table.columns)}")
        for name, select in catalog.views(survey, found.tables):
            try:
                con.execute(catalog.view_ddl(name, select))
            except duckdb.Error as error:  # one view that cannot be made leaves every other one
                _note(notes, f"{survey}: no view {name}: {str(error).strip().splitlines()[0]}")
        missing = catalog.missing_for_labels(survey, found.tables)
        if f"{survey}.series" in missing:
            _note(notes, f"{survey}: no {catalog.LABELED_SUFFIX} or {catalog.SERIES_SEARCH_SUFFIX} views: "
                         f"{survey}.series is not mirrored")
        elif missing:
            _note(notes, f"{survey}: the label views leave out the labels of {', '.join(missing)}: "
                         f"{'that file is' if len(missing) == 1 else 'those files are'} not mirrored")
    _load_population(con, objects, population_key)
    return con


# The names the catalog holds besides the surveys' tables (a survey's file may not take them).
TAKEN_NAMES = {catalog.POPULATION_TABLE: "the population table"}


def _note(notes: list[str] | None, line: str) -> None:
    if notes is not None:
        notes.append(line)


def _first_line(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.readline(64 * 1024).decode("utf-8", errors="replace")


def _read_tsv(path: Path, columns: Sequence[str]) -> str:
    """read_csv as Athena's LazySimpleSerDe reads the file: tab-separated, no quoting or escaping, header skipped,
    every column a string, a short row padded with NULLs."""
    names = ", ".join(f"{_literal(c)}: 'VARCHAR'" for c in columns)
    return (f"read_csv({_literal(str(path))}, delim = '\t', header = true, quote = '', escape = '', auto_detect = false,"
            f" null_padding = true, columns = {{{names}}})")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load_population(con: Any, objects: Path, population_key: str) -> None:
    """datausa_population from the normalized copy beside the raw JSON, or made from the raw JSON by the same function
    that writes that copy in AWS."""
    normalized, raw = objects / normalized_population_key(population_key), objects / population_key
    if normalized.is_file():
        lines = normalized.read_bytes()
    elif raw.is_file():
        lines = population_json_lines(parse_population(raw.read_bytes()))
    else:
        raise StateError(f"{raw} not found: the population is fetched by `make run`")
    columns = ", ".join(f"{name}: '{'INTEGER' if kind == 'int' else kind.upper()}'"
                        for name, kind in catalog.POPULATION_COLUMNS)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "population.jsonl"
        path.write_bytes(lines)
        con.execute(f"CREATE OR REPLACE TABLE {catalog.quote(catalog.POPULATION_TABLE)} AS SELECT * FROM "
                    f"read_json({_literal(str(path))}, format = 'newline_delimited', columns = {{{columns}}})")


def run_report(con: Any, name: str, data_file: str = DEFAULTS["data_file"], series_id: str = DEFAULTS["report_series"],
               period: str = DEFAULTS["report_period"]) -> tuple[list[str], list[tuple]]:
    """One of the three reports (population_stats, best_year_by_series, series_population): column names and rows."""
    sql = catalog.report_queries(data_file)[name]
    cursor = con.execute(sql, [series_id, period] if name == "series_population" else [])
    return [d[0] for d in cursor.description], cursor.fetchall()


def catalog_listing(con: Any) -> list[tuple]:
    return con.execute(
        "SELECT table_name, table_type FROM information_schema.tables ORDER BY table_type, table_name").fetchall()


def print_rows(columns: list[str], rows: list[tuple], out: TextIO, limit: int = 0) -> None:
    shown = rows if limit <= 0 else rows[:limit]
    cells = [[_cell(v) for v in row] for row in shown]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    for row in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
    more = len(rows) - len(shown)
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{f', {more} not shown (--limit)' if more else ''})", file=out)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "[" + ", ".join(map(_cell, value)) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _numeric(text: str) -> bool:
    return text.lstrip("-").replace(".", "", 1).isdigit()


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        import duckdb
    except ImportError:
        print("error: DuckDB is not installed: `make sql` installs it (requirements-sql.txt)", file=sys.stderr)
        return 2
    notes: list[str] = []
    try:
        con = connect(args.state_dir, notes=notes)
    except (StateError, catalog.CatalogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.query:
            name = QUERIES[args.query]
            if args.show_sql:
                print(catalog.report_queries(args.data_file)[name] + ";\n", file=out)
            columns, rows = run_report(con, name, args.data_file, args.series_id, args.period)
        elif args.sql:
            if args.show_sql:
                print(args.sql.strip().rstrip(";") + ";\n", file=out)
            cursor = con.execute(args.sql)
            columns, rows = [d[0] for d in cursor.description or []], cursor.fetchall() if cursor.description else []
        else:
            print(f"tables and views over {args.state_dir} (query one with --sql, or a report with --query):", file=out)
            columns, rows = ["name", "kind"], catalog_listing(con)
    except duckdb.Error as exc:
        print(f"error: {str(exc).strip()}", file=sys.stderr)
        return 1
    print_rows(columns, rows, out, args.limit)
    for note in notes if not (args.query or args.sql) else []:
        print(f"note: {note}", file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
