"""The SQL catalog of the mirror: the tables and views each mirrored survey gets, named and defined in one place, for
Athena (Glue TableInput dicts and view DDL) and for DuckDB (local_runner.sql) alike. No AWS calls here except in
apply_tables.

Names: a file's table is its name lower-cased with every run of other characters than a-z and 0-9 made one
underscore (pr.data.0.Current -> pr_data_0_current, pr.series -> pr_series), as Glue and Athena want; its columns
are its header row's, lower-cased the same way (Glue stores column names lower-case). Every column is a string, and
the header row is skipped. Each table has a view <table>_clean that trims every column (data files: sql/data_view.sql,
which also types year and value); each survey with a <survey>.series gets <data table>_labeled for each data file
and <survey>_series_search (catalog_labels, from BLS's naming convention). Files without a tab in their first line
(pr.txt, pr.contacts) are documents, not tables.

Where a table reads: an Athena table's LOCATION is an S3 folder, and Athena reads every object under it
(https://docs.aws.amazon.com/athena/latest/ug/tables-location-format.html: "Athena reads all data stored in the
Amazon S3 folder that you specify", and a file name is not a valid LOCATION). The mirror keeps a survey's files flat
under bls/<survey>/, so a folder cannot single out pr.series. Each BLS table is therefore a symlink table:
InputFormat SymlinkTextInputFormat, LOCATION a folder of its own under catalog/symlinks/<table>/ holding one manifest
that lists the s3:// URI of exactly the table's file, read with the table's SerDe. This is how Athena reads S3
Inventory's CSV reports (https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-athena-query.html:
SymlinkTextInputFormat over the inventory's hive/ folder of symlink.txt manifests). The normalized population copy
has a folder of its own (population.normalized_population_key), so its table is a plain folder table.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import CATALOG_PREFIX, CHANGES_PREFIX, REPORT_SURVEY, REPORTS_PREFIX
from .population import normalized_population_key

SQL_DIR = Path(__file__).with_name("sql")
# The symlink manifests: config.Settings.validate keeps every mirror out of this folder, so no prune deletes them.
SYMLINKS_PREFIX = CATALOG_PREFIX + "symlinks/"
MANIFEST_NAME = "manifest.txt"
# The fallback (CatalogTableReads=copy): each table's folder holds a copy of its file, read as a plain text table.
COPIES_PREFIX = CATALOG_PREFIX + "tables/"
# What no table may read: the pipeline's own files (plans, the sync index, staging), the reports, the change log.
NEVER_READ_PREFIXES = ("pipeline/", REPORTS_PREFIX, CHANGES_PREFIX)

DATA_COLUMNS = ("series_id", "year", "period", "value", "footnote_codes")
POPULATION_TABLE = "datausa_population"
POPULATION_COLUMNS = (("year", "int"), ("population", "bigint"))
CLEAN_SUFFIX = "_clean"
LABELED_SUFFIX = "_labeled"
REPORT_QUERIES = ("population_stats", "best_year_by_series", "series_population")

DELIMITED_SERDE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"  # no quoting, as BLS files have none
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
SYMLINK_INPUT = "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat"
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"


class CatalogError(ValueError):
    """A table or view cannot be defined (it would read outside its survey's mirror folder, or a name is unusable)."""


# Athena User Guide, "Escape reserved keywords in queries" (https://docs.aws.amazon.com/athena/latest/ug/reserved-words.html):
# the keywords reserved in DDL and in SELECT statements and views; and DuckDB's reserved keywords
# (SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved', DuckDB 1.4). Every identifier the
# catalog writes is quoted anyway; a header column named like one of these is renamed too, so that analysts' own SQL
# can name every column without quoting it in either engine.
RESERVED_WORDS = frozenset("""
all alter and array as authorization between bigint binary boolean both by case cashe cast char column conf
constraint commit create cross cube current current_date current_timestamp cursor database date dayofweek decimal
delete describe distinct div double drop else end exchange exists extended external extract false fetch float floor
following for foreign from full function grant group grouping having if import in inner insert int integer
intersect interval into is join lateral left less like local macro map more none not null numeric of on only or
order out outer over partialscan partition percent preceding precision preserve primary procedure range reads
reduce regexp references revoke right rlike rollback rollup row rows select set smallint start table tablesample
then time timestamp to transform trigger true truncate unbounded union uniquejoin update user using utc_timestamp
values varchar views when where window with
current_catalog current_path current_role current_schema current_time current_user deallocate escape except
execute first json_array json_exists json_object json_query json_table json_value last listagg localtime
localtimestamp natural normalize prepare recursive skip trim uescape unnest
analyse analyze any asc asymmetric check collate default deferrable desc do initially lambda leading limit offset
pivot pivot_longer pivot_wider placing qualify returning show some summarize symmetric trailing unique unpivot
variadic
""".split())

# Glue's name limit: "database, table, and column names ... at most 255 bytes" (Athena User Guide, "Name databases,
# tables, and columns"). Every view of a table adds one of VIEW_SUFFIXES to its name, so a table's own name keeps
# room for the longest.
MAX_NAME_BYTES = 255
VIEW_SUFFIXES = (CLEAN_SUFFIX, LABELED_SUFFIX, "_history", "_revisions")
TABLE_NAME_BYTES = MAX_NAME_BYTES - max(map(len, VIEW_SUFFIXES))
SERIES_SEARCH_SUFFIX = "_series_search"
_CANONICAL_SURVEY = re.compile(r"[a-z][a-z0-9]*")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]  # the S3 objects the table reads, and nothing else
    kind: str  # "data", "mapping" or "population"
    file: str = ""  # the mirrored file's name (pr.series); "" for the population table

    @property
    def clean_view(self) -> str:
        return self.name + CLEAN_SUFFIX

    def names(self) -> tuple[str, ...]:
        """Every catalog name this table takes or may take: its own and its views' (present and to come)."""
        return (self.name, *(self.name + suffix for suffix in VIEW_SUFFIXES))


