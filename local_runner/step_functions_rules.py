"""Step Functions as AWS runs it, where moto's engine differs: each replacement below names the AWS rule it enforces
(local_runner/moto_patches.py applies them to moto, each with its guard).

moto already enforces the 256 KiB limit on every state's output (States.DataLimitExceeded) and AWS's execution
name rules; this module adds:
- the state machine role's own S3 calls (the Distributed Map's ItemReader and ResultWriter) are authorized against
  that role, like the functions' calls (local_runner/s3_enforcement.py);
- ResultWriter writes the result files AWS writes (moto writes only an empty manifest): manifest.json and
  SUCCEEDED_0.json under <Prefix>/<map run id>/, and its Parameters' paths read the Map state's input, not the
  Map's results as in moto ("ResultWriter (Map)", Step Functions Developer Guide);
- a Fail state's cause longer than 32,768 characters is refused (Step Functions API Reference,
  ExecutionFailedEventDetails: cause, length 0-32768), so that such a cause fails a test instead of production;
- state names longer than 80 characters are refused when the state machine is created (Amazon States Language:
  state names are at most 80 Unicode characters), and execution names that StartExecution would refuse are
  refused when the engine starts one.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

MAX_CAUSE_CHARACTERS = 32_768
MAX_STATE_NAME_CHARACTERS = 80
MAX_EXECUTION_INPUT_BYTES = 256 * 1024  # StartExecution input (Step Functions quotas: 256 KiB per payload)


# Step Functions API Reference, StartExecution "name": 1-80 characters, none of these, and no control characters.
_NAME_FORBIDDEN = set(" \t\n<>{}[]?*\"#%\\^|~`$&,;:/")


def check_execution_name(name: str) -> None:
    if not 1 <= len(name) <= MAX_STATE_NAME_CHARACTERS:
        raise ValueError(f"execution name {name!r} has {len(name)} characters; Step Functions allows 1 to 80")
    bad = sorted({c for c in name if c in _NAME_FORBIDDEN or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F})
    if bad:
        raise ValueError(f"execution name {name!r} contains {''.join(bad)!r}, which Step Functions does not allow")


def check_state_names(definition: dict, path: str = "") -> None:
    for name, state in definition.get("States", {}).items():
        if len(name) > MAX_STATE_NAME_CHARACTERS:
            raise ValueError(f"state name {path}{name!r} has {len(name)} characters; Step Functions allows at most 80")
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            check_state_names(processor, f"{path}{name}/")
        for branch in state.get("Branches", []):
            check_state_names(branch, f"{path}{name}/")


def checked_client_for(boto_client_for: Callable, wrap_state_machine_s3: Callable[[Any], Any]) -> Callable:
    """moto's boto_client_for as the Distributed Map's ItemReader and ResultWriter call it, the S3 clients it makes
    for the state machine authorized against the state machine's role.

    wrap_state_machine_s3: given a boto3 S3 client moto's engine created for the state machine, returns it with the
    state machine role's authorization installed."""

    def checked_client(*args: Any, **kwargs: Any) -> Any:
        client = boto_client_for(*args, **kwargs)
        return wrap_state_machine_s3(client) if client.meta.service_model.service_name == "s3" else client

    return checked_client


def result_writer_reads_the_state_input(self: Any, env: Any) -> None:
    env.stack.append(env.states.get_input())
    self.parargs.eval(env=env)
    parameters = env.stack.pop()
    env.stack.pop()
    env.stack.append(parameters)  # above the Map's results, as write_results expects
    self.resource_eval.eval_resource(env=env)


def write_results(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
    """ResultWriter's s3:putObject as AWS performs it: one JSON file of child execution records per status, a
    manifest naming them, and the Map state's output pointing at the manifest. Every item of this engine's Map
    ends successfully (moto has no per-child failures to report), so all records are SUCCEEDED."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (
        ResourceEvalS3,
    )

    parameters = env.stack.pop()
    outputs = env.stack.pop()
    s3 = ResourceEvalS3._get_s3_client(resource_runtime_part=resource_runtime_part, state_credentials=state_credentials)
    map_run_arn = env.map_run_record_pool_manager.get_all().pop().map_run_arn
    prefix = parameters.get("Prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    base = f"{prefix}{map_run_arn.split(':')[-1]}/"
    now = datetime.now(timezone.utc).isoformat()
    succeeded = []
    if outputs:
        records = [
            {
                "ExecutionArn": f"{map_run_arn}:{index}",
                "Name": str(index),
                "Output": json.dumps(output, separators=(",", ":")),
                "OutputDetails": {"Included": True},
                "Status": "SUCCEEDED",
                "StartDate": now,
                "StopDate": now,
            }
            for index, output in enumerate(outputs)
        ]
        body = json.dumps(records).encode()
        s3.put_object(Bucket=parameters["Bucket"], Key=base + "SUCCEEDED_0.json", Body=body)
        succeeded.append({"Key": base + "SUCCEEDED_0.json", "Size": len(body)})
    manifest = {
        "DestinationBucket": parameters["Bucket"],
        "MapRunArn": map_run_arn,
        "ResultFiles": {"FAILED": [], "PENDING": [], "SUCCEEDED": succeeded},
    }
    s3.put_object(Bucket=parameters["Bucket"], Key=base + "manifest.json", Body=json.dumps(manifest).encode())
    env.stack.append({"MapRunArn": map_run_arn, "ResultWriterDetails": {"Bucket": parameters["Bucket"], "Key": base + "manifest.json"}})


def cause_within_limit(original: Callable) -> Callable:
    """moto's Cause._eval_body (`original`), refusing a Fail state's cause longer than MAX_CAUSE_CHARACTERS."""
    def eval_body(self: Any, env: Any) -> None:
        original(self, env)
        cause = env.stack[-1]
        if isinstance(cause, str) and len(cause) > MAX_CAUSE_CHARACTERS:
            from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
            from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
                FailureEvent,
                FailureEventException,
            )
            from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
            from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
                StatesErrorNameType,
            )
            from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

            error = StatesErrorNameType.StatesRuntime
            message = (
                f"a Fail state's cause has {len(cause)} characters; Step Functions allows at most "
                f"{MAX_CAUSE_CHARACTERS} (ExecutionFailedEventDetails.cause). It begins: {cause[:200]}"
            )
            raise FailureEventException(failure_event=FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=error),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(executionFailedEventDetails=ExecutionFailedEventDetails(
                    error=error.to_name(), cause=message,
                )),
            ))

    return eval_body
