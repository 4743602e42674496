"""Step Functions' limits, enforced by the local engine as AWS enforces them, and the pipeline within them.

- 256 KiB per state input/output: moto's engine enforces it (States.DataLimitExceeded); the first test shows it
  does so here, on the pipeline's own Map without its ResultWriter. With the ResultWriter, failed files whose records
  add up to more than the limit end in CopyFailed naming the count, the first files and the manifest, every payload
  measured and printed: 200 files under a limit lowered to 16 KiB, and the cause of 2,000 computed from their records.
- 32,768 characters of a Fail state's cause (ExecutionFailedEventDetails.cause): refused by the engine; the
  pipeline's CopyFailed cause stays under it however long the messages are.
- 80 characters per state and execution name.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from moto.stepfunctions.parser import quotas as moto_quotas

from bls_pipeline.sync import MAX_FAILURE_CAUSE, CopyFailure, SurveyFailure, copy_outputs, run_verdict
from local_runner.engine import LocalEngine
from local_runner.step_functions_rules import MAX_CAUSE_CHARACTERS, check_state_names
from local_runner.template_model import PROJECT_ROOT, Template, load_template
from bls_loopback.server import status
from tests.conftest import engine_parameters

DATA = b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\nPRS30006032     \t2018\tQ01\t0.5\t\r\n"
LIMIT = 256 * 1024
# The state limit the engine enforces in the failed-files test: 1/16 of Step Functions' 256 KiB, so that 200 lost files
# carry more failure records than one state holds, as 2,000 do at the real limit (records of about 180 bytes).
SMALL_LIMIT = LIMIT // 16


def lose_every_file(bls, count: int, stem: str = "pr.lost") -> None:
    """`count` listed files that are gone when copied (404, final: not retried)."""
    bls.put("pr.data.0.Current", DATA)
    for index in range(count):
        name = f"{stem}.{index:05d}"
        bls.put(name, b"x\r\n")
        bls.add_faults(name, status(404))


def test_without_a_result_writer_many_failures_exceed_the_state_limit(bls, tmp_path) -> None:
    """The Map of main before this change: every failure record returns into the state, and a few hundred end the
    execution in States.DataLimitExceeded, before PruneMirror and the reports (700 records of about 450 bytes are past 256 KiB)."""
    lose_every_file(bls, 700, stem="pr.lost." + "long-name-" * 20)  # records of about 450 bytes
    text = (PROJECT_ROOT / "statemachine" / "pipeline.asl.json").read_text()
    start = text.index('      "ResultWriter": {')
    end = text.index('      "ResultPath": "$.copy_results"', start)
    without = tmp_path / "pipeline.asl.json"
    without.write_text(text[:start] + text[end:])
    document = load_template()
    document["Resources"]["PipelineStateMachine"]["Properties"]["DefinitionUri"] = str(without)
    engine = LocalEngine(engine_parameters(bls.url, CopyConcurrency="8"), template=Template(document),
                         extra_env={"POWERTOOLS_LOG_LEVEL": "ERROR"})
    with engine:
        result = engine.execute()
    assert result.status == "FAILED" and result.error == "States.DataLimitExceeded", (result.error, result.cause)
    assert "CopyFiles" in result.cause


def map_records(engine, run: str) -> list[dict]:
    """The CopyFiles Map's item records, as its ResultWriter stored them (the map run's manifest names the files)."""
    def read(key: str):
        return json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read())

    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"pipeline/runs/{run}/copy-results/")["Contents"]
    [manifest] = [o["Key"] for o in listed if o["Key"].endswith("/manifest.json")]
    files = [file["Key"] for listed_files in read(manifest)["ResultFiles"].values() for file in listed_files]
    return [record for key in files for record in read(key)]


def test_failed_files_past_the_state_limit_end_in_copy_failed_with_every_payload_under_it(bls, make_engine, capsys,
                                                                                        monkeypatch) -> None:
    """This took 2,000 real copies at the real limit (over five minutes on a loaded machine). The bound does not depend
    on the limit: the Map's records go to S3 (ResultWriter), and the state carries only counts, keys and the first 20
    names of the cause. So the engine's limit is lowered to 16 KiB, and 200 lost files, whose records alone are more
    than that, end in CopyFailed with every payload under it, naming no more than 20 of them; the cause of 2,000 such
    files is then computed from the same records, the way the pipeline computes this run's."""
    monkeypatch.setattr(moto_quotas, "MAX_STATE_SIZE_UTF8_BYTES", SMALL_LIMIT)  # read by moto at every state
    assert not moto_quotas.is_within_size_quota("x" * SMALL_LIMIT)
    assert moto_quotas.is_within_size_quota("x" * (SMALL_LIMIT - 1))
    lose_every_file(bls, 200)
    engine = make_engine(bls.url, CopyConcurrency="8")

    result = engine.execute()

    assert result.error == "CopyFailed", (result.error, (result.cause or "")[:500])
    assert result.cause.startswith("1 of 1 survey(s) failed, 200 file(s) could not be copied after retries: pr: 200 "
                                   "file(s) could not be copied after retries: pr.lost.")
    run = result.arn.rsplit(":", 1)[-1]
    manifest = f"s3://{engine.bucket}/pipeline/runs/{run}/manifest.json"
    assert "SourceNotFound: HTTP 404" in result.cause
    assert result.cause.endswith(f"; and 180 more, see {manifest}")
    assert len(result.cause) <= MAX_CAUSE_CHARACTERS
    failed = [json.loads(r["Output"]) for r in map_records(engine, run) if "failed" in json.loads(r["Output"])]
    assert len(failed) == 200 and len(json.dumps(failed).encode()) > SMALL_LIMIT, "the failures alone fit in a state"
    sizes = engine.payload_sizes(result.arn)
    with capsys.disabled():
        print(f"\n200 failed files (records {len(json.dumps(failed).encode()):,} bytes): largest state payload "
              f"{sizes['largest_bytes']:,} bytes ({sizes['largest_state']}), limit {SMALL_LIMIT:,}; CopyFailed cause "
              f"{len(result.cause):,} characters")
    assert 0 < sizes["largest_bytes"] < SMALL_LIMIT
    named = set(re.findall(r"pr\.lost\.\d{5}", json.dumps(engine.history(result.arn), default=str)))
    assert 0 < len(named) <= 20, f"the state names {len(named)} of the failed files"
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix="bls/pr/")["Contents"]
    assert [o["Key"] for o in listed] == ["bls/pr/pr.data.0.Current"], "the failures did not stop the good file"

    # 2,000: this run's failures, as the pipeline reads them from the Map's records, give this run's cause; ten times
    # as many of them (renamed) give the cause the 2,000 real copies ended with.
    failures = copy_outputs(None, failed)[1]
    assert run_verdict(1, [], failures, manifest) == ("CopyFailed", result.cause)
    more = [dataclasses.replace(f, name=f"pr.lost.{n:05d}", message=f.message.replace(f.name, f"pr.lost.{n:05d}"))
            for n, f in enumerate(failures * 10)]
    error, cause = run_verdict(1, [], more, manifest)
    assert error == "CopyFailed"
    assert cause.startswith("1 of 1 survey(s) failed, 2000 file(s) could not be copied after retries: pr: 2000 "
                            "file(s) could not be copied after retries: pr.lost.")
    assert "SourceNotFound: HTTP 404" in cause
    assert cause.endswith(f"; and 1980 more, see {manifest}")
    assert len(cause) <= MAX_CAUSE_CHARACTERS


