"""DataUSA population: fetch, recognise either API shape, store the raw JSON only when it changed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parsing half of this module (analytics, the notebook) needs neither urllib3 nor botocore
    from .source_http import SourceClient


class PopulationFormatError(Exception):
    """The DataUSA answer is not population data in a shape this pipeline knows."""


@dataclass(frozen=True)
class YearPopulation:
    year: int
    population: int


def parse_population(raw: bytes) -> list[YearPopulation]:
    """Years ascending. Accepts the tesseract `data.jsonrecords` shape ({"data": [{"Year": 2013, ...}]}) and the
    old `datausa.io/api/data` shape ({"data": [{"ID Year": 2023, "Year": "2023", ...}]})."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        start = raw[:80].decode("utf-8", errors="replace")
        raise PopulationFormatError(f"DataUSA did not answer with JSON (an error page?); it starts {start!r}") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        keys = sorted(document)[:8] if isinstance(document, dict) else type(document).__name__
        raise PopulationFormatError(f"DataUSA JSON has no 'data' list of records (found {keys}); unknown shape")
    if not data:
        raise PopulationFormatError("DataUSA answered with an empty 'data' list: no population records")
    by_year: dict[int, int] = {}
    for index, record in enumerate(data):
        year, population = _year_and_population(record, index)
        by_year[year] = population
    return [YearPopulation(y, p) for y, p in sorted(by_year.items())]


def _year_and_population(record: Any, index: int) -> tuple[int, int]:
    if not isinstance(record, dict):
        raise PopulationFormatError(f"DataUSA record {index} is not an object: {record!r:.80}")
    year = record.get("ID Year", record.get("Year"))
    population = record.get("Population")
    try:
        year_int = int(str(year))
        population_number = float(population)
    except (TypeError, ValueError):
        raise PopulationFormatError(
            f"DataUSA record {index} has no usable Year/Population ({record!r:.120}); unknown shape"
        ) from None
    if not 1000 <= year_int <= 9999 or population_number < 0:
        raise PopulationFormatError(f"DataUSA record {index} has an implausible year or population: {record!r:.120}")
    return year_int, round(population_number)


def fetch_and_store(s3: Any, source: SourceClient, url: str, bucket: str, key: str) -> dict:
    """Fetch, validate, and write the raw JSON unless the stored copy has the same bytes.

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
            Metadata={"sha256": digest, "source-url": url[:1024]},
        )
    return {
        "key": key,
        "changed": changed,
        "years": len(records),
        "first_year": records[0].year,
        "last_year": records[-1].year,
    }


def _stored_sha256(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
