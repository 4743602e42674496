"""Produce the reports from what is in S3 and store them, per run and as `latest`."""

from __future__ import annotations

import json
import logging
from typing import Any

from .config import Settings
from .population import parse_population
from .reports import AnalyticsInputError, Reports, bounded_lines, compute_reports, to_csv

_LINES_SHOWN = 10
logger = logging.getLogger(__name__)


def run_analytics(settings: Settings, s3: Any, run_id: str) -> dict:
    """Compute the three reports, write JSON and CSV under reports/<run_id>/ and reports/latest/, log each one.

    Bad data rows are skipped, counted and logged as a warning.
    """
    data_key = settings.mirror_prefix + settings.data_file
    population = parse_population(_read(s3, settings.bucket, settings.population_key).read())
    reports = compute_reports(
        bounded_lines(_read(s3, settings.bucket, data_key).iter_chunks(1 << 20)),
        population,
        series_id=settings.report_series,
        period=settings.report_period,
    )
    if reports.bad_row_count:
        logger.warning("bad rows skipped", extra={
            "file": data_key, "bad_rows": reports.bad_row_count,
            "first_bad_rows": [{"line": b.line, "reason": b.reason} for b in reports.bad_rows[:20]],
        })
    locations = {}
    for name, rows in reports.tables().items():
        logger.info(f"report {name}", extra={"report": name, "rows": rows})
        locations[name] = _store(s3, settings, run_id, name, rows)
    return {
        "reports": locations,
        "rows_read": reports.rows_read,
        "bad_rows": reports.bad_row_count,
        "bad_row_lines": [b.line for b in reports.bad_rows[:_LINES_SHOWN]],
        "series_years": len(reports.series_population),
        "series_count": len(reports.best_year_by_series),
    }


def _store(s3: Any, settings: Settings, run_id: str, name: str, rows: list[dict]) -> str:
    body_json = json.dumps(rows, indent=1).encode()
    body_csv = to_csv(rows).encode()
    for folder in (f"{settings.reports_prefix}{run_id}/", f"{settings.reports_prefix}latest/"):
        s3.put_object(Bucket=settings.bucket, Key=f"{folder}{name}.json", Body=body_json, ContentType="application/json")
        s3.put_object(Bucket=settings.bucket, Key=f"{folder}{name}.csv", Body=body_csv, ContentType="text/csv")
    return f"s3://{settings.bucket}/{settings.reports_prefix}{run_id}/{name}.json"


def _read(s3: Any, bucket: str, key: str) -> Any:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise AnalyticsInputError(f"s3://{bucket}/{key} does not exist: run the mirror and FetchPopulation first") from None
        raise


def load_reports_from_files(data_path: str, population_path: str, series_id: str = "PRS30006032", period: str = "Q01") -> Reports:
    """The same computation on local files (the notebook uses this)."""
    with open(population_path, "rb") as handle:
        population = parse_population(handle.read())
    with open(data_path, "rb") as handle:
        return compute_reports(handle, population, series_id=series_id, period=period)