@dataclass
class SurveyCatalog:
    """A survey's tables, and one line for each file that could not be a table or header column renamed."""

    survey: str
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def quote(name: str) -> str:
    """An identifier as both Athena (SELECT, views) and DuckDB quote it: in double quotes, a double quote doubled."""
    return '"' + name.replace('"', '""') + '"'


def _words(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def survey_part(survey: str) -> str:
    """The survey's part of its table names, which no other survey's can be.

    A BLS survey code (letters then digits: pr, cu, la) is itself, and contains no underscore, so in
    <survey>_<file part> the first underscore ends it. Any other directory name the mirror accepts (pr-, pr_, pr.,
    2x) is "s" followed by its characters with each one outside a-z0-9 written _XX (its code in hex), then one more
    underscore: pr- -> spr_2d_, whose tables read spr_2d__<file part>. A file part never starts with an underscore
    and a code's names never hold two in a row, so only such a survey's names contain "__", and its escape is
    reversible: two surveys never share a part."""
    if _CANONICAL_SURVEY.fullmatch(survey):
        return survey
    return "s" + "".join(chr(b) if chr(b) in _PLAIN else f"_{b:02x}" for b in survey.encode()) + "_"


def table_name(survey: str, file_name: str) -> str:
    """pr.data.0.Current -> pr_data_0_current: the survey's part, then the rest of the file name lower-cased with
    every run of other characters than a-z and 0-9 made one underscore; shortened to TABLE_NAME_BYTES when longer
    (fit_name). Raises CatalogError when the rest has no letter or digit."""
    rest = _words(file_name[len(survey) + 1:] if file_name.startswith(survey + ".") else file_name)
    if not rest:
        raise CatalogError(f"{file_name!r} has no letter or digit after {survey + '.'!r} to name a table by")
    return fit_name(f"{survey_part(survey)}_{rest}", TABLE_NAME_BYTES)


def fit_name(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """The name itself when it fits in limit bytes, else its first characters, an underscore and 8 hex digits of
    its SHA-256: the same name always gives the same short one, and two names the same only by chance (1 in 4e9;
    survey_catalog refuses the second)."""
    if len(name.encode()) <= limit:
        return name
    return name[:limit - 9].rstrip("_") + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


def identifier(text: str) -> str:
    """A Glue/Athena name for a file or a header column: lower-case letters, digits and single underscores."""
    name = _words(text)
    if not name:
        raise CatalogError(f"{text!r} has no letter or digit to name a table or column by")
    return name if name[0].isalpha() else "t_" + name


def header_columns(header: str, warnings: list[str] | None = None, file_name: str = "") -> tuple[str, ...]:
    """The columns of a header row, lower-cased as Glue stores them. A column whose name is empty (a trailing tab),
    repeated, a reserved word or longer than Glue allows is named column_<position> instead (1-based; with _2, _3,
    ... when a header already has that name), with a line in warnings."""
    cells = header.lstrip("\ufeff").rstrip("\r\n").split("\t")
    wanted = []
    for cell in cells:
        name = _words(cell)
        wanted.append(name if not name or name[0].isalpha() else "t_" + name)
    columns: list[str] = []
    for position, (cell, name) in enumerate(zip(cells, wanted), start=1):
        problem = ("is empty" if not name else
                   "is a reserved word" if name in RESERVED_WORDS else
                   "is longer than Glue's 255 bytes" if len(name.encode()) > MAX_NAME_BYTES else
                   "repeats an earlier column's name" if name in columns else "")
        if problem:
            name = f"column_{position}"
            suffix = 2
            while name in columns or name in wanted:
                name, suffix = f"column_{position}_{suffix}", suffix + 1
            if warnings is not None:
                warnings.append(f"{_shown(file_name) if file_name else 'header'}: column {position} {_shown(cell.strip())} {problem}: "
                                f"named {name}")
        columns.append(name)
    return tuple(columns)


def _shown(text: str, limit: int = 60) -> str:
    """A name from the source, safe for a log line: repr (no control characters) and bounded."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _name_preference(file_name: str) -> tuple[int, str]:
    """Which of two files that would share a table name keeps it: the one with fewer characters its table name
    changes (pr.series before pr.SERIES, pr.data.0.Current before pr.data.0_Current), then the first by code point."""
    return (sum(1 for c in file_name if not (c.islower() or c.isdigit() or c == ".")), file_name)


def survey_catalog(survey: str, mirror_prefix: str, headers: Mapping[str, str],
                   taken: Mapping[str, str] | None = None) -> SurveyCatalog:
    """The tables of one mirrored survey. headers: each mirrored file's name -> its first line. taken: catalog
    names other surveys or the catalog itself already hold -> who holds them.

    A file is a table when its name starts with <survey>. and its first line has a tab. A file that would take a
    name already held (two files of the survey that normalise alike, a file named like another table's view, a
    hash collision of shortened names) gets no table and a warning naming both; every other file gets its table."""
    result = SurveyCatalog(survey)
    held: dict[str, str] = dict(taken or {})
    for name in (survey_part(survey) + SERIES_SEARCH_SUFFIX,):
        held.setdefault(name, f"the {survey} survey's series search view")
    candidates = [n for n in headers if n.startswith(survey + ".") and "\t" in headers[n]]
    for file_name in sorted(candidates, key=_name_preference):
        if "/" in file_name:
            result.warnings.append(f"{_shown(file_name)}: no table: not a file directly in {mirror_prefix}")
            continue
        try:
            name = table_name(survey, file_name)
        except CatalogError as error:
            result.warnings.append(f"{_shown(file_name)}: no table: {error}")
            continue
        columns = header_columns(headers[file_name], result.warnings, file_name)
        is_data = file_name.startswith(f"{survey}.data.") and set(DATA_COLUMNS) <= set(columns)
        table = Table(name, columns, (mirror_prefix + file_name,), "data" if is_data else "mapping", file_name)
        clash = next((n for n in table.names() if n in held), None)
        if clash is not None:
            result.warnings.append(f"{_shown(file_name)}: no table: it would take the name {clash}, which "
                                   f"{held[clash]} has")
            continue
        try:
            _check_reads_only_mirror(table, mirror_prefix)
        except CatalogError as error:
            result.warnings.append(f"{_shown(file_name)}: no table: {error}")
            continue
        held.update({n: _shown(file_name) for n in table.names()})
        result.tables.append(table)
    result.tables.sort(key=lambda t: t.file)
    return result


def survey_tables(survey: str, mirror_prefix: str, headers: Mapping[str, str]) -> list[Table]:
    """The tables of one mirrored survey (survey_catalog without its warnings)."""
    return survey_catalog(survey, mirror_prefix, headers).tables


def population_table(population_key: str) -> Table:
    table = Table(POPULATION_TABLE, tuple(c for c, _ in POPULATION_COLUMNS),
                  (normalized_population_key(population_key),), "population")
    _check_reads_only_mirror(table)
    return table


def location(table: Table, reads: str = "symlink") -> str:
    """The folder the table's LOCATION names: its own manifest folder (reads "symlink") or copy folder ("copy"), or
    the population copy's own folder."""
    if table.kind == "population":
        return table.keys[0].rpartition("/")[0] + "/"
    return f"{SYMLINKS_PREFIX if reads == 'symlink' else COPIES_PREFIX}{table.name}/"


def manifest_key(table_name: str) -> str:
    return f"{SYMLINKS_PREFIX}{table_name}/{MANIFEST_NAME}"


def copy_key(table_name: str) -> str:
    """Where CatalogTableReads=copy keeps the copy of a table's file: the only object in the table's folder."""
    return f"{COPIES_PREFIX}{table_name}/{table_name}.tsv"


def manifests(tables: Iterable[Table], bucket: str) -> dict[str, bytes]:
    """The symlink manifest of each BLS table: key -> the s3:// URIs of its files, one a line."""
    return {manifest_key(t.name): "".join(f"s3://{bucket}/{key}\n" for key in t.keys).encode()
            for t in tables if t.kind != "population"}


def glue_table_input(table: Table, bucket: str, reads: str = "symlink") -> dict[str, Any]:
    """The Glue TableInput of a table (CreateTable / UpdateTable). reads: "symlink", a SymlinkTextInputFormat table
    whose folder holds the manifest naming the mirrored file; "copy", a plain text table whose folder holds a copy
    of it (copy_key). Both skip the header row with LazySimpleSerDe's skip.header.line.count, which AWS documents
    for plain tables; for symlink tables it is documented nowhere (README, "If Athena misreads the tables")."""
    _check_reads_only_mirror(table)
    if table.kind == "population":
        columns = [{"Name": name, "Type": kind} for name, kind in POPULATION_COLUMNS]
        storage = {"InputFormat": TEXT_INPUT, "OutputFormat": TEXT_OUTPUT,
                   "SerdeInfo": {"SerializationLibrary": JSON_SERDE, "Parameters": {"ignore.malformed.json": "false"}}}
        parameters = {"classification": "json", "EXTERNAL": "TRUE"}
        described = f"US population by year, the normalized copy of the DataUSA answer: s3://{bucket}/{table.keys[0]}"
    else:
        columns = [{"Name": name, "Type": "string"} for name in table.columns]
        storage = {"InputFormat": SYMLINK_INPUT if reads == "symlink" else TEXT_INPUT, "OutputFormat": TEXT_OUTPUT,
                   "SerdeInfo": {"SerializationLibrary": DELIMITED_SERDE,
                                 "Parameters": {"field.delim": "\t", "serialization.format": "\t"}}}
        parameters = {"classification": "csv", "skip.header.line.count": "1", "EXTERNAL": "TRUE"}
        how = (f"read through the manifest {manifest_key(table.name)}" if reads == "symlink"
               else f"read from its copy {copy_key(table.name)}")
        described = (f"BLS file s3://{bucket}/{table.keys[0]} as strings, untrimmed (query {table.clean_view}); "
                     f"{how}")
    return {
        "Name": table.name,
        "Description": described[:2048],
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "StorageDescriptor": {"Columns": columns, "Location": f"s3://{bucket}/{location(table, reads)}", **storage},
    }


def _check_reads_only_mirror(table: Table, mirror_prefix: str | None = None) -> None:
    """A table reads its survey's mirrored files (mirror_prefix, when given: nothing outside that folder, and no
    deeper folder) or the population copy, and never the pipeline's, reports' or change log's objects."""
    for path in (*table.keys, location(table)):
        if path.startswith(NEVER_READ_PREFIXES):
            raise CatalogError(f"table {table.name} would read s3://…/{path}: the pipeline's, reports' and change "
                               "log's objects are never a table's")
    if mirror_prefix is not None:
        for key in table.keys:
            if not key.startswith(mirror_prefix) or "/" in key[len(mirror_prefix):]:
                raise CatalogError(f"table {table.name} would read {key}, outside its survey's folder {mirror_prefix}")


def sql_text(name: str) -> str:
    """An SQL file's statement, without its leading comment block or a closing semicolon."""
    lines = (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8").splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip().rstrip(";").strip()


def views(survey: str, tables: Iterable[Table]) -> list[tuple[str, str]]:
    """(view name, SELECT) for every view of the survey's tables, each after the views it reads: each table's
    <table>_clean, then the label views of catalog_labels (left out where a file they read is not mirrored)."""
    from . import catalog_labels

    tables = [t for t in tables if t.kind != "population"]
    return [(t.clean_view, _clean_select(t)) for t in tables] + catalog_labels.label_views(survey, tables)


def missing_for_labels(survey: str, tables: Iterable[Table]) -> list[str]:
    """The files the survey's label views would read that are not mirrored (empty: every label view exists)."""
    from . import catalog_labels

    return catalog_labels.missing_for_labels(survey, [t for t in tables if t.kind != "population"])


_READ_NAME = re.compile(r'\b(?:FROM|JOIN)\s+(?:"((?:[^"]|"")+)"|([a-z_][a-z0-9_]*))', re.IGNORECASE)


def read_names(select: str) -> list[str]:
    """The tables and views a SELECT reads (after FROM and JOIN, quoted or not)."""
    return [quoted.replace('""', '"') if quoted else plain for quoted, plain in _READ_NAME.findall(select)]


def _clean_select(table: Table) -> str:
    """A mapping file's view: every column trimmed, '' made NULL, the CR of a CRLF line end dropped from the last
    column, blank lines left out (sql/data_view.sql says why each of these is needed in both engines)."""
    if table.kind == "data":
        return sql_text("data_view").format(table=quote(table.name))
    last = table.columns[-1]

    def trimmed(column: str) -> str:
        read = f"REPLACE({quote(column)}, CHR(13), '')" if column == last else quote(column)
        return f"NULLIF(TRIM({read}), '') AS {quote(column)}"

    return ("SELECT\n    " + ",\n    ".join(map(trimmed, table.columns)) + f"\nFROM {quote(table.name)}\n"
            f"WHERE TRIM({quote(table.columns[0])}) <> ''")


def view_ddl(name: str, select: str) -> str:
    """CREATE OR REPLACE VIEW: the same statement for Athena (run through StartQueryExecution) and DuckDB."""
    return f"CREATE OR REPLACE VIEW {quote(name)} AS\n{select}"


def report_queries(data_file: str, population: str = POPULATION_TABLE, survey: str = REPORT_SURVEY) -> dict[str, str]:
    """The three reports' SQL on the data file the Lambda reports on (settings.data_file, of the survey pr);
    series_population takes two parameters, the series and the period."""
    data = quote(table_name(survey, data_file) + CLEAN_SUFFIX)
    return {name: sql_text(name).format(data=data, population=quote(population)) for name in REPORT_QUERIES}


def apply_tables(glue: Any, database: str, table_inputs: Iterable[dict]) -> dict[str, list[str]]:
    """Create each table in the Glue database, or update it when its definition differs; a table already defined
    so is left alone, so a second call with the same definitions changes nothing. Returns the names by outcome."""
    outcome: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    for table_input in table_inputs:
        name = table_input["Name"]
        try:
            current = glue.get_table(DatabaseName=database, Name=name)["Table"]
        except glue.exceptions.EntityNotFoundException:
            glue.create_table(DatabaseName=database, TableInput=table_input)
            outcome["created"].append(name)
            continue
        if _defines(current, table_input):
            outcome["unchanged"].append(name)
        else:
            glue.update_table(DatabaseName=database, TableInput=table_input)
            outcome["updated"].append(name)
    return outcome


def _defines(current: Any, wanted: Any) -> bool:
    """Whether a GetTable answer already holds everything a TableInput sets (Glue and Athena add fields and table
    parameters of their own, which are not a difference)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(_defines(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(current, list) and len(current) == len(wanted) and all(map(_defines, current, wanted))
    return current == wanted
