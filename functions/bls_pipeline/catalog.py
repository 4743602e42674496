"""The SQL catalog of the mirror: the tables and views each mirrored survey gets, named and defined in one place, for
Athena (Glue TableInput dicts and view DDL) and for DuckDB (local_runner.sql) alike. No AWS calls here except in
apply_tables.

Names: a file's table is its name lower-cased with every run of other characters than a-z and 0-9 made one
underscore (pr.data.0.Current -> pr_data_0_current, pr.series -> pr_series), as Glue and Athena want; its columns
are its header row's, lower-cased the same way (Glue stores column names lower-case). Every column is a string, and
the header row is skipped. Each table has a view <table>_clean that trims every column (data files: sql/data_view.sql,
which also types year and value); each data file of a survey with a sql/labels_<survey>.sql also gets
<table>_labeled. Files without a tab in their first line (pr.txt, pr.contacts) are documents, not tables.

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

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import CATALOG_PREFIX, CHANGES_PREFIX, REPORTS_PREFIX
from .population import normalized_population_key

SQL_DIR = Path(__file__).with_name("sql")
# The symlink manifests: config.Settings.validate keeps every mirror out of this folder, so no prune deletes them.
SYMLINKS_PREFIX = CATALOG_PREFIX + "symlinks/"
MANIFEST_NAME = "manifest.txt"
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
    """The mirrored files cannot be described as tables (two files would share a name, a header repeats a column)."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]  # the S3 objects the table reads, and nothing else
    kind: str  # "data", "mapping" or "population"

    @property
    def clean_view(self) -> str:
        return self.name + CLEAN_SUFFIX


def identifier(text: str) -> str:
    """A Glue/Athena name for a file or a header column: lower-case letters, digits and single underscores."""
    name = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    if not name:
        raise CatalogError(f"{text!r} has no letter or digit to name a table or column by")
    return name if name[0].isalpha() else "t_" + name


def header_columns(header: str) -> tuple[str, ...]:
    columns = tuple(identifier(c) for c in header.lstrip("\ufeff").rstrip("\r\n").split("\t"))
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise CatalogError(f"the header {header.strip()!r:.120} names column(s) {', '.join(repeated)} twice")
    return columns


def survey_tables(survey: str, mirror_prefix: str, headers: Mapping[str, str]) -> list[Table]:
    """The tables of one mirrored survey, by name. headers: each mirrored file's name -> its first line."""
    tables: dict[str, Table] = {}
    for file_name, header in sorted(headers.items()):
        if not file_name.startswith(survey + ".") or "\t" not in header:
            continue
        columns = header_columns(header)
        is_data = file_name.startswith(f"{survey}.data.") and set(DATA_COLUMNS) <= set(columns)
        table = Table(identifier(file_name), columns, (mirror_prefix + file_name,), "data" if is_data else "mapping")
        if table.name in tables:
            raise CatalogError(f"{file_name} and {tables[table.name].keys[0]} would both be table {table.name}")
        _check_reads_only_mirror(table)
        tables[table.name] = table
    return list(tables.values())


def population_table(population_key: str) -> Table:
    table = Table(POPULATION_TABLE, tuple(c for c, _ in POPULATION_COLUMNS),
                  (normalized_population_key(population_key),), "population")
    _check_reads_only_mirror(table)
    return table


def location(table: Table) -> str:
    """The folder the table's LOCATION names: its own manifest folder, or the population copy's own folder."""
    if table.kind == "population":
        return table.keys[0].rpartition("/")[0] + "/"
    return f"{SYMLINKS_PREFIX}{table.name}/"


def manifests(tables: Iterable[Table], bucket: str) -> dict[str, bytes]:
    """The symlink manifest of each BLS table: key -> the s3:// URIs of its files, one a line."""
    return {location(t) + MANIFEST_NAME: "".join(f"s3://{bucket}/{key}\n" for key in t.keys).encode()
            for t in tables if t.kind != "population"}


