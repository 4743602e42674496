"""The label views of every survey, generated from BLS's one convention for its survey files.

The convention (every survey's <s>.txt documents its own files by it): <s>.series has one row per series_id and
columns of codes; a code column <name>_code has its labels in the mapping file <s>.<name>, whose columns are
<name>_code and a label (pr.series.sector_code -> pr.sector: sector_code, sector_name; la.series.area_type_code ->
la.area_type: area_type_code, areatype_text). A few code columns have no _code suffix and map the same way when
their file is mirrored (pr.series.seasonal -> pr.seasonal: Seasonal_code, Seasonal_text, lower-cased by the
catalog). A data file's period codes are in <s>.period (period, period_abbr, period_name), its footnote codes in
<s>.footnote (footnote_code, footnote_text). Where a survey names a mapping file otherwise (la.series.srd_code ->
la.state_region_division: srd_code, srd_text), the file taken is the one whose only code column, its first, is the
series file's column.

A mapping file's label column is <name>_text, <name>_name or <name>_title (for the code's name or the file's), else
its first column that is no code column (la.area_type's areatype_text).

Each survey with a <s>.series gets (names from catalog, made after the _clean views they read):
- <data table>_labeled for each of its data tables: the data row (series_id, year, period, value, footnote_codes),
  the period's name (period_name), the footnotes' text (footnote_text), then for each code column of <s>.series
  that has a mapping file the code and its label (sector_code, sector_name, ...), and series_title when <s>.series
  has one. A code column whose mapping file is not mirrored is not labeled (missing_for_labels names the file).
- <survey part>_series_search: series_id, every label in words (and series_title), and search_text: every label
  joined by spaces, lower-cased, to search with STRPOS or LIKE.
A survey without <s>.series gets neither.

Rows are never multiplied: every join is a LEFT JOIN (a code without a label keeps its row, with a NULL label) on
a subquery with one row per code (MIN of the label, GROUP BY the code): a mapping file that lists a code twice
(la.area is keyed by area_type_code and area_code) or a series file that lists a series twice (each column's least
value) changes no row count.

Footnotes: BLS data files hold at most one footnote code per row in practice (the real pr files: 'R' or nothing).
The field is decoded as up to FOOTNOTES_DECODED comma-separated codes, each looked up alone, their texts joined by
'; ' (a code without a text is left out; a field of only unknown codes gives NULL).

Runs unchanged on Athena engine v3 (Trino) and DuckDB. Dialect points:
- Every identifier is quoted (catalog.quote); the labels and codes are the trimmed strings of the _clean views.
- CONCAT is not used: Trino's gives NULL when an argument is NULL where DuckDB's skips it. `||` with COALESCE is
  NULL-safe in both, as are LOWER, TRIM, MIN, SUBSTR(s, start) (1-based) and NULLIF.
- SPLIT_PART(s, ',', n) past the last field is NULL in Trino and '' in DuckDB: NULLIF(TRIM(...), '') makes both NULL.
- No WITH clause, so that catalog.read_names finds every view a view reads (its FROM and JOIN names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from . import catalog

CODE_SUFFIX = "_code"
LABEL_SUFFIXES = ("_text", "_name", "_title")
SERIES_TITLE = "series_title"
SEARCH_TEXT = "search_text"
FOOTNOTES_DECODED = 3
FOOTNOTE_SEPARATOR = "; "
# The columns of a series file that are never codes: the key, the title, and its own footnotes and span.
NOT_CODES = frozenset({"series_id", SERIES_TITLE, "footnote_codes", "begin_year", "begin_period", "end_year",
                       "end_period"})


@dataclass(frozen=True)
class Lookup:
    """One code column and the mapping table that labels it."""

    column: str  # the column holding the code (in the series or the data file)
    table: catalog.Table  # the mapping table
    key: str  # the mapping table's code column
    label: str  # the mapping table's label column
    code_out: str = ""  # the code's column in the views ("" for the period and footnote)
    label_out: str = ""  # the label's column in the views

    def subquery(self) -> str:
        """One row per code: the code and its least label."""
        return (f"(SELECT {_q(self.key)} AS {_q('code')}, MIN({_q(self.label)}) AS {_q('label')} "
                f"FROM {_q(self.table.clean_view)} GROUP BY {_q(self.key)})")


@dataclass
class SurveyLabels:
    """What a survey's label views read, and the mapping files they would read that are not mirrored."""

    survey: str
    series: catalog.Table | None = None
    codes: list[Lookup] = field(default_factory=list)
    period: Lookup | None = None
    footnote: Lookup | None = None
    title: str = ""  # the series title's column in the views, "" when the series file has none
    missing: list[str] = field(default_factory=list)


def label_views(survey: str, tables: Iterable[catalog.Table]) -> list[tuple[str, str]]:
    """(view name, SELECT) of the survey's label views: its series search view, then each data table's labeled
    view; none without a <survey>.series."""
    tables = [t for t in tables if t.kind != "population"]
    labels = survey_labels(survey, tables)
    if labels.series is None:
        return []
    found = []
    search = series_search_select(labels)
    if search:
        found.append((series_search_view(survey), search))
    for table in (t for t in tables if t.kind == "data"):
        found.append((labeled_view(table), labeled_select(labels, table)))
    return found


