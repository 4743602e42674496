"""What must hold on a deployed stack, checked the same way on AWS and on the local engine.

`make integration STACK=<name>` runs these against a stack in your account (your credentials; they start three to
five executions, which read the real source politely: a no-op is one listing request). `make test` runs them against
the local engine and a loopback source, so the assertions are exercised on every change. They clean up what they
wrote: the report folders of their executions, and the object version they tampered with.
"""

from __future__ import annotations

import json
import os
import time
from typing import Iterator

import pytest

from tests.integration.deployments import AwsDeployment, Deployment, LocalDeployment, Run

STACK = os.environ.get("INTEGRATION_STACK", "")
TAMPERED = "tampered by the integration test"


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    if STACK:
        yield AwsDeployment(STACK)
        return
    from local_runner.engine import LocalEngine
    from bls_loopback.server import BlsServer
    from tests.conftest import POPULATION_PATH, engine_parameters, population_json

    with BlsServer() as bls:
        bls.route(POPULATION_PATH, population_json())
        bls.put("pr.class", b"class_code\tclass_text\r\n0\tAll workers\r\n")
        bls.put("pr.period", b"period\tperiod_abbr\tperiod_name\r\nQ01\tQTR1\t1st Quarter\r\n")
        bls.put("pr.series", b"series_id\tclass_code\tseries_title\r\nPRS30006032     \t0\tManufacturing hours\r\n")
        bls.put("pr.data.0.Current", b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\n"
                + b"".join(f"PRS30006032     \t{y}\tQ01\t{y % 7}.5\t\r\n".encode() for y in range(2010, 2024)))
        with LocalEngine(engine_parameters(bls.url), extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as engine:
            yield LocalDeployment(engine)


@pytest.fixture(scope="module")
def written(deployment: Deployment) -> Iterator[list[tuple[str, str | None]]]:
    """(key, version id or None for every version under a prefix) that the tests wrote, removed at the end."""
    entries: list[tuple[str, str | None]] = []
    yield entries
    s3, bucket = deployment.s3, deployment.bucket
    for key, version in entries:
        if version is not None:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
            continue
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])


def run(deployment: Deployment, written: list, execution_input: dict | None = None) -> Run:
    result = deployment.execute(execution_input)
    written.append((f"reports/{result.name}/", None))
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return result


def mirror(deployment: Deployment) -> dict[str, dict]:
    """Key (without the prefix) -> the object's metadata and size, for every object under the mirror prefix."""
    s3, found = deployment.s3, {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=deployment.bucket, Prefix=deployment.mirror_prefix):
        for item in page.get("Contents", []):
            head = s3.head_object(Bucket=deployment.bucket, Key=item["Key"])
            found[item["Key"][len(deployment.mirror_prefix):]] = {"size": head["ContentLength"], **head["Metadata"]}
    return found


def listing(deployment: Deployment, result: Run) -> list[str]:
    key = f"pipeline/runs/{result.name}/pr/listing.json"  # the run's plan of pr, as ListSource stored it
    return json.loads(deployment.s3.get_object(Bucket=deployment.bucket, Key=key)["Body"].read())


def test_a_run_mirrors_exactly_what_the_source_lists_and_writes_the_reports(deployment: Deployment, written: list) -> None:
    result = run(deployment, written)

    mirrored = mirror(deployment)
    assert sorted(mirrored) == sorted(listing(deployment, result))
    for name, meta in mirrored.items():
        assert meta["source-size"] == str(meta["size"]), name
        assert len(meta["sha256"]) == 64 and meta["source-stamp"], name
    assert result.output["mirror"]["failed"] == 0
    reports = deployment.wait_for_reports(result)
    assert sorted(reports) == ["best_year_by_series.json", "population_stats.json", "series_population.json"]