def glue_table_input(table: Table, bucket: str) -> dict[str, Any]:
    """The Glue TableInput of a table (CreateTable / UpdateTable)."""
    _check_reads_only_mirror(table)
    if table.kind == "population":
        columns = [{"Name": name, "Type": kind} for name, kind in POPULATION_COLUMNS]
        storage = {"InputFormat": TEXT_INPUT, "OutputFormat": TEXT_OUTPUT,
                   "SerdeInfo": {"SerializationLibrary": JSON_SERDE, "Parameters": {"ignore.malformed.json": "false"}}}
        parameters = {"classification": "json", "EXTERNAL": "TRUE"}
        described = f"US population by year, the normalized copy of the DataUSA answer: s3://{bucket}/{table.keys[0]}"
    else:
        columns = [{"Name": name, "Type": "string"} for name in table.columns]
        storage = {"InputFormat": SYMLINK_INPUT, "OutputFormat": TEXT_OUTPUT,
                   "SerdeInfo": {"SerializationLibrary": DELIMITED_SERDE,
                                 "Parameters": {"field.delim": "\t", "serialization.format": "\t"}}}
        parameters = {"classification": "csv", "skip.header.line.count": "1", "EXTERNAL": "TRUE"}
        described = (f"BLS file s3://{bucket}/{table.keys[0]} as strings, untrimmed (query {table.clean_view}); "
                     f"read through the manifest {location(table)}{MANIFEST_NAME}")
    return {
        "Name": table.name,
        "Description": described[:2048],
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "StorageDescriptor": {"Columns": columns, "Location": f"s3://{bucket}/{location(table)}", **storage},
    }


def _check_reads_only_mirror(table: Table) -> None:
    for path in (*table.keys, location(table)):
        if path.startswith(NEVER_READ_PREFIXES):
            raise CatalogError(f"table {table.name} would read s3://…/{path}: the pipeline's, reports' and change "
                               "log's objects are never a table's")


def sql_text(name: str) -> str:
    """An SQL file's statement, without its leading comment block or a closing semicolon."""
    lines = (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8").splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip().rstrip(";").strip()


def views(survey: str, tables: Iterable[Table]) -> list[tuple[str, str]]:
    """(view name, SELECT) for every view of the survey's tables, each after the views it reads.

    A labels view is left out when a table it reads is not mirrored (a survey filter, a partial directory)."""
    tables = [t for t in tables if t.kind != "population"]
    found = [(t.clean_view, _clean_select(t)) for t in tables]
    labels_file = SQL_DIR / f"labels_{survey}.sql"
    if labels_file.is_file():
        names = {name for name, _ in found}
        for table in (t for t in tables if t.kind == "data"):
            select = sql_text(labels_file.stem).format(data=table.clean_view)
            if set(read_names(select)) <= names:
                found.append((table.name + LABELED_SUFFIX, select))
    return found


def missing_for_labels(survey: str, tables: Iterable[Table]) -> list[str]:
    """The views the survey's labels view reads that its tables do not give (empty: the labels views exist)."""
    labels_file = SQL_DIR / f"labels_{survey}.sql"
    if not labels_file.is_file():
        return []
    have = {t.clean_view for t in tables}
    return sorted(n for n in read_names(sql_text(labels_file.stem).format(data="data")) if n not in have | {"data"})


def read_names(select: str) -> list[str]:
    return re.findall(r"\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)", select, flags=re.IGNORECASE)


def _clean_select(table: Table) -> str:
    """A mapping file's view: every column trimmed, '' made NULL, the CR of a CRLF line end dropped from the last
    column, blank lines left out (sql/data_view.sql says why each of these is needed in both engines)."""
    if table.kind == "data":
        return sql_text("data_view").format(table=table.name)
    last = table.columns[-1]
    trimmed = [f"NULLIF(TRIM({f'REPLACE({c}, CHR(13), {chr(39) * 2})' if c == last else c}), '') AS {c}"
               for c in table.columns]
    return "SELECT\n    " + ",\n    ".join(trimmed) + f"\nFROM {table.name}\nWHERE TRIM({table.columns[0]}) <> ''"


def view_ddl(name: str, select: str) -> str:
    """CREATE OR REPLACE VIEW: the same statement for Athena (run through StartQueryExecution) and DuckDB."""
    return f"CREATE OR REPLACE VIEW {name} AS\n{select}"


def report_queries(data_file: str, population: str = POPULATION_TABLE) -> dict[str, str]:
    """The three reports' SQL on the data file the Lambda reports on (settings.data_file); series_population takes
    two parameters, the series and the period."""
    data = identifier(data_file) + CLEAN_SUFFIX
    return {name: sql_text(name).format(data=data, population=population) for name in REPORT_QUERIES}


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