def missing_for_labels(survey: str, tables: Iterable[catalog.Table]) -> list[str]:
    """The mapping files (<s>.sector, <s>.period, ...) the survey's label views would read that are not mirrored, or
    [<s>.series] when a survey with data files has no series file; empty when nothing is left unlabeled. A column
    without the _code suffix is a code only when its file is mirrored, so its file is never named here."""
    return survey_labels(survey, [t for t in tables if t.kind != "population"]).missing


def labeled_view(table: catalog.Table) -> str:
    return table.name + catalog.LABELED_SUFFIX


def series_search_view(survey: str) -> str:
    return catalog.survey_part(survey) + catalog.SERIES_SEARCH_SUFFIX


def survey_labels(survey: str, tables: list[catalog.Table]) -> SurveyLabels:
    """The lookups of one survey's label views, from its tables' names and columns alone."""
    result = SurveyLabels(survey)
    by_name = {t.name: t for t in tables}
    has_data = any(t.kind == "data" for t in tables)
    series = _table_for(survey, "series", by_name)
    if series is None or "series_id" not in series.columns:
        if has_data:
            result.missing.append(f"{survey}.series")
        return result
    result.series = series
    mappings = [t for t in tables if t.kind == "mapping" and t.name != series.name and len(t.columns) > 1]
    used = {*catalog.DATA_COLUMNS, SEARCH_TEXT}
    if has_data:
        result.period = _lookup(survey, "period", "period", by_name, series)
        result.footnote = _lookup(survey, "footnote", "footnote_codes", by_name, series)
        for lookup, name in ((result.period, "period"), (result.footnote, "footnote")):
            if lookup is None:
                result.missing.append(f"{survey}.{name}")
        if result.period:
            result.period = _named(result.period, "", _fresh(result.period.label, used, "period"))
        if result.footnote:
            result.footnote = _named(result.footnote, "", _fresh(result.footnote.label, used, "footnote"))
    for column in series.columns:
        if column in NOT_CODES:
            continue
        name = column[:-len(CODE_SUFFIX)] if column.endswith(CODE_SUFFIX) else column
        lookup = _lookup(survey, name, column, by_name, series) if name else None
        if lookup is None and column.endswith(CODE_SUFFIX):
            lookup = _first_column_lookup(survey, column, mappings)
        if lookup is None:
            if column.endswith(CODE_SUFFIX) and name:
                result.missing.append(f"{survey}.{name}")
            continue
        code_out = _fresh(column, used, "series")
        result.codes.append(_named(lookup, code_out, _fresh(lookup.label, used, name)))
    if SERIES_TITLE in series.columns:
        result.title = _fresh(SERIES_TITLE, used, "series")
    result.missing = sorted(set(result.missing))
    return result


def _table_for(survey: str, name: str, by_name: dict[str, catalog.Table]) -> catalog.Table | None:
    """The table of the file <survey>.<name>, if it is mirrored and a table."""
    try:
        return by_name.get(catalog.table_name(survey, f"{survey}.{name}"))
    except catalog.CatalogError:
        return None


def _lookup(survey: str, name: str, column: str, by_name: dict[str, catalog.Table],
            series: catalog.Table) -> Lookup | None:
    """The mapping file <survey>.<name> for a column: its code column is <name>_code, else the column's own name."""
    table = _table_for(survey, name, by_name)
    if table is None or table.kind != "mapping" or table.name == series.name:
        return None
    key = next((k for k in (name + CODE_SUFFIX, column) if k in table.columns), None)
    label = _label_column(table, key, (name, _file_part(survey, table))) if key else None
    return Lookup(column, table, key, label) if key and label else None


def _first_column_lookup(survey: str, column: str, mappings: list[catalog.Table]) -> Lookup | None:
    """A mapping file named otherwise whose only code column, its first, is the column (la.srd_code ->
    la.state_region_division); the first such file by name."""
    for table in sorted(mappings, key=lambda t: t.file):
        codes = [c for c in table.columns if c.endswith(CODE_SUFFIX)]
        if table.columns[0] == column and codes == [column]:
            label = _label_column(table, column, (column[:-len(CODE_SUFFIX)], _file_part(survey, table)))
            if label:
                return Lookup(column, table, column, label)
    return None


def _label_column(table: catalog.Table, key: str, names: tuple[str, ...]) -> str | None:
    for name in names:
        for suffix in LABEL_SUFFIXES:
            if name + suffix in table.columns and name + suffix != key:
                return name + suffix
    return next((c for c in table.columns if c != key and not c.endswith(CODE_SUFFIX)), None)


def _file_part(survey: str, table: catalog.Table) -> str:
    """state_region_division for la.state_region_division."""
    try:
        return catalog.identifier(table.file[len(survey) + 1:])
    except catalog.CatalogError:
        return table.name


