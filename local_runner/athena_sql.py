"""Athena's queries run for real in the local engine: DuckDB over moto's Glue Data Catalog and moto's S3 objects.

moto's Athena runs nothing: every StartQueryExecution "succeeds", so an invalid view DDL passes locally and fails on
AWS, and no query has a result. LocalAthena replaces moto's StartQueryExecution, GetQueryExecution and
GetQueryResults (its moto_* methods; local_runner/moto_patches.py applies them, each guarded by the signature it
replaces): a query runs in DuckDB when it starts (it has ended when StartQueryExecution answers); GetQueryExecution
answers SUCCEEDED, or FAILED with the error's first line as StateChangeReason; GetQueryResults pages the rows as
Athena does (the column names first, then at most 1,000 rows a page, NextToken); the result file is written to the
workgroup's result location in moto's S3, <OutputLocation><QueryExecutionId>.csv (a DDL's .txt), as Athena does
(Athena User Guide, "Find query output files in Amazon S3": DML results are CSV, DDL results plain text).

Statements: SELECT (also WITH ... and VALUES ...), CREATE [OR REPLACE] VIEW and DROP VIEW [IF EXISTS]. Any other
statement (INSERT, CREATE TABLE [AS], MSCK, ALTER, SHOW, ...) FAILS with a reason naming it: the engine models neither
its effects nor the rights it needs. A CREATE VIEW that DuckDB accepts also creates (or updates) the Glue table that
Athena creates for a view (view_table_input: VIRTUAL_VIEW, the Presto view text); DROP VIEW drops it in both; a failed
statement changes nothing.

The catalog in DuckDB: one in-memory database attached as awsdatacatalog, a schema per Glue database, and for each
Glue table a DuckDB view of the same name. Before a statement runs, what it reads (its tables and views, and through
each view what the view reads, catalog_reads) is brought in line with Glue, and every object of the databases it
touches that Glue no longer has is dropped:
- an EXTERNAL_TABLE is a view over its files as they are in S3 at that moment: for a SymlinkTextInputFormat table,
  the files its manifests list (every object under its LOCATION is a manifest, names starting with _ or . left out,
  as Hive's hidden files; a manifest that points elsewhere reads elsewhere); for a plain folder table, the objects
  under its LOCATION. LazySimpleSerDe files are read as that SerDe reads them (tab or the table's field.delim, no
  quoting or escaping, skip.header.line.count lines skipped per file, a short row padded with NULLs, fields past the
  columns ignored, an empty field '' and \\N NULL), JSON lines with DuckDB's read_json; columns of other types than
  string are read as text and TRY_CAST, as Hive makes an unreadable value NULL. Each object is written once to a
  temporary folder of the engine's life, named by bucket, key and ETag (ObjectFiles), so an unchanged table is not
  written again;
- a VIRTUAL_VIEW is created again from its Presto view SQL, after the views it reads (so an engine whose Glue tables
  came from a state directory's glue-tables.json can query the views).
Only what a statement reads is brought in line, not the whole database: a tree's catalog has some 3,000 tables and
views and the catalog step sends one DDL per view. A DDL reads no data (Athena's CREATE VIEW reads only the catalog),
so for a DDL the tables are defined from their Glue columns alone, without their files; a SELECT reads the files.

Dialect: Athena engine version 3 is Trino; where Trino and DuckDB differ on what this engine runs, the difference is
translated here, each in a test of tests/test_athena_local.py:
1. ExecutionParameters: Athena puts its list of SQL literals in place of the ? placeholders, in order (a ? in a string,
   a quoted identifier or a comment is none); a count that differs fails as Trino fails it (substitute_parameters).
2. Identifiers: double quotes in both. Trino's reserved words (trinodb/trino docs, "Keywords and identifiers", the
   list Athena's "Escape reserved keywords in queries" gives for SELECT and views) fail unquoted where DuckDB, as
   PostgreSQL, accepts any keyword: after AS and after a dot (SELECT 1 AS left, t.order). Those are refused here
   (reserved_identifiers); elsewhere DuckDB rejects most of them itself, with its own reason.
3. Integer division: Trino's 7 / 2 is 3, DuckDB's 3.5 unless integer_division is set (it is).
4. Names: Trino lower-cases identifiers, so result columns and a view's columns are lower-case; Glue stores names
   lower-case.
5. Types in results and in a view's columns get Trino's names (varchar, integer, decimal(38,6), array(integer)) and
   Hive's in Glue (string, int, ...); DuckDB's HUGEINT (its SUM of integers) is Trino's bigint.
6. Values are rendered as Trino renders them: a double as Java's Double.toString (3.17437383E8, 1234.5), a decimal
   with its scale, an array as [a, b]; NULL as no VarCharValue. AWS documents none of these renderings; the tests
   compare numbers as numbers, not as text.
7. Only Athena's catalog is readable: a table function (read_csv, ...) or a name that is no Glue table fails, where
   DuckDB would read a local file or a Python variable of that name.
Not translated (known differences, none met by the catalog's SQL): functions one engine has and the other lacks; a
blank line (a row in Hive, skipped by DuckDB); the CR of a CRLF line end (DuckDB drops it; whether Athena keeps it in
a symlink table's last column is unverified, sql/data_view.sql copes with both); CREATE VIEW's check that a view's
columns are all named; the workgroup's bytes-scanned cutoff; a view created in another database than the query's
(DuckDB reads the view's unqualified names in the view's database, Trino in the query's).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .lambda_emulation import ACCOUNT, REGION

CATALOG = "awsdatacatalog"
DEFAULT_DATABASE = "default"
MAX_RESULTS = 1000  # Athena API Reference, GetQueryResults: MaxResults at most 1000
MAX_REASON_CHARS = 1000
STATEMENTS = "SELECT, CREATE [OR REPLACE] VIEW and DROP VIEW [IF EXISTS]"

SYMLINK_INPUT = "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat"
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
LAZY_SIMPLE_SERDE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
JSON_SERDES = ("org.openx.data.jsonserde.JsonSerDe", "org.apache.hive.hcatalog.data.JsonSerDe")
HIVE_NULL = "\\N"  # LazySimpleSerDe's serialization.null.format unless the table sets one
PRESTO_VIEW = re.compile(r"^/\* Presto View: (?P<encoded>[A-Za-z0-9+/=\s]*) \*/$")

# Trino's reserved keywords (docs/src/main/sphinx/language/reserved.md), without AUTO, reserved only by Trino releases
# newer than Athena's engine.
TRINO_RESERVED = frozenset("""
ALTER AND AS BETWEEN BY CASE CAST CONSTRAINT CREATE CROSS CUBE CURRENT_CATALOG CURRENT_DATE CURRENT_PATH CURRENT_ROLE
CURRENT_SCHEMA CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER DEALLOCATE DELETE DESCRIBE DISTINCT DROP ELSE END ESCAPE
EXCEPT EXECUTE EXISTS EXTRACT FALSE FOR FROM FULL GROUP GROUPING HAVING IN INNER INSERT INTERSECT INTO IS JOIN
JSON_ARRAY JSON_EXISTS JSON_OBJECT JSON_QUERY JSON_TABLE JSON_VALUE LEFT LIKE LISTAGG LOCALTIME LOCALTIMESTAMP NATURAL
NORMALIZE NOT NULL ON OR ORDER OUTER PREPARE PRIMARY RECURSIVE RIGHT ROLLUP SELECT SKIP TABLE THEN TRIM TRUE UESCAPE
UNION UNNEST USING VALUES WHEN WHERE WITH
""".split())
# The words that name a statement, to say which one is refused ("INSERT INTO", "CREATE EXTERNAL TABLE").
_STATEMENT_WORDS = frozenset("""
ALTER ANALYZE CREATE DATABASE DEALLOCATE DELETE DESCRIBE DROP EXECUTE EXPLAIN EXTERNAL FROM FUNCTION INSERT INTO MERGE
MSCK OPTIMIZE OR PREPARE REPAIR REPLACE SCHEMA SHOW TABLE TABLES UNLOAD UPDATE USE VACUUM VIEW VIEWS
""".split())
DDL_WORDS = ("ALTER", "CREATE", "DESCRIBE", "DROP", "MSCK", "SHOW")  # what Athena reports as StatementType DDL

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<param>\?)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


class AthenaQueryError(Exception):
    """Why a query FAILED: its StateChangeReason."""


@dataclass(frozen=True)
class Token:
    kind: str  # word, quoted, string, number, param, other
    text: str
    start: int


def tokens(sql: str) -> list[Token]:
    """The SQL's tokens, without spaces and comments."""
    found = []
    for match in _TOKEN.finditer(sql):
        if match.lastgroup not in ("space", "comment"):
            found.append(Token(match.lastgroup, match.group(), match.start()))
    return found


