"""The three reports on a small fixture whose answers were worked out by hand."""

from __future__ import annotations

import json
import logging

import pytest

from bls_pipeline.analytics import run_analytics
from bls_pipeline.config import Settings
from bls_pipeline.population import PopulationFormatError, YearPopulation, parse_population
from bls_pipeline.reports import AnalyticsInputError, compute_reports, to_csv
from bls_loopback.population import POPULATION, population_json

HEADER = "series_id        \tyear\tperiod\t       value\tfootnote_codes\r\n"


def row(series: str, year: int | str, period: str, value: str) -> str:
    return f"{series:<17}\t{year}\t{period}\t{value:>12}\t\r\n"


DATA = (
    HEADER
    + row("PRS00000001", 2019, "Q01", "1.1")
    + row("PRS00000001", 2019, "Q02", "2.2")
    + row("PRS00000001", 2019, "Q03", "3.3")
    + row("PRS00000001", 2019, "Q04", "11.2")  # 2019 sums to exactly 17.8 (floats give 17.799999999999997)
    + row("PRS00000001", 2019, "Q05", "99.0")  # the annual average: must not be added
    + row("PRS00000001", 2020, "Q01", "17.8")  # ties 2019: the earlier year wins
    + row("PRS00000002", 2018, "Q01", "5")
    + row("PRS00000002", 2021, "Q01", "abc")  # line 10: not a number
    + row("PRS00000002", 2021, "Q02", "7")
    + "PRS00000002\t2022\tQ01\r\n"  # line 12: a column short
    + row("PRS30006032", 2012, "Q01", "0.3")
    + row("PRS30006032", 2013, "Q01", "1.5")
    + row("PRS30006032", 2013, "Q02", "2.5")
    + row("PRS30006032", 2020, "Q01", "-7.0")
)
POP = [YearPopulation(y, p) for y, p in sorted(POPULATION.items())]


def reports():
    return compute_reports(DATA.encode().splitlines(keepends=True), POP)


def test_population_mean_and_sample_standard_deviation_2013_to_2018():
    stats = reports().population_stats
    assert stats["mean"] == 322069808.0
    assert stats["stddev"] == pytest.approx(4158441.040908095, abs=1e-6)
    assert "sample (n-1)" in stats["stddev_kind"]
    assert (stats["years_used"], stats["missing_years"]) == (6, [])


def test_best_year_sums_quarters_exactly_ignores_q05_and_breaks_ties_to_the_earliest_year():
    assert reports().best_year_by_series == [
        {"series_id": "PRS00000001", "year": 2019, "value": 17.8},
        {"series_id": "PRS00000002", "year": 2021, "value": 7},
        {"series_id": "PRS30006032", "year": 2013, "value": 4},
    ]
    assert json.dumps(reports().best_year_by_series[0]["value"]) == "17.8"


def test_series_period_by_year_with_population_and_empty_where_datausa_has_none():
    assert reports().series_population == [
        {"series_id": "PRS30006032", "year": 2012, "period": "Q01", "value": 0.3, "Population": None},
        {"series_id": "PRS30006032", "year": 2013, "period": "Q01", "value": 1.5, "Population": 316128839},
        {"series_id": "PRS30006032", "year": 2020, "period": "Q01", "value": -7, "Population": None},
    ]
    assert to_csv(reports().series_population).splitlines()[1:] == [
        "PRS30006032,2012,Q01,0.3,", "PRS30006032,2013,Q01,1.5,316128839", "PRS30006032,2020,Q01,-7,",
    ]


def test_bad_rows_are_counted_with_their_line_numbers_and_skipped():
    result = reports()
    assert result.bad_row_count == 2
    assert [(b.line, b.reason) for b in result.bad_rows] == [
        (9, "value 'abc' is not a number"),
        (11, "3 columns, expected 5"),
    ]
    assert result.rows_read == 14


def test_a_file_that_is_not_bls_data_is_refused_by_name():
    with pytest.raises(AnalyticsInputError, match="lacks column"):
        compute_reports([b"<html>oops</html>\r\n"], POP)


def test_both_datausa_shapes_give_the_same_records():
    old = json.dumps({"data": [
        {"ID Nation": "01000US", "Nation": "United States", "ID Year": y, "Year": str(y), "Population": p,
         "Slug Nation": "united-states"} for y, p in sorted(POPULATION.items(), reverse=True)
    ], "source": []}).encode()
    assert parse_population(old) == parse_population(population_json()) == POP


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"<html><body>502 Bad Gateway</body></html>", "did not answer with JSON"),
        (b'{"error": "cube not found"}', "no 'data' list"),
        (b'{"data": []}', "empty 'data' list"),
        (b'{"data": [{"Nation": "United States"}]}', "no usable Year/Population"),
        (b"[1, 2]", "no 'data' list"),
    ],
)
def test_anything_else_from_datausa_is_refused_with_the_cause(raw, message):
    with pytest.raises(PopulationFormatError, match=message):
        parse_population(raw)


def test_a_header_with_a_byte_order_mark_is_read():
    with_bom = ("\ufeff" + DATA).encode("utf-8").splitlines(keepends=True)
    assert compute_reports(with_bom, POP).best_year_by_series == reports().best_year_by_series


def test_the_stored_run_names_the_bad_rows_and_logs_them_as_a_warning(moto_s3):
    settings = Settings(bucket="mirror-bucket", contact_email="ops@example.com")
    moto_s3.put_object(Bucket="mirror-bucket", Key="bls/pr/pr.data.0.Current", Body=DATA.encode())
    moto_s3.put_object(Bucket="mirror-bucket", Key="datausa/population.json", Body=population_json())
    # The handlers' prologue may have stopped bls_pipeline's records from reaching the root logger (and pytest's
    # caplog): listen on the module's own logger.
    logged: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = logged.append
    module_logger = logging.getLogger("bls_pipeline.analytics")
    module_logger.addHandler(listener)
    try:
        summary = run_analytics(settings, moto_s3, "run-1")
    finally:
        module_logger.removeHandler(listener)

    assert (summary["bad_rows"], summary["bad_row_lines"], summary["rows_read"]) == (2, [9, 11], 14)
    [record] = [r for r in logged if r.getMessage() == "bad rows skipped"]
    assert record.levelno == logging.WARNING and record.file == "bls/pr/pr.data.0.Current"
    assert record.first_bad_rows == [{"line": 9, "reason": "value 'abc' is not a number"},
                                     {"line": 11, "reason": "3 columns, expected 5"}]