def _named(lookup: Lookup, code_out: str, label_out: str) -> Lookup:
    return Lookup(lookup.column, lookup.table, lookup.key, lookup.label, code_out, label_out)


def _fresh(wanted: str, used: set[str], prefix: str) -> str:
    """wanted, or prefix_wanted (then _2, _3, ...) when a column of the view already has that name."""
    name = wanted if wanted not in used else catalog.fit_name(f"{prefix}_{wanted}")
    base, number = name, 2
    while name in used:
        name, number = catalog.fit_name(f"{base}_{number}"), number + 1
    used.add(name)
    return name


def _q(name: str) -> str:
    return catalog.quote(name)


def _series_joins(labels: SurveyLabels) -> list[str]:
    """FROM/JOIN lines after the series subquery "s": one deduplicated mapping subquery per code column."""
    return [f"LEFT JOIN {lookup.subquery()} AS {_q(f'm{i}')} ON {_q(f'm{i}')}.{_q('code')} = "
            f"{_q('s')}.{_q(lookup.column)}" for i, lookup in enumerate(labels.codes, start=1)]


def _series_subquery(labels: SurveyLabels) -> str:
    """One row per series_id: its code columns and title (each column's least value, should a series be listed
    twice)."""
    assert labels.series is not None
    columns = [c.column for c in labels.codes] + ([SERIES_TITLE] if labels.title else [])
    picked = "".join(f", MIN({_q(c)}) AS {_q(c)}" for c in dict.fromkeys(columns))
    return (f"(SELECT {_q('series_id')}{picked} FROM {_q(labels.series.clean_view)} "
            f"GROUP BY {_q('series_id')})")


def _label_columns(labels: SurveyLabels, with_codes: bool) -> list[str]:
    columns = []
    for i, lookup in enumerate(labels.codes, start=1):
        if with_codes:
            columns.append(f"{_q('s')}.{_q(lookup.column)} AS {_q(lookup.code_out)}")
        columns.append(f"{_q(f'm{i}')}.{_q('label')} AS {_q(lookup.label_out)}")
    if labels.title:
        columns.append(f"{_q('s')}.{_q(SERIES_TITLE)} AS {_q(labels.title)}")
    return columns


def labeled_select(labels: SurveyLabels, table: catalog.Table) -> str:
    """The SELECT of <data table>_labeled."""
    d = _q("d")
    columns = [f"{d}.{_q(c)}" for c in ("series_id", "year", "period")]
    s = _q("s")
    joins = [f"LEFT JOIN {_series_subquery(labels)} AS {s} ON {s}.{_q('series_id')} = {d}.{_q('series_id')}",
             *_series_joins(labels)]
    if labels.period:
        columns.append(f"{_q('p')}.{_q('label')} AS {_q(labels.period.label_out)}")
        p = _q("p")
        joins.append(f"LEFT JOIN {labels.period.subquery()} AS {p} ON {p}.{_q('code')} = {d}.{_q('period')}")
    columns += [f"{d}.{_q('value')}", f"{d}.{_q('footnote_codes')}"]
    if labels.footnote:
        texts = []
        for n in range(1, FOOTNOTES_DECODED + 1):
            alias = _q(f"f{n}")
            code = f"NULLIF(TRIM(SPLIT_PART({d}.{_q('footnote_codes')}, ',', {n})), '')"
            joins.append(f"LEFT JOIN {labels.footnote.subquery()} AS {alias} ON {alias}.{_q('code')} = {code}")
            texts.append(f"COALESCE('{FOOTNOTE_SEPARATOR}' || {alias}.{_q('label')}, '')")
        columns.append(f"NULLIF(SUBSTR({' || '.join(texts)}, {len(FOOTNOTE_SEPARATOR) + 1}), '') "
                       f"AS {_q(labels.footnote.label_out)}")
    columns += _label_columns(labels, with_codes=True)
    return ("SELECT\n    " + ",\n    ".join(columns) + f"\nFROM {_q(table.clean_view)} AS {d}\n" + "\n".join(joins))


def series_search_select(labels: SurveyLabels) -> str:
    """The SELECT of <survey part>_series_search; "" when the series file has no label nor title to search."""
    words = [f"{_q(f'm{i}')}.{_q('label')}" for i in range(1, len(labels.codes) + 1)]
    if labels.title:
        words.append(f"{_q('s')}.{_q(SERIES_TITLE)}")
    if not words:
        return ""
    text = " || ' ' || ".join(f"COALESCE({w}, '')" for w in words)
    columns = [f"{_q('s')}.{_q('series_id')}", *_label_columns(labels, with_codes=False),
               f"LOWER(TRIM({text})) AS {_q(SEARCH_TEXT)}"]
    return ("SELECT\n    " + ",\n    ".join(columns) + f"\nFROM {_series_subquery(labels)} AS {_q('s')}\n"
            + "\n".join(_series_joins(labels)))