def _position(sql: str, offset: int) -> str:
    line = sql.count("\n", 0, offset) + 1
    return f"line {line}:{offset - (sql.rfind(chr(10), 0, offset) + 1) + 1}"


def substitute_parameters(sql: str, parameters: list[str] | None) -> str:
    """ExecutionParameters in place of the ? placeholders, in order, each as the expression it is."""
    parameters = parameters or []
    places = [t for t in tokens(sql) if t.kind == "param"]
    if len(places) != len(parameters):
        raise AthenaQueryError(f"Incorrect number of parameters: expected {len(places)} but found {len(parameters)}")
    for place, value in reversed(list(zip(places, parameters))):
        sql = f"{sql[:place.start]}({value}){sql[place.start + 1:]}"
    return sql


def reserved_identifiers(sql: str) -> list[str]:
    """Trino's reserved words used unquoted as a name right after AS or a dot, where DuckDB accepts them: the reason
    Athena would fail with, one per word found."""
    found, previous = [], None
    for token in tokens(sql):
        if (token.kind == "word" and token.text.upper() in TRINO_RESERVED and previous is not None
                and ((previous.kind == "word" and previous.text.upper() == "AS") or previous.text == ".")):
            found.append(f"{_position(sql, token.start)}: mismatched input '{token.text}'. Expecting: <identifier> "
                         f"({token.text.upper()} is reserved in Athena: quote it, \"{token.text.lower()}\")")
        previous = token
    return found


@dataclass(frozen=True)
class Statement:
    """One statement as this engine runs it."""

    kind: str  # "SELECT", "CREATE VIEW" or "DROP VIEW"
    sql: str  # the SELECT as DuckDB runs it; a CREATE VIEW's query (Athena's originalSql); "" for DROP VIEW
    database: str  # the database it runs in (QueryExecutionContext)
    target: tuple[str, str] | None = None  # a DDL's (database, view)
    replace: bool = False  # CREATE OR REPLACE VIEW
    if_exists: bool = False  # DROP VIEW IF EXISTS
    reserved: tuple[str, ...] = ()  # reserved_identifiers' findings: raised after DuckDB's own parse, which comes first

    @property
    def is_ddl(self) -> bool:
        return self.kind != "SELECT"


_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*([A-Za-z_]*)", re.DOTALL)


def statement_type(query: str) -> str:
    """DDL or DML, as Athena reports a query's StatementType."""
    return "DDL" if _FIRST_WORD.match(query).group(1).upper() in DDL_WORDS else "DML"


