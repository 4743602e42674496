"""Produce the reports from what is in S3 and store them, per run and as `latest`."""

from __future__ import annotations

import logging
from typing import Any

from .config import REPORT_SURVEY, Settings
from .mirror import META_SHA256, META_STAMP
from .population import META_RUN_ID, parse_population
from .reports import AnalyticsInputError, Reports, bounded_lines, compute_reports, to_csv
from .s3_objects import is_missing, read_json, write_json

_LINES_SHOWN = 10
logger = logging.getLogger(__name__)


INPUTS_FILE = "inputs.json"  # beside the reports: which versions of the two inputs they were computed from
# What a 403 means to this function's reads (s3_objects): a denial, raised. Its role lists the bucket, so S3 answers
# a missing key with 404 (template.yaml, TellAMissingInputFromADeniedRead).
DENIED_IS_MISSING = False


def run_analytics(settings: Settings, s3: Any, run_id: str | None) -> dict:
    """Compute the three reports, write JSON and CSV under reports/<run_id>/ and reports/latest/, log each one.

    Nothing is computed when an input is missing (another survey's directory has no `settings.data_file`) or when
    neither input changed since the reports in reports/latest/: the answer then says why, in "skipped".
    run_id None: the run that wrote the population file (its metadata), as on the S3 -> SQS path.
    Bad data rows are skipped, counted and logged as a warning.
    """
    data_key = _data_key(settings)
    inputs, skipped = why_no_new_reports(settings, s3)
    if skipped is not None:
        return skipped
    run_id = run_id or inputs["population"]["run_id"] or f"population-{inputs['population']['etag'][:12]}"
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
    vintage = {"run_id": run_id, "inputs": inputs, "bad_rows": reports.bad_row_count,
               "bad_row_lines": [b.line for b in reports.bad_rows[:_LINES_SHOWN]]}
    for folder in (f"{settings.reports_prefix}{run_id}/", f"{settings.reports_prefix}latest/"):  # latest's last: a half-written latest is redone
        write_json(s3, settings.bucket, folder + INPUTS_FILE, vintage, indent=1)
    return {
        "reports_run": run_id,
        "reports": locations,
        "rows_read": reports.rows_read,
        "bad_rows": reports.bad_row_count,
        "bad_row_lines": [b.line for b in reports.bad_rows[:_LINES_SHOWN]],
        "series_years": len(reports.series_population),
        "series_count": len(reports.best_year_by_series),
    }


def _data_key(settings: Settings) -> str:
    """The reports' data file, in the mirror of REPORT_SURVEY (bls/pr/pr.data.0.Current), whichever surveys the
    run mirrors."""
    return (settings if settings.survey else settings.for_survey(REPORT_SURVEY)).mirror_prefix + settings.data_file


def why_no_new_reports(settings: Settings, s3: Any) -> tuple[dict, dict | None]:
    """The versions of the two inputs, and {"skipped": why, ...} when no new reports are to be made (else None)."""
    inputs = {"data": _version(s3, settings.bucket, _data_key(settings)),
              "population": _version(s3, settings.bucket, settings.population_key)}
    missing = [f"s3://{settings.bucket}/{v['key']}" for v in inputs.values() if v["etag"] is None]
    if missing:
        return inputs, {"skipped": f"no {' and no '.join(missing)}: the reports are computed from "
                                   f"{settings.data_file} and the population file"}
    latest = f"{settings.reports_prefix}latest/"
    try:
        previous = read_json(s3, settings.bucket, latest + INPUTS_FILE, denied_is_missing=DENIED_IS_MISSING) or {}
    except ValueError:
        previous = {}  # unreadable: the reports are computed again
    if _same_versions(previous.get("inputs"), inputs):
        return inputs, {"skipped": f"neither input changed since the reports of run {previous.get('run_id')}",
                        "reports_run": previous.get("run_id"), "latest": f"s3://{settings.bucket}/{latest}"}
    return inputs, None


def _version(s3: Any, bucket: str, key: str) -> dict:
    """Which version of s3://bucket/key is there now (etag None: none); HEAD only, nothing is downloaded."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if is_missing(exc, denied_is_missing=DENIED_IS_MISSING):
            return {"key": key, "etag": None}
        raise
    metadata = head.get("Metadata", {})
    return {"key": key, "etag": head["ETag"], "source_stamp": metadata.get(META_STAMP),
            "sha256": metadata.get(META_SHA256), "run_id": metadata.get(META_RUN_ID)}


def _same_versions(previous: Any, current: dict) -> bool:
    if not isinstance(previous, dict):
        return False
    return all(isinstance(previous.get(name), dict) and previous[name].get("key") == version["key"]
               and previous[name].get("etag") == version["etag"] for name, version in current.items())


def _store(s3: Any, settings: Settings, run_id: str, name: str, rows: list[dict]) -> str:
    body_csv = to_csv(rows).encode()
    for folder in (f"{settings.reports_prefix}{run_id}/", f"{settings.reports_prefix}latest/"):
        write_json(s3, settings.bucket, f"{folder}{name}.json", rows, indent=1)
        s3.put_object(Bucket=settings.bucket, Key=f"{folder}{name}.csv", Body=body_csv, ContentType="text/csv")
    return f"s3://{settings.bucket}/{settings.reports_prefix}{run_id}/{name}.json"


def _read(s3: Any, bucket: str, key: str) -> Any:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.ClientError as exc:
        if is_missing(exc, denied_is_missing=DENIED_IS_MISSING):
            raise AnalyticsInputError(f"s3://{bucket}/{key} does not exist: run the mirror and FetchPopulation first") from None
        raise


def load_reports_from_files(data_path: str, population_path: str, series_id: str = "PRS30006032", period: str = "Q01") -> Reports:
    """The same computation on local files (the notebook uses this)."""
    with open(population_path, "rb") as handle:
        population = parse_population(handle.read())
    with open(data_path, "rb") as handle:
        return compute_reports(handle, population, series_id=series_id, period=period)
