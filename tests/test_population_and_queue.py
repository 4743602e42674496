"""FetchPopulation and Analytics through the real state machine, and the S3 -> SQS -> analytics path in moto.

Bad population answers are cases of test_fault_matrix.py."""

from __future__ import annotations

import json

import pytest

from bls_loopback.server import status
from bls_loopback.population import POPULATION_PATH, population_json

DATA = (
    b"series_id        \tyear\tperiod\t       value\tfootnote_codes\r\n"
    b"PRS30006032      \t2013\tQ01\t         1.5\t\r\n"
    b"PRS30006032      \t2013\tQ02\t         2.5\t\r\n"
    b"PRS30006032      \t2020\tQ01\t        -7.0\t\r\n"
)


def latest(engine, name: str):
    return json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=f"reports/latest/{name}.json")["Body"].read())


@pytest.fixture
def engine(bls, make_engine):
    bls.put("pr.data.0.Current", DATA)
    return make_engine(bls.url)


def test_a_new_population_file_produces_the_reports_once_through_the_queue(engine, bls):
    result = engine.execute()

    assert result.succeeded, result.cause
    assert result.output["population"]["changed"] is True
    assert result.output["reports"]["produced_by"].startswith("the S3 -> SQS -> analytics path")
    analytics = [c for c in result.invocations if c.function == "AnalyticsFunction"]
    assert len(analytics) == 1 and "Records" in analytics[0].event
    assert analytics[0].result == {"batchItemFailures": []}
    assert latest(engine, "series_population") == [
        {"series_id": "PRS30006032", "year": 2013, "period": "Q01", "value": 1.5, "Population": 316128839},
        {"series_id": "PRS30006032", "year": 2020, "period": "Q01", "value": -7, "Population": None},
    ]
    assert latest(engine, "best_year_by_series") == [{"series_id": "PRS30006032", "year": 2013, "value": 4}]


def report_keys(engine, run_folder: str) -> set[str]:
    return {o["Key"] for o in engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"reports/{run_folder}/").get("Contents", [])}


def test_an_unchanged_population_is_not_rewritten_and_reports_are_made_only_when_an_input_changed(engine, bls):
    first = engine.execute()
    assert first.succeeded, first.cause
    first_run = first.arn.rsplit(":", 1)[1]
    assert report_keys(engine, first_run), "the queue path names the reports after the run that wrote the population"
    versions = len(engine.s3.list_object_versions(Bucket=engine.bucket, Prefix="datausa/")["Versions"])

    unchanged = engine.execute()

    assert unchanged.output["population"]["changed"] is False
    assert len(engine.s3.list_object_versions(Bucket=engine.bucket, Prefix="datausa/")["Versions"]) == versions
    analytics = [c for c in unchanged.invocations if c.function == "AnalyticsFunction"]
    assert len(analytics) == 1 and "Records" not in analytics[0].event
    assert unchanged.output["reports"]["skipped"] == f"neither input changed since the reports of run {first_run}"
    assert report_keys(engine, unchanged.arn.rsplit(":", 1)[1]) == set(), "a no-op run makes no report folder"

    bls.put("pr.data.0.Current", DATA + b"PRS30006032      \t2013\tQ03\t         9.5\t\r\n")
    revised = engine.execute()

    run_folder = revised.arn.rsplit(":", 1)[1]
    assert revised.output["reports"]["reports"]["population_stats"].endswith(f"reports/{run_folder}/population_stats.json")
    assert {f"reports/{run_folder}/{n}.{ext}" for n in ("population_stats", "best_year_by_series", "series_population")
            for ext in ("json", "csv")} | {f"reports/{run_folder}/inputs.json"} == report_keys(engine, run_folder)
    assert latest(engine, "best_year_by_series") == [{"series_id": "PRS30006032", "year": 2013, "value": 13.5}]
    vintage = latest(engine, "inputs")
    assert vintage["run_id"] == run_folder
    assert vintage["inputs"]["data"]["source_stamp"] == engine.s3.head_object(
        Bucket=engine.bucket, Key="bls/pr/pr.data.0.Current")["Metadata"]["source-stamp"]


def test_a_502_is_retried_and_then_the_population_arrives(engine, bls):
    bls.add_faults(POPULATION_PATH, status(502))
    result = engine.execute()
    assert result.succeeded, result.cause
    assert [r.status for r in bls.requests_to(POPULATION_PATH)] == [502, 200]


def test_an_s3_put_of_the_population_file_reaches_the_analytics_function_through_sqs(engine, bls):
    engine.s3.put_object(Bucket=engine.bucket, Key="bls/pr/pr.data.0.Current", Body=DATA)
    engine.s3.put_object(Bucket=engine.bucket, Key="datausa/population.json", Body=population_json({2020: 331_449_281, 2013: 316_128_839}))

    engine.drain_queues()

    assert latest(engine, "series_population")[0]["Population"] == 316_128_839
    assert latest(engine, "population_stats")[0]["years_used"] == 1


def test_a_failing_queue_message_is_reported_as_a_batch_item_failure_and_stays_queued(engine, bls):
    engine.s3.put_object(Bucket=engine.bucket, Key="bls/pr/pr.data.0.Current", Body=DATA)
    engine.s3.put_object(Bucket=engine.bucket, Key="datausa/population.json", Body=b'{"data": "not a list"}')
    engine.drain_queues()  # a population file analytics cannot read: this message fails

    calls = [c for c in engine.invocations if c.function == "AnalyticsFunction"]
    assert len(calls) == 1 and len(calls[0].result["batchItemFailures"]) == 1
    queue = engine.queue_url("ReportsQueue")
    attributes = engine.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
