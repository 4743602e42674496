"""The sample events in events/ match what the handlers read and what the state machine sends them.

events/<name>.json is the event the state machine sends <Name>Function (ListSourceFunction -> list_source.json),
events/<name>_sqs.json the event of a function's SQS event source, events/state_machine_input*.json execution inputs.
Use them with `sam local invoke <LogicalId> -e events/<file>.json` or `aws stepfunctions start-execution --input`.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote_plus, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent

from local_runner.template_model import load_template, substitute_definition  # noqa: E402

EVENTS = ROOT / "events"
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, dict] = TEMPLATE["Resources"]
FUNCTION_GLOBALS = TEMPLATE.get("Globals", {}).get("Function", {})
FUNCTIONS = {lid: r.get("Properties", {}) for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
STATE_MACHINES = {
    lid: r.get("Properties", {}) for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::StateMachine"
}
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def event_file(logical_id: str) -> Path:
    """ListSourceFunction -> events/list_source.json"""
    stem = re.sub(r"Function$", "", logical_id)
    return EVENTS / (re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower() + ".json")


def load_event(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def handler_function(logical_id: str):
    handler = FUNCTIONS[logical_id].get("Handler", FUNCTION_GLOBALS.get("Handler"))
    module_name, function_name = handler.rsplit(".", 1)
    function = getattr(importlib.import_module(module_name), function_name)
    return inspect.unwrap(function)  # under @logger.inject_lambda_context


def keys_handler_reads(logical_id: str) -> set[str]:
    """Top-level keys the handler reads from its event: event["k"] and event.get("k", ...)."""
    function = handler_function(logical_id)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    definition = tree.body[0]
    event_name = definition.args.args[0].arg
    keys = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == event_name
            and isinstance(node.slice, ast.Constant)
        ):
            keys.add(node.slice.value)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == event_name
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(node.args[0].value)
    return keys


def _definition(props: dict) -> dict:
    subs = {
        name: f"<{name}>" if not (isinstance(v, dict) and "Ref" in v) else "1"
        for name, v in (props.get("DefinitionSubstitutions") or {}).items()
    }
    text = substitute_definition((ROOT / props["DefinitionUri"]).read_text(encoding="utf-8"), subs)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        pytest.fail(f"{props['DefinitionUri']} is not JSON after substitution ({error}); see tests/test_template.py")


def _function_of(props: dict, resource: str) -> str | None:
    match = re.fullmatch(r"<(.+)>", resource or "")
    if not match:
        return None
    value = (props.get("DefinitionSubstitutions") or {}).get(match.group(1))
    target = value.get("Fn::GetAtt") if isinstance(value, dict) else None
    if isinstance(target, str):
        target = target.split(".", 1)
    return target[0] if target else None


def _payload_keys(parameters: dict) -> set[str]:
    return {key[:-2] if key.endswith(".$") else key for key in parameters}


def payloads_sent_to(logical_id: str) -> list[tuple[str, set[str]]]:
    """(state, top-level keys of the payload) for every Task state that invokes the function."""
    found = []

    def walk(props: dict, block: dict, where: str, item_keys: set[str] | None) -> None:
        for name, state in (block.get("States") or {}).items():
            if state.get("Type") == "Task" and _function_of(props, state.get("Resource")) == logical_id:
                if "Parameters" in state:
                    found.append((f"{where}{name}", _payload_keys(state["Parameters"])))
                elif item_keys is not None and "InputPath" not in state:
                    found.append((f"{where}{name}", item_keys))
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                selector = state.get("ItemSelector") or state.get("Parameters")
                walk(props, processor, f"{where}{name}/", _payload_keys(selector) if selector else None)
            for index, branch in enumerate(state.get("Branches") or []):
                walk(props, branch, f"{where}{name}[{index}]/", None)

    for props in STATE_MACHINES.values():
        walk(props, _definition(props), "", None)
    return found


def sqs_sources(logical_id: str) -> dict[str, dict]:
    """The function's SQS event sources (SAM SQS events and event source mapping resources): id -> {"Queue": ...}."""
    events = FUNCTIONS[logical_id].get("Events") or {}
    sources = {eid: e.get("Properties", {}) for eid, e in events.items() if e.get("Type") == "SQS"}
    for mapping_id, resource in RESOURCES.items():
        mapping = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Lambda::EventSourceMapping" and mapping.get("FunctionName") == {"Ref": logical_id}:
            sources[mapping_id] = {**mapping, "Queue": mapping.get("EventSourceArn")}
    return sources