def parse_statement(query: str, database: str, parameters: list[str] | None = None) -> Statement:
    """The statement a query string holds; AthenaQueryError (its FAILED reason) when this engine does not run it."""
    found = tokens(query)
    while found and found[-1].text == ";":
        found.pop()
    if not found:
        raise AthenaQueryError("line 1:1: mismatched input '<EOF>'. Expecting: a statement")
    if any(t.text == ";" for t in found):
        raise AthenaQueryError(f"Only one sql statement is allowed. Got: {query.strip()[:200]}")
    text = query[found[0].start:found[-1].start + len(found[-1].text)]
    words = [t.text.upper() if t.kind == "word" else t.text for t in found]
    if words[0] in ("SELECT", "WITH", "VALUES", "("):
        return Statement("SELECT", substitute_parameters(text, parameters), database,
                         reserved=tuple(reserved_identifiers(text)))
    if words[:2] == ["CREATE", "VIEW"] or words[:4] == ["CREATE", "OR", "REPLACE", "VIEW"]:
        replace = words[1] == "OR"
        name_at = 4 if replace else 2
        target, after = _qualified_name(found, name_at, database, query)
        if after >= len(found) or words[after] != "AS" or after + 1 >= len(found):
            raise AthenaQueryError(f"{_position(query, found[min(after, len(found) - 1)].start)}: "
                                   "mismatched input. Expecting: 'AS' and the view's query")
        select = query[found[after + 1].start:found[-1].start + len(found[-1].text)]
        if parameters:
            raise AthenaQueryError("local engine: ExecutionParameters are for a SELECT, not for CREATE VIEW")
        reserved = _reserved_name_parts(found[name_at:after], query) + reserved_identifiers(select)
        return Statement("CREATE VIEW", select, database, target, replace=replace, reserved=tuple(reserved))
    if words[:2] == ["DROP", "VIEW"]:
        if_exists = words[2:4] == ["IF", "EXISTS"]
        target, after = _qualified_name(found, 4 if if_exists else 2, database, query)
        if after != len(found):
            raise AthenaQueryError(f"{_position(query, found[after].start)}: mismatched input '{found[after].text}'. "
                                   "Expecting: <EOF>")
        name_at = 4 if if_exists else 2
        return Statement("DROP VIEW", "", database, target, if_exists=if_exists,
                         reserved=tuple(_reserved_name_parts(found[name_at:after], query)))
    named = []
    for word in words:
        if word not in _STATEMENT_WORDS or len(named) == 3:
            break
        named.append(word)
    raise AthenaQueryError(
        f"local engine: {' '.join(named) or words[0]} is not a statement this engine runs (it runs {STATEMENTS}); "
        "its effects and the rights it needs are not modelled (local_runner/athena_sql.py, local_runner/service_clients.py)")


def _reserved_name_parts(name: list[Token], query: str) -> list[str]:
    return [f"{_position(query, t.start)}: mismatched input '{t.text}'. Expecting: <identifier> ({t.text.upper()} is "
            f"reserved in Athena: quote it, \"{t.text.lower()}\")"
            for t in name if t.kind == "word" and t.text.upper() in TRINO_RESERVED]


def _name(token: Token) -> str:
    return token.text[1:-1].replace('""', '"').lower() if token.kind == "quoted" else token.text.lower()


def _qualified_name(found: list[Token], at: int, database: str, query: str) -> tuple[tuple[str, str], int]:
    """(database, name) of a [catalog.][database.]name starting at found[at], and the index after it."""
    parts, index = [], at
    while index < len(found) and found[index].kind in ("word", "quoted"):
        parts.append(_name(found[index]))
        index += 1
        if index < len(found) and found[index].text == "." and len(parts) < 3:
            index += 1
        else:
            break
    if not parts:
        where = found[at].start if at < len(found) else len(query)
        raise AthenaQueryError(f"{_position(query, where)}: mismatched input. Expecting: <identifier>")
    if len(parts) == 3 and parts[0] != CATALOG:
        raise AthenaQueryError(f"Catalog '{parts[0]}' does not exist")
    return ((parts[-2] if len(parts) > 1 else database), parts[-1]), index


# -- what a statement reads -----------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _parsed_reads(select: str) -> tuple[tuple[tuple[str, str, str], ...], tuple[str, ...]]:
    """((catalog, schema, table) of every table reference that is not a CTE, table functions called) of a SELECT,
    from DuckDB's parse tree."""
    with _PARSER.lock:
        answer = json.loads(_PARSER.connection().execute("SELECT json_serialize_sql(?)", [select]).fetchone()[0])
    if answer.get("error"):
        raise AthenaQueryError(f"Parser Error: {answer.get('error_message', 'the query does not parse')}")
    references: list[tuple[str, str, str]] = []
    functions: list[str] = []
    common: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for entry in (node.get("cte_map") or {}).get("map", []):
                common.add(entry["key"].lower())
            if node.get("type") == "BASE_TABLE":
                references.append(((node.get("catalog_name") or "").lower(), (node.get("schema_name") or "").lower(),
                                   node["table_name"].lower()))
            elif node.get("type") == "TABLE_FUNCTION":
                functions.append((node.get("function") or {}).get("function_name", "?").lower())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(answer)
    kept = tuple(dict.fromkeys(r for r in references if r[0] or r[1] or r[2] not in common))
    return kept, tuple(functions)