def test_a_second_run_copies_nothing(deployment: Deployment, written: list) -> None:
    run(deployment, written)
    before = mirror(deployment)

    result = run(deployment, written)

    assert result.output["mirror"]["copied"] == 0 and result.output["mirror"]["deleted"] == 0
    assert result.output["mirror"]["unchanged"] == result.output["mirror"]["listed"] == len(before)
    assert mirror(deployment) == before


def test_the_day_two_overwrite_of_a_changed_file_succeeds_under_if_match(deployment: Deployment, written: list) -> None:
    """The path every run takes when BLS changes a file: the mirror object exists, so CopyFile writes with
    If-Match on its ETag, which S3 allows only with s3:PutObject and s3:GetObject. Forced here by tampering with
    one object's recorded stamp, so the next run must replace it."""
    run(deployment, written)
    s3, bucket = deployment.s3, deployment.bucket
    name, meta = min(mirror(deployment).items(), key=lambda item: item[1]["size"])
    key = deployment.mirror_prefix + name
    head = s3.head_object(Bucket=bucket, Key=key)
    # The sync index sees a metadata-only edit by the object's LastModified, which has one-second resolution (README,
    # "The sync index"): an edit within the second the object was written would go unseen, so the edit is made again
    # until its LastModified differs (at most once more, a second later), never left to the clock.
    for attempt in range(3):
        tampered = s3.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, MetadataDirective="REPLACE",
            Metadata={**head["Metadata"], "source-stamp": TAMPERED}, ContentType=head.get("ContentType", "text/plain"),
        )
        written.append((key, tampered["VersionId"]))
        if s3.head_object(Bucket=bucket, Key=key)["LastModified"] != head["LastModified"]:
            break
        time.sleep(1.0)
    else:
        raise AssertionError(f"{key}: the edit kept LastModified {head['LastModified']} three times")

    result = run(deployment, written)

    assert result.output["mirror"]["copied"] == 1 and result.output["mirror"]["failed"] == 0
    after = s3.head_object(Bucket=bucket, Key=key)
    assert after["VersionId"] != tampered["VersionId"]
    assert after["Metadata"]["source-stamp"] == meta["source-stamp"] != TAMPERED
    assert after["Metadata"]["sha256"] == meta["sha256"]


def lines_with_a_first_field(body: bytes) -> int:
    """Rows a table's _clean view has: the file's lines after the header whose first field is not blank."""
    return sum(1 for line in body.splitlines()[1:] if line.split(b"\t", 1)[0].strip())


def test_a_select_on_each_kind_of_table_counts_what_its_file_holds(deployment: Deployment, written: list) -> None:
    """One SELECT per kind of table, in the stack's workgroup: a data file (its header row skipped), a mapping
    file, a labeled view and the population table, each counted against the object it reads. On AWS this is what
    proves Athena reads the symlink tables as the local engine does (README: "If Athena misreads the tables")."""
    run(deployment, written)
    s3, bucket, prefix = deployment.s3, deployment.bucket, deployment.mirror_prefix

    def body(key: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    data = body(prefix + "pr.data.0.Current")
    assert deployment.query('SELECT COUNT(*) FROM "pr_data_0_current_clean"') == [[str(lines_with_a_first_field(data))]]
    header = data.split(b"\t", 1)[0].decode().strip()
    assert deployment.query(f'SELECT COUNT(*) FROM "pr_data_0_current" WHERE TRIM("series_id") = \'{header}\'') == [["0"]]
    classes = body(prefix + "pr.class")
    assert deployment.query('SELECT COUNT(*) FROM "pr_class_clean"') == [[str(lines_with_a_first_field(classes))]]
    labeled = deployment.query('SELECT COUNT(*), COUNT("class_text") FROM "pr_data_0_current_labeled"')
    assert labeled[0][0] == str(lines_with_a_first_field(data))
    years = len(body("datausa/population-by-year/population.jsonl").splitlines())
    assert deployment.query('SELECT COUNT(*) FROM "datausa_population"') == [[str(years)]]