def sqs_event_file(logical_id: str) -> Path:
    """AnalyticsFunction -> events/analytics_sqs.json"""
    return event_file(logical_id).with_name(event_file(logical_id).stem + "_sqs.json")


# --- every file -------------------------------------------------------------------------------------------------


def test_events_folder_has_the_expected_files() -> None:
    expected = {event_file(lid).name for lid in FUNCTIONS} | {
        "state_machine_input.json",
        "state_machine_input_override.json",
    }
    expected |= {sqs_event_file(lid).name for lid in FUNCTIONS if sqs_sources(lid)}
    missing = sorted(name for name in expected if not (EVENTS / name).is_file())
    assert not missing, f"events/ lacks {', '.join(missing)} (one event per function in template.yaml)"


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_event_is_a_json_object(path: Path) -> None:
    try:
        event = load_event(path)
    except json.JSONDecodeError as error:
        pytest.fail(f"events/{path.name} is not valid JSON: {error}")
    assert isinstance(event, dict), f"events/{path.name} must be a JSON object, is {type(event).__name__}"


# --- function events ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("logical_id", list(FUNCTIONS))
def test_event_has_every_key_the_handler_reads(logical_id: str) -> None:
    path = event_file(logical_id)
    assert path.is_file(), f"{logical_id} has no sample event events/{path.name}"
    read = keys_handler_reads(logical_id)
    assert read, f"{logical_id}: found no event[...] / event.get(...) in its handler"
    missing = sorted(read - set(load_event(path)))
    assert not missing, f"events/{path.name} lacks key(s) {', '.join(missing)} that {logical_id}'s handler reads"


@pytest.mark.parametrize("logical_id", list(FUNCTIONS))
def test_event_has_the_shape_the_state_machine_sends(logical_id: str) -> None:
    path = event_file(logical_id)
    sent = payloads_sent_to(logical_id)
    if not sent:
        pytest.skip(f"no state machine invokes {logical_id}")
    keys = set(load_event(path))
    for state, payload in sent:
        assert keys == payload, (
            f"events/{path.name} has keys {sorted(keys)} but state {state} sends {logical_id} {sorted(payload)}"
        )


def _settings():
    from bls_pipeline.config import Settings

    return Settings(bucket="my-mirror-bucket", contact_email="data-team@example.com").validate()


@pytest.mark.parametrize("logical_id", list(FUNCTIONS))
def test_event_run_fields_are_accepted(logical_id: str) -> None:
    """run_id is an execution name; input/run are execution inputs that Settings.with_overrides accepts."""
    path = event_file(logical_id)
    event = load_event(path)
    if "run_id" in event:
        assert EXECUTION_NAME.match(event["run_id"]), (
            f"events/{path.name}: run_id {event['run_id']!r} is not a Step Functions execution name"
        )
    for key in ("input", "run"):
        if key in event:
            _settings().with_overrides(event[key])