class _Parser:
    """A DuckDB connection of its own for parsing (json_serialize_sql), used by the IAM checks and the runs alike."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._connection: Any = None

    def connection(self) -> Any:
        if self._connection is None:
            import duckdb

            self._connection = duckdb.connect()
        return self._connection


_PARSER = _Parser()


def names_read(select: str, database: str) -> list[tuple[str, str]]:
    """(database, name) of each table or view a SELECT names; AthenaQueryError for what Athena cannot read."""
    references, functions = _parsed_reads(select)
    for function in functions:
        if function != "unnest":
            raise AthenaQueryError(f"local engine: {function}() reads outside Athena's catalog (a DuckDB table "
                                   "function): Athena has no such function")
    names = []
    for catalog, schema, table in references:
        if catalog and catalog != CATALOG:
            raise AthenaQueryError(f"Catalog '{catalog}' does not exist")
        names.append((schema or database, table))
    return names


@dataclass(frozen=True)
class GlueObject:
    """A Glue table or view as one statement read it."""

    database: str
    name: str
    table: dict  # the GetTable answer's Table (moto's FakeTable.as_dict())

    @property
    def is_view(self) -> bool:
        return self.table.get("TableType") == "VIRTUAL_VIEW"

    @property
    def signature(self) -> str:
        fields = ("TableType", "StorageDescriptor", "Parameters", "PartitionKeys", "ViewOriginalText")
        return json.dumps({k: self.table.get(k) for k in fields}, sort_keys=True, default=str)

    def view_definition(self) -> dict:
        """The Presto view JSON of an Athena view (originalSql, catalog, schema, columns)."""
        found = PRESTO_VIEW.match(self.table.get("ViewOriginalText") or "")
        if found is None:
            raise AthenaQueryError(f"local engine: view {self.database}.{self.name} is not an Athena (Presto) view: "
                                   "its ViewOriginalText has no /* Presto View: ... */")
        return json.loads(base64.b64decode(found.group("encoded")))


@dataclass
class CatalogReads:
    """The Glue objects a statement reads, each before the views that read it, and the names it reads that Glue does
    not have."""

    objects: list[GlueObject] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)


def _glue() -> Any:
    from moto.glue.models import glue_backends

    return glue_backends[ACCOUNT][REGION]


def glue_object(database: str, name: str) -> GlueObject | None:
    from moto.glue.exceptions import EntityNotFoundException

    try:
        return GlueObject(database, name, _glue().get_table(database, name).as_dict())
    except EntityNotFoundException:
        return None


def catalog_reads(statement: Statement) -> CatalogReads:
    """What the statement reads in Glue, through views transitively, each object after those it reads."""
    reads = CatalogReads()
    if statement.kind == "DROP VIEW":
        return reads
    seen: set[tuple[str, str]] = set()

    def visit(select: str, database: str, path: tuple[tuple[str, str], ...]) -> None:
        for key in names_read(select, database):
            if key in path:
                raise AthenaQueryError(f"View is recursive: {'.'.join(key)} (through {', '.join('.'.join(p) for p in path)})")
            if key in seen:
                continue
            seen.add(key)
            found = glue_object(*key)
            if found is None:
                reads.missing.append(key)
                continue
            if found.is_view:
                definition = found.view_definition()
                visit(definition["originalSql"], definition.get("schema") or found.database, (*path, key))
            reads.objects.append(found)

    visit(statement.sql, statement.database, (statement.target,) if statement.target else ())
    return reads


# -- a table's files in S3 -----------------------------------------------------------------------------------------

def _s3() -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.strip().removeprefix("s3://").partition("/")
    return bucket, key


def _current_object(bucket: str, key: str) -> Any:
    from moto.s3.exceptions import MissingBucket

    try:
        return _s3().get_object(bucket, key)
    except MissingBucket:
        return None


def _objects_under(bucket: str, prefix: str) -> list[str]:
    """The keys of the current objects under a prefix that Hive reads: no folder markers, no hidden (_ or .) names."""
    from moto.s3.exceptions import MissingBucket

    try:
        keys = list(_s3().get_bucket(bucket).keys.keys())
    except MissingBucket:
        raise AthenaQueryError(f"local engine: the bucket of s3://{bucket}/{prefix} does not exist") from None
    found = []
    for key in sorted(k for k in keys if k.startswith(prefix) and not k.endswith("/")):
        if any(part.startswith(("_", ".")) for part in key[len(prefix):].split("/")):
            continue
        if _current_object(bucket, key) is not None:
            found.append(key)
    return found


@dataclass
class TableFiles:
    """What reading a table reads in S3: the folders listed, the manifests read, the data objects read."""

    listed: list[tuple[str, str]] = field(default_factory=list)  # (bucket, prefix)
    manifests: list[tuple[str, str]] = field(default_factory=list)
    data: list[tuple[str, str]] = field(default_factory=list)


def table_files(table: GlueObject) -> TableFiles:
    """A table's S3 reads: its LOCATION listed; for a symlink table each manifest read and each target's folder
    listed before the target is read (as Trino's Hive connector loads a symlink table's splits); for a folder table
    the objects under it."""
    storage = table.table.get("StorageDescriptor") or {}
    location = storage.get("Location") or ""
    if not location.startswith("s3://"):
        raise AthenaQueryError(f"local engine: table {table.database}.{table.name} has no s3:// LOCATION ({location!r})")
    bucket, prefix = split_s3_uri(location)
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    files = TableFiles(listed=[(bucket, prefix)])
    keys = _objects_under(bucket, prefix)
    if storage.get("InputFormat") != SYMLINK_INPUT:
        files.data = [(bucket, key) for key in keys]
        return files
    for key in keys:
        files.manifests.append((bucket, key))
        for line in _current_object(bucket, key).value.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            target = split_s3_uri(line)
            if _current_object(*target) is None:
                raise AthenaQueryError(f"HIVE_UNKNOWN_ERROR: s3://{bucket}/{key} lists {line.strip()}, which does not exist")
            folder = (target[0], target[1].rpartition("/")[0] + "/" if "/" in target[1] else "")
            if folder not in files.listed:
                files.listed.append(folder)
            files.data.append(target)
    return files


class ObjectFiles:
    """S3 objects as local files for DuckDB, in a temporary folder of the engine's life: one file per bucket, key and
    ETag, so an object read again unchanged is not written again. Older versions stay until the engine ends, since a
    DuckDB view not yet brought in line may still name them."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._written: dict[tuple[str, str, str], Path] = {}

    def path(self, bucket: str, key: str) -> tuple[Path, str]:
        """The object's file and ETag."""
        found = _current_object(bucket, key)
        if found is None:
            raise AthenaQueryError(f"HIVE_UNKNOWN_ERROR: s3://{bucket}/{key} does not exist")
        etag = found.etag
        path = self._written.get((bucket, key, etag))
        if path is None:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="local-athena-"))
            path = self._root / hashlib.sha256(f"{bucket}\0{key}\0{etag}".encode()).hexdigest()
            path.write_bytes(found.value)
            self._written[(bucket, key, etag)] = path
        return path, etag

    @property
    def written(self) -> int:
        """How many object versions were written."""
        return len(self._written)

    @property
    def folder(self) -> Path | None:
        """The temporary folder, once the first object is written."""
        return self._root

    def close(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
            self._written.clear()


# -- types and values as Athena gives them ----------------------------------------------------------------------------

_GLUE_TO_DUCKDB = {"string": "VARCHAR", "varchar": "VARCHAR", "char": "VARCHAR", "int": "INTEGER", "integer": "INTEGER",
                   "bigint": "BIGINT", "smallint": "SMALLINT", "tinyint": "TINYINT", "double": "DOUBLE",
                   "float": "FLOAT", "real": "FLOAT", "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP"}
_DUCKDB_TO_TRINO = {"VARCHAR": ("varchar", "string"), "INTEGER": ("integer", "int"), "BIGINT": ("bigint", "bigint"),
                    "HUGEINT": ("bigint", "bigint"), "UBIGINT": ("bigint", "bigint"), "UINTEGER": ("bigint", "bigint"),
                    "SMALLINT": ("smallint", "smallint"), "TINYINT": ("tinyint", "tinyint"),
                    "DOUBLE": ("double", "double"), "FLOAT": ("real", "float"), "BOOLEAN": ("boolean", "boolean"),
                    "DATE": ("date", "date"), "TIMESTAMP": ("timestamp(3)", "timestamp"), '"NULL"': ("unknown", "void")}
_PRECISION = {"varchar": 2147483647, "integer": 10, "bigint": 19, "smallint": 5, "tinyint": 3, "double": 17, "real": 7,
              "timestamp": 3, "date": 0, "boolean": 0}


def duckdb_type(glue_type: str) -> str:
    """The DuckDB type a Glue column type is read as."""
    kind = glue_type.strip().lower()
    decimal = re.fullmatch(r"decimal\s*\((\d+)\s*,\s*(\d+)\)", kind)
    if decimal:
        return f"DECIMAL({decimal.group(1)}, {decimal.group(2)})"
    base = re.sub(r"\(.*\)$", "", kind)
    if base not in _GLUE_TO_DUCKDB:
        raise AthenaQueryError(f"local engine: Glue column type {glue_type!r} is not one this engine reads")
    return _GLUE_TO_DUCKDB[base]


def trino_and_hive_type(duck: str) -> tuple[str, str]:
    """(Trino's name, Hive's name) of a DuckDB result type: what Athena reports, what Glue stores for a view."""
    duck = duck.strip()
    if duck.endswith("[]"):
        trino, hive = trino_and_hive_type(duck[:-2])
        return f"array({trino})", f"array<{hive}>"
    decimal = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", duck)
    if decimal:
        return (f"decimal({decimal.group(1)},{decimal.group(2)})",) * 2
    return _DUCKDB_TO_TRINO.get(duck, (duck.lower(), duck.lower()))


def column_info(name: str, duck: str) -> dict:
    """A ResultSetMetadata.ColumnInfo entry as Athena gives it."""
    trino = trino_and_hive_type(duck)[0]
    base = trino.split("(", 1)[0]
    decimal = re.fullmatch(r"decimal\((\d+),(\d+)\)", trino)
    precision, scale = (int(decimal.group(1)), int(decimal.group(2))) if decimal else (_PRECISION.get(base, 0), 0)
    return {"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": name, "Label": name, "Type": base,
            "Precision": precision, "Scale": scale, "Nullable": "UNKNOWN", "CaseSensitive": base == "varchar"}


def java_double(value: float) -> str:
    """Java's Double.toString, as Trino renders a double: decimal notation from 10^-3 up to 10^7, else
    computerized scientific notation (3.17437383E8); both with the shortest digits that read back the same."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    shown = "".join(map(str, digits))
    return f"{'-' if sign else ''}{shown[0]}.{shown[1:] or '0'}E{len(digits) + exponent - 1}"


def render(value: Any) -> str | None:
    """A value as Athena's VarCharValue; None for NULL."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join("null" if v is None else render(v) for v in value) + "]"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def result_csv(names: list[str], rows: list[list[str | None]]) -> bytes:
    """Athena's result file: every value double-quoted, NULL an empty field."""
    def line(cells: list[str | None]) -> str:
        return ",".join("" if c is None else '"' + c.replace('"', '""') + '"' for c in cells) + "\n"

    return (line(list(names)) + "".join(line(r) for r in rows)).encode()


def view_table_input(name: str, schema: str, original_sql: str, columns: list[tuple[str, str]]) -> dict:
    """The Glue TableInput Athena's CREATE VIEW writes. schema: the database the view's query ran in (its unqualified
    names are read there); columns: (name, DuckDB type)."""
    typed = [(column, *trino_and_hive_type(duck)) for column, duck in columns]
    definition = {"originalSql": original_sql, "catalog": CATALOG, "schema": schema,
                  "columns": [{"name": column, "type": trino} for column, trino, _ in typed]}
    encoded = base64.b64encode(json.dumps(definition).encode()).decode()
    return {
        "Name": name,
        "TableType": "VIRTUAL_VIEW",
        "Parameters": {"presto_view": "true", "comment": "Presto View"},
        "ViewOriginalText": f"/* Presto View: {encoded} */",
        "ViewExpandedText": "/* Presto View */",
        "StorageDescriptor": {"Columns": [{"Name": column, "Type": hive} for column, _, hive in typed],
                              "SerdeInfo": {}},
        "PartitionKeys": [],
    }


# -- where a query's result goes -------------------------------------------------------------------------------------

def _athena() -> Any:
    from moto.athena.models import athena_backends

    return athena_backends[ACCOUNT][REGION]


def result_location(workgroup: str | None, request_configuration: dict | None) -> str | None:
    """The query result location (a folder, ending in /): the workgroup's when it enforces its configuration or the
    request names none, else the request's (Athena User Guide, "Specify a query result location")."""
    found = _athena().work_groups.get(workgroup or "primary")
    configuration = (getattr(found, "configuration", None) or {}) if found else {}
    own = (configuration.get("ResultConfiguration") or {}).get("OutputLocation")
    asked = (request_configuration or {}).get("OutputLocation")
    location = own if configuration.get("EnforceWorkGroupConfiguration") or not asked else asked
    if not location:
        return None
    return location if location.endswith("/") else location + "/"


def result_key(location: str, query_id: str, ddl: bool) -> tuple[str, str]:
    """(bucket, key) of a query's result file."""
    bucket, prefix = split_s3_uri(location)
    return bucket, f"{prefix}{query_id}.{'txt' if ddl else 'csv'}"


# -- running queries ---------------------------------------------------------------------------------------------------

@dataclass
class QueryOutcome:
    """How a query ended: what GetQueryExecution and GetQueryResults answer for it."""

    state: str  # SUCCEEDED or FAILED
    statement_type: str  # DDL or DML
    output: str  # s3:// URI of the result file
    reason: str = ""
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, DuckDB type)
    rows: list[list[str | None]] = field(default_factory=list)
    completed: float = field(default_factory=time.time)


