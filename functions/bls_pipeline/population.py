"""DataUSA population: fetch, recognise either API shape, store the raw JSON only when it changed."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parsing half of this module (analytics, the notebook) needs neither urllib3 nor botocore
    from .source_http import SourceClient


class PopulationFormatError(Exception):
    """The DataUSA answer is not population data in a shape this pipeline knows."""


# What a US population figure can be. The census counted 3.9 million people in 1790 and 331 million in 2020; the
# Census Bureau's projections stay under 400 million through 2100. A value outside these bounds is not a US
# population but a unit or shape error (thousands, a percentage, another measure), and is refused.
MIN_POPULATION = 1_000_000
MAX_POPULATION = 1_000_000_000
MIN_YEAR, MAX_YEAR = 1790, 2200
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # the real answer is about 2 KB


@dataclass(frozen=True)
class YearPopulation:
    year: int
    population: int


def parse_population(raw: bytes) -> list[YearPopulation]:
    """Years ascending. Accepts the tesseract `data.jsonrecords` shape ({"data": [{"Year": 2013, ...}]}) and the
    old `datausa.io/api/data` shape ({"data": [{"ID Year": 2023, "Year": "2023", ...}]})."""
    if len(raw) > MAX_ANSWER_BYTES:
        raise PopulationFormatError(f"DataUSA answered {len(raw):,} bytes, more than any population answer")
    try:
        document = json.loads(raw, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        start = raw[:80].decode("utf-8", errors="replace")
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise PopulationFormatError(
            f"DataUSA did not answer with JSON ({why}; an error page?); it starts {start!r}"
        ) from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        keys = sorted(document)[:8] if isinstance(document, dict) else type(document).__name__
        raise PopulationFormatError(f"DataUSA JSON has no 'data' list of records (found {keys}); unknown shape")
    if not data:
        raise PopulationFormatError("DataUSA answered with an empty 'data' list: no population records")
    by_year: dict[int, int] = {}
    for index, record in enumerate(data):
        year, population = _year_and_population(record, index)
        if year in by_year:
            raise PopulationFormatError(
                f"DataUSA lists the year {year} twice ({by_year[year]:,} and {population:,}): which one is meant "
                "cannot be told"
            )
        by_year[year] = population
    return [YearPopulation(y, p) for y, p in sorted(by_year.items())]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _year_and_population(record: Any, index: int) -> tuple[int, int]:
    if not isinstance(record, dict):
        raise PopulationFormatError(f"DataUSA record {index} is not an object: {record!r:.80}")
    year = record.get("ID Year", record.get("Year"))
    population = record.get("Population")
    if isinstance(year, bool) or isinstance(population, bool) or not isinstance(population, (int, float)):
        raise PopulationFormatError(
            f"DataUSA record {index} has no usable Year/Population ({record!r:.120}); unknown shape"
        )
    try:
        year_int = int(str(year).strip())
    except ValueError:
        raise PopulationFormatError(f"DataUSA record {index} has no usable Year ({record!r:.120}); unknown shape") from None
    if not math.isfinite(population) or population != int(population):
        raise PopulationFormatError(f"DataUSA record {index} has a population that is not a whole number: {record!r:.120}")
    if not MIN_YEAR <= year_int <= MAX_YEAR or not MIN_POPULATION <= population <= MAX_POPULATION:
        raise PopulationFormatError(
            f"DataUSA record {index} has an implausible year or population for the US ({record!r:.120}): years "
            f"{MIN_YEAR}-{MAX_YEAR} and populations of {MIN_POPULATION:,} to {MAX_POPULATION:,} are accepted"
        )
    return year_int, int(population)


def normalized_population_key(population_key: str) -> str:
    """Where the query-ready copy of the population file goes: a folder of its own beside the raw JSON
    (datausa/population.json -> datausa/population-by-year/population.jsonl), because an Athena table reads every
    object under its location and must not read the raw JSON."""
    folder, _, name = population_key.rpartition("/")
    stem = name.rsplit(".", 1)[0] or name
    return f"{folder + '/' if folder else ''}{stem}-by-year/{stem}.jsonl"


def population_json_lines(records: list[YearPopulation]) -> bytes:
    """The population as JSON lines, one {"year": ..., "population": ...} object per year, years ascending: the shape
    Athena's JSON SerDe and DuckDB's read_json read as a table (the raw answer nests the years in one document, with
    field names that differ between the two DataUSA APIs)."""
    return b"".join(
        json.dumps({"year": r.year, "population": r.population}, separators=(",", ":")).encode() + b"\n"
        for r in sorted(records, key=lambda r: r.year)
    )


META_RUN_ID = "run-id"  # the execution that wrote the file: the S3 -> SQS reports are named after it


def fetch_and_store(s3: Any, source: SourceClient, url: str, bucket: str, key: str, run_id: str | None = None) -> dict:
    """Fetch, validate, and write the raw JSON unless the stored copy has the same bytes (metadata: the run's id).

    Nothing is written before the answer has been validated, so a bad answer leaves the previous file in place.
    """
    raw = source.get_bytes(url)
    try:
        records = parse_population(raw)
    except PopulationFormatError as exc:
        raise PopulationFormatError(f"{exc}. Asked {url}; s3://{bucket}/{key} was left as it was") from None
    digest = hashlib.sha256(raw).hexdigest()
    changed = _stored_sha256(s3, bucket, key) != digest
    if changed:
        s3.put_object(
            Bucket=bucket, Key=key, Body=raw, ContentType="application/json",
            Metadata={"sha256": digest, "source-url": url[:1024], **({META_RUN_ID: run_id} if run_id else {})},
        )
    return {
        "key": key,
        "changed": changed,
        "years": len(records),
        "first_year": records[0].year,
        "last_year": records[-1].year,
    }


def _stored_sha256(s3: Any, bucket: str, key: str) -> str | None:
    from .s3_objects import is_missing  # botocore: not for the parsing half

    try:
        return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    except s3.exceptions.ClientError as exc:
        # The role lists the bucket (template.yaml, TellAMissingPopulationFileFromADeniedRead): a 403 is a denial.
        if is_missing(exc, denied_is_missing=False):
            return None
        raise