def test_copy_file_event_is_a_listing_row() -> None:
    """The file is exactly what ListSource writes for its listing row (parse_listing of the same row)."""
    from bls_pipeline.bls_listing import SourceFile, parse_listing

    event = load_event(EVENTS / "copy_file.json")
    file = SourceFile.from_dict(event["file"])
    base = file.url.rsplit("/", 1)[0] + "/"
    row = f' {file.stamp} {file.size:>12} <A HREF="{urlsplit(file.url).path}">{file.name}</A><br>'
    assert parse_listing(f"<pre>{row}</pre>", base) == [file], f"copy_file.json file does not match listing row {row}"
    survey, etag = event["file"]["survey"], event["file"]["mirror_etag"]
    assert {**file.to_dict(), "survey": survey, "mirror_etag": etag} == event["file"], (
        "copy_file.json file has extra or mistyped fields")
    assert base.endswith(f"/{survey}/") and etag is None  # a new file: written only if still absent
    _settings().with_overrides(event["run"])


def test_prune_mirror_event() -> None:
    from bls_pipeline.run_files import RunPlan

    event = load_event(EVENTS / "prune_mirror.json")
    plan = RunPlan.from_dict(event["plan"])
    assert plan.items_key.endswith("/copy-items.json") and plan.surveys_key.endswith("/surveys.json")
    _settings().with_overrides(event["run"])
    results = event["copy_results"]
    good = [r for r in results if "failed" not in r]
    assert good and all(set(r) == {"survey", "name", "sha256", "bytes", "superseded", "etag"} for r in good), (
        "a good copy in copy_results is what CopyFile's ResultSelector keeps")
    failures = [r for r in results if "failed" in r]
    assert failures and all(set(r) == {"survey", "failed", "error", "message"} for r in failures), (
        "a failed copy in copy_results is {survey, failed, error, message} (RecordFunctionFailure/RecordOtherFailure)"
    )
    assert isinstance(event["listed"], int) and isinstance(event["unchanged"], int)