class LocalAthena:
    """The engine's Athena: one DuckDB connection for the engine's life, made on the first query."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._connection: Any = None
        self.files = ObjectFiles()
        # database -> name -> what the DuckDB object of that Glue table or view was made from
        self._defined: dict[str, dict[str, tuple]] = {}
        self.outcomes: dict[str, QueryOutcome] = {}

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            self._defined.clear()
            self.files.close()

    @property
    def connected(self) -> bool:
        """Whether the first query has made the DuckDB connection."""
        return self._connection is not None

    def connection(self) -> Any:
        if self._connection is None:
            import duckdb

            con = duckdb.connect(config={"threads": 1})
            con.execute(f"ATTACH ':memory:' AS {CATALOG}")
            con.execute(f"USE {CATALOG}")
            for setting in ("integer_division = true", "python_enable_replacements = false",
                            "default_null_order = 'nulls_last'"):
                con.execute(f"SET {setting}")
            self._connection = con
        return self._connection

    # -- one query ---------------------------------------------------------------------------------------------
    def run(self, query_id: str, query: str, database: str, parameters: list[str] | None, output: str) -> QueryOutcome:
        """Run a query to its end and record its outcome (GetQueryExecution, GetQueryResults)."""
        kind = statement_type(query)
        with self._lock:
            try:
                outcome = self._run(parse_statement(query, database, parameters))
                outcome.output = output
            except AthenaQueryError as error:
                outcome = QueryOutcome("FAILED", kind, output, reason=_reason(str(error)))
            except Exception as error:  # noqa: BLE001 - DuckDB's errors: the query FAILED with its message
                if not _is_duckdb_error(error):
                    raise
                outcome = QueryOutcome("FAILED", kind, output, reason=_reason(str(error)))
            if outcome.state == "SUCCEEDED" and not self._write_result(outcome):
                outcome = QueryOutcome("FAILED", kind, output, reason=(
                    f"Unable to verify/create output bucket {split_s3_uri(output)[0]}"))
            self.outcomes[query_id] = outcome
            return outcome

    def _run(self, statement: Statement) -> QueryOutcome:
        reads = catalog_reads(statement)  # DuckDB's parse errors first
        if statement.reserved:
            raise AthenaQueryError(statement.reserved[0])
        if reads.missing:
            database, name = reads.missing[0]
            raise AthenaQueryError(f"TABLE_NOT_FOUND: Table '{CATALOG}.{database}.{name}' does not exist")
        con = self.connection()
        databases = {statement.database, *(o.database for o in reads.objects)}
        if statement.target:
            databases.add(statement.target[0])
        for database in sorted(databases):
            self._drop_what_glue_lost(database)
        for found in reads.objects:
            self._define(found, with_data=not statement.is_ddl)
        con.execute(f"USE {CATALOG}.{_quote(statement.database)}")
        if statement.kind == "SELECT":
            cursor = con.execute(statement.sql)
            columns = [(name.lower(), str(kind)) for name, kind, *_ in cursor.description]
            rows = [[render(v) for v in row] for row in cursor.fetchall()]
            return QueryOutcome("SUCCEEDED", "DML", "", columns=columns, rows=rows)
        if statement.kind == "CREATE VIEW":
            self._create_view(statement)
        else:
            self._drop_view(statement)
        return QueryOutcome("SUCCEEDED", "DDL", "")

    # -- bringing DuckDB in line with Glue ----------------------------------------------------------------------
    def _drop_what_glue_lost(self, database: str) -> None:
        from moto.glue.exceptions import DatabaseNotFoundException

        con = self.connection()
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {CATALOG}.{_quote(database)}")
        try:
            in_glue: Any = _glue().get_database(database).tables
        except DatabaseNotFoundException:
            in_glue = {}
        defined = self._defined.setdefault(database, {})
        for name in [n for n in defined if n not in in_glue]:
            con.execute(f"DROP VIEW IF EXISTS {_qualified(database, name)}")
            del defined[name]

    def _define(self, found: GlueObject, with_data: bool) -> None:
        """Make found's DuckDB view what Glue and S3 hold now (a table's files only when with_data)."""
        key = (found.database, found.name)
        defined = self._defined.setdefault(found.database, {})
        current = defined.get(found.name)
        if found.is_view:
            wanted: tuple = ("view", found.signature)
            if current == wanted:
                return
            definition = found.view_definition()
            self.connection().execute(f"USE {CATALOG}.{_quote(definition.get('schema') or found.database)}")
            sql = f"CREATE OR REPLACE VIEW {_qualified(*key)} AS {definition['originalSql']}"
        else:
            if not with_data and current is not None and current[1] == found.signature:
                return  # its columns are current; a DDL reads no data
            source, wanted = self._table_source(found, with_data)
            if current == wanted:
                return
            sql = f"CREATE OR REPLACE VIEW {_qualified(*key)} AS {source}"
        defined.pop(found.name, None)
        self.connection().execute(sql)
        defined[found.name] = wanted

    def _table_source(self, found: GlueObject, with_data: bool) -> tuple[str, tuple]:
        """The SELECT a Glue table's DuckDB view is, and what it was made from."""
        storage = found.table.get("StorageDescriptor") or {}
        if found.table.get("PartitionKeys"):
            raise AthenaQueryError(f"local engine: table {found.database}.{found.name} is partitioned, which this "
                                   "engine does not read")
        columns = [(c["Name"].lower(), duckdb_type(c["Type"])) for c in storage.get("Columns", [])]
        if not columns:
            raise AthenaQueryError(f"local engine: table {found.database}.{found.name} has no columns")
        paths: list[str] = []
        made_from: tuple = ()
        if with_data:
            files = table_files(found)
            for bucket, key in files.data:
                path, etag = self.files.path(bucket, key)
                paths.append(str(path))
                made_from += ((bucket, key, etag),)
        wanted = ("data" if with_data else "columns", found.signature, made_from)
        if not paths:
            typed = ", ".join(f"CAST(NULL AS {duck}) AS {_quote(name)}" for name, duck in columns)
            return f"SELECT {typed} WHERE false", wanted
        serde = storage.get("SerdeInfo") or {}
        library = serde.get("SerializationLibrary")
        listed = "[" + ", ".join(_literal(p) for p in paths) + "]"
        if library == LAZY_SIMPLE_SERDE and storage.get("InputFormat") in (SYMLINK_INPUT, TEXT_INPUT):
            return self._delimited(found, serde.get("Parameters") or {}, columns, listed), wanted
        if library in JSON_SERDES:
            wanted_columns = ", ".join(f"{_literal(name)}: {_literal(duck)}" for name, duck in columns)
            return (f"SELECT * FROM read_json({listed}, format = 'newline_delimited', "
                    f"columns = {{{wanted_columns}}})"), wanted
        raise AthenaQueryError(f"local engine: table {found.database}.{found.name} is stored as {library} / "
                               f"{storage.get('InputFormat')}, which this engine does not read")

    @staticmethod
    def _delimited(found: GlueObject, serde: dict, columns: list[tuple[str, str]], listed: str) -> str:
        """LazySimpleSerDe's reading of delimited text: every field read as text, then cast to its column's type."""
        parameters = found.table.get("Parameters") or {}
        skip = int(parameters.get("skip.header.line.count") or 0)
        delimiter = serde.get("field.delim") or serde.get("serialization.format") or "\x01"
        null = serde.get("serialization.null.format", HIVE_NULL)
        text = ", ".join(f"{_literal(name)}: 'VARCHAR'" for name, _ in columns)
        read = (f"read_csv({listed}, delim = {_literal(delimiter)}, header = false, skip = {skip}, quote = '', "
                f"escape = '', nullstr = {_literal(null)}, auto_detect = false, null_padding = true, "
                f"strict_mode = false, columns = {{{text}}})")
        typed = ", ".join(_quote(name) if duck == "VARCHAR" else f"TRY_CAST({_quote(name)} AS {duck}) AS {_quote(name)}"
                          for name, duck in columns)
        return f"SELECT {typed} FROM {read}"

    # -- DDL ---------------------------------------------------------------------------------------------------
    def _create_view(self, statement: Statement) -> None:
        from moto.glue.exceptions import DatabaseNotFoundException

        database, name = statement.target
        glue = _glue()
        try:
            glue.get_database(database)
        except DatabaseNotFoundException:
            raise AthenaQueryError(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist") from None
        existing = glue_object(database, name)
        if existing is not None and not existing.is_view:
            raise AthenaQueryError(f"local engine: {database}.{name} is a table, not a view: "
                                   "CREATE [OR REPLACE] VIEW cannot replace it")
        if existing is not None and not statement.replace:
            raise AthenaQueryError(f"View already exists: '{CATALOG}.{database}.{name}'")
        con = self.connection()
        defined = self._defined.setdefault(database, {})
        defined.pop(name, None)
        con.execute(f"CREATE OR REPLACE VIEW {_qualified(database, name)} AS {statement.sql}")
        # The view's columns as DuckDB bound them (duckdb_columns() would scan every object of the catalog).
        described = con.execute(f"SELECT * FROM {_qualified(database, name)} LIMIT 0").description
        columns = [(column.lower(), str(kind)) for column, kind, *_ in described]
        table_input = view_table_input(name, statement.database, statement.sql, columns)
        try:
            if existing is None:
                glue.create_table(database, name, table_input)
            else:
                glue.update_table(database, name, table_input)
        except Exception:
            con.execute(f"DROP VIEW IF EXISTS {_qualified(database, name)}")
            raise
        defined[name] = ("view", glue_object(database, name).signature)

    def _drop_view(self, statement: Statement) -> None:
        database, name = statement.target
        existing = glue_object(database, name)
        if existing is None or not existing.is_view:
            if statement.if_exists and existing is None:
                return
            raise AthenaQueryError(f"View '{CATALOG}.{database}.{name}' does not exist")
        _glue().delete_table(database, name)
        self.connection().execute(f"DROP VIEW IF EXISTS {_qualified(database, name)}")
        self._defined.get(database, {}).pop(name, None)

    def _write_result(self, outcome: QueryOutcome) -> bool:
        """Write the result file; False when its bucket does not exist."""
        from moto.s3.exceptions import MissingBucket

        bucket, key = split_s3_uri(outcome.output)
        body = result_csv([n for n, _ in outcome.columns], outcome.rows) if outcome.statement_type == "DML" else b""
        try:
            _s3().put_object(bucket, key, body)
        except MissingBucket:
            return False
        return True

    # -- moto: the replacements of AthenaResponse's methods (local_runner/moto_patches.py) ------------------------
    def moto_start_query_execution(self, start: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """moto's StartQueryExecution (`start`: it records the query), then the query run here."""
        athena = self

        def start_query_execution(response: Any) -> Any:
            location = result_location(response._get_param("WorkGroup"), response._get_param("ResultConfiguration"))
            if location is None:
                return response.error("No output location provided. An output location is required either through "
                                      "the Workgroup result configuration setting or as an API input.", 400)
            answer = start(response)
            if isinstance(answer, tuple):
                return answer  # moto's own refusal (an unknown workgroup)
            query_id = json.loads(answer)["QueryExecutionId"]
            execution = response.athena_backend.executions[query_id]
            context = execution.context or {}
            catalog = (context.get("Catalog") or CATALOG).lower()
            query = execution.query
            bucket, key = result_key(location, query_id, statement_type(query) == "DDL")
            if catalog != CATALOG:
                athena.outcomes[query_id] = QueryOutcome("FAILED", statement_type(query), f"s3://{bucket}/{key}",
                                                         reason=f"Catalog '{catalog}' does not exist")
            else:
                athena.run(query_id, query, context.get("Database") or DEFAULT_DATABASE,
                           execution.execution_parameters, f"s3://{bucket}/{key}")
            return answer

        return start_query_execution

    def moto_get_query_execution(self, describe: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """moto's GetQueryExecution (`describe`), with the state, statement type, result location and error of the
        query as it ran here."""
        athena = self

        def get_query_execution(response: Any) -> Any:
            answer = describe(response)
            outcome = athena.outcomes.get(response._get_param("QueryExecutionId"))
            if outcome is None or isinstance(answer, tuple):
                return answer
            described = json.loads(answer)
            execution = described["QueryExecution"]
            execution["StatementType"] = outcome.statement_type
            execution["ResultConfiguration"] = {**(execution.get("ResultConfiguration") or {}),
                                                "OutputLocation": outcome.output}
            status = {"State": outcome.state, "SubmissionDateTime": execution["Status"]["SubmissionDateTime"],
                      "CompletionDateTime": outcome.completed}
            if outcome.state == "FAILED":
                status["StateChangeReason"] = outcome.reason
                status["AthenaError"] = {"ErrorCategory": 2, "Retryable": False, "ErrorMessage": outcome.reason}
            execution["Status"] = status
            return json.dumps(described)

        return get_query_execution

    def moto_get_query_results(self, _moto_s_own: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """GetQueryResults answered from the query's rows here (moto's has none)."""
        athena = self

        def get_query_results(response: Any) -> Any:
            query_id = response._get_param("QueryExecutionId")
            outcome = athena.outcomes.get(query_id)
            if outcome is None:
                return response.error(f"QueryExecution {query_id} was not found", 400)
            if outcome.state != "SUCCEEDED":
                return response.error(f"Query did not finish successfully. Final query state: {outcome.state}. "
                                      f"{outcome.reason}", 400)
            limit = response._get_param("MaxResults") or MAX_RESULTS
            if not 1 <= int(limit) <= MAX_RESULTS:
                return response.error(f"MaxResults must be between 1 and {MAX_RESULTS}", 400)
            token = response._get_param("NextToken")
            start_at = _page_start(token, query_id)
            if start_at is None:
                return response.error("Invalid NextToken", 400)
            return json.dumps(results_page(outcome, start_at, int(limit), query_id))

        return get_query_results


def results_page(outcome: QueryOutcome, start_at: int, limit: int, query_id: str) -> dict:
    """One GetQueryResults answer: the rows from start_at (row 0 is the column names, as in Athena) and, when more
    follow, a NextToken."""
    rows: list[list[str | None]] = []
    if outcome.statement_type == "DML":
        rows = [[name for name, _ in outcome.columns], *outcome.rows]
    page = rows[start_at:start_at + limit]
    answer: dict = {"ResultSet": {
        "Rows": [{"Data": [{} if cell is None else {"VarCharValue": cell} for cell in row]} for row in page],
        "ResultSetMetadata": {"ColumnInfo": [column_info(n, t) for n, t in outcome.columns]},
    }}
    if start_at + limit < len(rows):
        answer["NextToken"] = base64.urlsafe_b64encode(f"{query_id}:{start_at + limit}".encode()).decode()
    return answer


def _page_start(token: str | None, query_id: str) -> int | None:
    if not token:
        return 0
    try:
        owner, _, offset = base64.urlsafe_b64decode(token.encode()).decode().rpartition(":")
        return int(offset) if owner == query_id else None
    except ValueError:
        return None


def _reason(message: str) -> str:
    first = next((line.strip() for line in message.splitlines() if line.strip()), "the query failed")
    return first[:MAX_REASON_CHARS]


def _is_duckdb_error(error: Exception) -> bool:
    import duckdb

    return isinstance(error, duckdb.Error)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(database: str, name: str) -> str:
    return f"{CATALOG}.{_quote(database)}.{_quote(name)}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