def test_the_copy_failed_cause_stays_under_the_limit_however_long_the_messages() -> None:
    failures = [CopyFailure("pr." + "n" * 1000 + str(i), "E" * 300, "m" * 100_000, "pr") for i in range(500)]
    surveys = [SurveyFailure("s" * 60 + str(i), "ListSource", "E" * 300, "m" * 100_000) for i in range(60)]
    manifest = "s3://" + "b" * 63 + "/pipeline/runs/" + "r" * 80 + "/manifest.json"
    _, cause = run_verdict(61, surveys, failures, manifest)
    assert len(cause) <= MAX_FAILURE_CAUSE < MAX_CAUSE_CHARACTERS
    assert cause.startswith("61 of 61 survey(s) failed, 500 file(s) could not be copied after retries: ")
    assert cause.endswith(f"more, see {manifest}")


def test_the_engine_refuses_a_fail_cause_longer_than_aws_keeps(bls, make_engine) -> None:
    engine = make_engine(bls.url)
    definition = {"StartAt": "Fail", "States": {"Fail": {"Type": "Fail", "Error": "E", "CausePath": "$.cause"}}}
    arn = engine.sfn.create_state_machine(name="long-cause", definition=json.dumps(definition),
                                          roleArn="arn:aws:iam::123456789012:role/x")["stateMachineArn"]
    for length, expected in ((MAX_CAUSE_CHARACTERS, "E"), (MAX_CAUSE_CHARACTERS + 1, "States.Runtime")):
        execution = engine.sfn.start_execution(stateMachineArn=arn, name=f"cause-{length}",
                                               input=json.dumps({"cause": "c" * length}))
        result = engine.wait(execution["executionArn"], timeout=30)
        assert result.error == expected, (length, result.error, (result.cause or "")[:200])


def test_state_and_execution_names_follow_aws_rules(bls, make_engine) -> None:
    engine = make_engine(bls.url)
    check_state_names(json.loads(engine.definition))
    with pytest.raises(ValueError, match="at most 80"):
        check_state_names({"States": {"x" * 81: {"Type": "Pass", "End": True}}})
    with pytest.raises(ValueError, match="Map/"):
        check_state_names({"States": {"Map": {"Type": "Map", "ItemProcessor": {"States": {"y" * 81: {}}}}}})
    with pytest.raises(ValueError, match="1 to 80"):
        engine.start(name="n" * 81)
    for bad in ("has space", "a/b", "tab\there", "x\x7f"):
        with pytest.raises(ValueError, match="does not allow"):
            engine.start(name=bad)