def test_prune_mirror_event_runs_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prune handler accepts the sample event against a mirror bucket in moto."""
    from moto import mock_aws

    from bls_pipeline import aws

    event = load_event(EVENTS / "prune_mirror.json")
    plan = event["plan"]
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MIRROR_BUCKET": plan["bucket"],
        "CONTACT_EMAIL": "data-team@example.com",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws.s3_client.cache_clear()
    listed = ["pr.class", "pr.txt"] + [f"pr.file{i}" for i in range(event["listed"] - 2)]
    items = [
        {"name": n, "url": f"https://download.bls.gov/pub/time.series/pr/{n}", "size": 102, "stamp": "8/6/2026 8:30 AM"}
        for n in ("pr.class", "pr.txt")
    ]
    try:
        with mock_aws():
            import boto3

            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket=plan["bucket"])
            folder = plan["items_key"].rsplit("/", 1)[0] + "/pr/"
            pr_plan = {"bucket": plan["bucket"], "items_key": folder + "copy-items.json", "listing_key": folder + "listing.json"}
            s3.put_object(Bucket=plan["bucket"], Key=plan["surveys_key"], Body=json.dumps(
                {"surveys": [{"survey": "pr", "plan": pr_plan, "failure": None}]}).encode())
            s3.put_object(Bucket=plan["bucket"], Key=pr_plan["items_key"], Body=json.dumps(items).encode())
            s3.put_object(Bucket=plan["bucket"], Key=pr_plan["listing_key"], Body=json.dumps(listed).encode())
            s3.put_object(Bucket=plan["bucket"], Key="bls/pr/pr.removed", Body=b"gone from the listing")
            s3.put_object(Bucket=plan["bucket"], Key="bls/pr/pr.class", Body=b"x" * 102)
            context = SimpleNamespace(
                function_name="PruneMirrorFunction",
                memory_limit_in_mb=256,
                invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:PruneMirrorFunction",
                aws_request_id="00000000-0000-0000-0000-000000000000",
            )
            module_name, function_name = FUNCTIONS["PruneMirrorFunction"]["Handler"].rsplit(".", 1)
            result = getattr(importlib.import_module(module_name), function_name)(event, context)
            remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=plan["bucket"], Prefix="bls/pr/")["Contents"]]
    finally:
        aws.s3_client.cache_clear()
    mirror = result["mirror"]
    assert mirror["failed"] == 1 and mirror["failed_files"] == ["pr/pr.txt"], mirror
    assert (mirror["failed_surveys"], mirror["surveys"]) == (1, 1), mirror
    assert mirror["copied"] == 1 and mirror["deleted_files"] == ["pr/pr.removed"], mirror
    assert remaining == ["bls/pr/pr.class"]


# --- SQS events ----------------------------------------------------------------------------------------------


def _parameter_default(value: object) -> object:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return TEMPLATE.get("Parameters", {}).get(value["Ref"], {}).get("Default")
    return value


def _s3_filters_for_queue(queue: object) -> list[dict[str, object]]:
    """{rule name: value} of every bucket notification that sends to the queue (same !GetAtt <Queue>.Arn)."""
    filters = []
    for resource in RESOURCES.values():
        notifications = resource.get("Properties", {}).get("NotificationConfiguration") or {}
        for config in notifications.get("QueueConfigurations") or []:
            if config.get("Queue") == queue:
                rules = config.get("Filter", {}).get("S3Key", {}).get("Rules") or []
                filters.append({r["Name"].lower(): _parameter_default(r["Value"]) for r in rules})
    return filters


@pytest.mark.parametrize("logical_id", [lid for lid in FUNCTIONS if sqs_sources(lid)])
def test_sqs_event_is_an_s3_notification_the_queue_receives(logical_id: str) -> None:
    path = sqs_event_file(logical_id)
    event = load_event(path)
    records = event.get("Records")
    assert records, f"events/{path.name} has no Records"
    filters = [f for props in sqs_sources(logical_id).values() for f in _s3_filters_for_queue(props.get("Queue"))]
    for index, record in enumerate(records):
        where = f"events/{path.name} Records[{index}]"
        assert record.get("eventSource") == "aws:sqs", f"{where}: eventSource is not aws:sqs"
        assert {"messageId", "receiptHandle", "body", "attributes", "eventSourceARN"} <= set(record), where
        assert record.get("md5OfBody") == hashlib.md5(record["body"].encode()).hexdigest(), f"{where}: md5OfBody"
        body = json.loads(record["body"])
        for s3_record in body.get("Records", []):
            assert s3_record["eventSource"] == "aws:s3" and s3_record["eventName"].startswith("ObjectCreated:"), where
            key = unquote_plus(s3_record["s3"]["object"]["key"])
            assert not filters or any(
                key.startswith(str(f.get("prefix", ""))) and key.endswith(str(f.get("suffix", ""))) for f in filters
            ), f"{where}: key {key!r} does not pass the bucket notification filter(s) {filters}"


# --- execution inputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EVENTS.glob("state_machine_input*.json")), ids=lambda p: p.name)
def test_execution_input_is_accepted(path: Path) -> None:
    """ListSource passes the execution input to Settings.with_overrides: only known fields, valid values."""
    _settings().with_overrides(load_event(path))


def test_override_input_mirrors_ce_and_la() -> None:
    settings = _settings().with_overrides(load_event(EVENTS / "state_machine_input_override.json"))
    assert settings.source_url == "https://download.bls.gov/pub/time.series/"
    assert settings.survey_list() == ["ce", "la"]
    assert [settings.for_survey(s).mirror_prefix for s in settings.survey_list()] == ["bls/ce/", "bls/la/"]


def test_normal_input_is_what_the_schedule_sends() -> None:
    normal = load_event(EVENTS / "state_machine_input.json")
    for logical_id, props in STATE_MACHINES.items():
        for event_id, event in (props.get("Events") or {}).items():
            if event.get("Type") in ("Schedule", "ScheduleV2") and "Input" in event.get("Properties", {}):
                sent = json.loads(event["Properties"]["Input"])
                assert sent == normal, (
                    f"{logical_id}.{event_id} sends {sent}, events/state_machine_input.json is {normal}"
                )
