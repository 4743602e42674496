"""One execution of the pipeline through its local engine, with S3 on the benchmark's endpoint; prints JSON.

`python -m bench.pipeline_run '<json settings>'`, run in a fresh process per execution by bench/contenders.py.

Step Functions, Lambda and SQS stay in moto (in this process). Every S3 client created after the engine is up
honours AWS_ENDPOINT_URL_S3 (boto3's service-specific endpoint variable): the Lambda handlers' client and the
client moto's Distributed Map uses for its ItemReader. So the whole mirror, the plan and the reports live on the
benchmark's S3 server and every S3 request the pipeline makes goes through the counting proxy.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def fail_fast_when_an_engine_thread_dies() -> None:
    """moto evaluates the state machine in threads. An exception that kills one (e.g. a RecursionError in the
    Distributed Map's recursive worker loop) leaves the execution RUNNING for ever: report it and stop instead."""

    def report(args: threading.ExceptHookArgs) -> None:
        frames = traceback.extract_tb(args.exc_traceback)
        (path, function), depth = Counter((f.filename, f.name) for f in frames).most_common(1)[0]
        where = f"{function} ({path.split('site-packages/')[-1]}), {depth} times on the stack"
        print(json.dumps({"status": "ENGINE_THREAD_DIED", "error": type(args.exc_value).__name__,
                          "cause": f"{str(args.exc_value)[:120]} in thread {args.thread.name}; most repeated frame: {where}"}),
              flush=True)
        os._exit(0)

    threading.excepthook = report


def run(settings: dict) -> dict:
    fail_fast_when_an_engine_thread_dies()
    if settings.get("recursion_limit"):
        sys.setrecursionlimit(settings["recursion_limit"])
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    logging.getLogger("botocore").setLevel(logging.CRITICAL)
    os.environ.pop("AWS_CA_BUNDLE", None)
    from local_runner.engine import LocalEngine, payload_sizes
    from local_runner.state_dir import StateDir
    from local_runner.options import loopback_parameters

    from bench.source import tree_and_survey

    # source_url: one survey's directory (.../time.series/pr/: that survey) or the tree (then settings["surveys"]).
    tree, survey = tree_and_survey(settings["source_url"])
    rate = str(settings.get("requests_per_second", 1000.0))
    parameters = loopback_parameters(
        settings["contact_email"], tree, settings["population_url"], surveys=settings.get("surveys") or survey or "pr",
        CopyConcurrency=settings["concurrency"], SourceRequestsPerSecond=rate, PopulationRequestsPerSecond=rate,
        RangeStreams=settings.get("range_streams", 1),
    )
    # Glue's tables outlive an execution in AWS, but moto's die with this process: kept in a file between the runs
    # of one bucket, as the local runner keeps them in its state directory, so a no-op finds its catalog unchanged.
    glue_state = StateDir(Path(settings["glue_state"])) if settings.get("glue_state") else None
    setup_started = time.monotonic()
    with LocalEngine(parameters, bucket=settings["bucket"], extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as engine:
        if glue_state is not None:
            glue_state.load_catalog_into(engine.glue)
        # The handlers create their S3 client on their first call, after this.
        os.environ["AWS_ENDPOINT_URL_S3"] = settings["s3_endpoint"]
        setup_seconds = time.monotonic() - setup_started
        if settings.get("pause_for_profiler"):
            # bench/profiles.py attaches py-spy now, so that moto's start-up stays out of the profile.
            print(f"READY {os.getpid()}", file=sys.stderr, flush=True)
            time.sleep(settings["pause_for_profiler"])
        started = time.monotonic()
        result = engine.execute(timeout=settings.get("timeout", 3600))
        seconds = time.monotonic() - started
        history = engine.history(result.arn)
        if glue_state is not None:
            glue_state.root.mkdir(parents=True, exist_ok=True)
            glue_state.save_catalog_from(engine.glue)
    return {
        "status": result.status,
        "error": result.error,
        "cause": (result.cause or "")[:500],
        "seconds": seconds,
        "engine_setup_seconds": setup_seconds,
        "output": result.output,
        "state_seconds": state_seconds(history),
        "state_calls": {name: len(spans) for name, spans in state_spans(history).items()},
        "payloads": payload_sizes(history),
        "history_events": len(history),
        "invocations": invocation_stats(result.invocations),
        "map_item_payloads": map_item_payloads(result.invocations),
    }


def invocation_stats(invocations) -> dict[str, dict]:
    """Per function: invocations, errors, and seconds inside the handler (total, mean, max)."""
    stats: dict[str, dict] = {}
    for call in invocations:
        entry = stats.setdefault(call.function, {"count": 0, "errors": 0, "seconds": 0.0, "max_seconds": 0.0})
        entry["count"] += 1
        entry["errors"] += call.error_type is not None
        entry["seconds"] += call.seconds
        entry["max_seconds"] = max(entry["max_seconds"], call.seconds)
    for entry in stats.values():
        entry["mean_seconds"] = entry["seconds"] / entry["count"]
    return stats


def map_item_payloads(invocations) -> dict:
    """The Distributed Map's per-item payloads. moto runs the items inside the parent execution and writes no
    child-execution history, so they are read from the CopyFile invocations: the item's input (the ItemSelector's
    output) is the Lambda's event, its output the Lambda's result (the state then drops it: OutputPath null)."""
    sizes = [(len(json.dumps(c.event)), len(json.dumps(c.result))) for c in invocations if c.function == "CopyFileFunction"]
    return {
        "items": len(sizes),
        "largest_input_bytes": max((i for i, _ in sizes), default=0),
        "largest_output_bytes": max((o for _, o in sizes), default=0),
    }


def state_spans(history: list[dict]) -> dict[str, list[float]]:
    """Each top-level state's spans (entered -> exited), one per call, in seconds, from the execution history's
    timestamps. A state entered again (CatalogSurveys, called again while surveys remain) has one span per call."""
    entered: dict[str, float] = {}
    spans: dict[str, list[float]] = {}
    depth = 0
    for event in history:
        kind = event["type"]
        if kind in ("MapIterationStarted",):
            depth += 1
        elif kind in ("MapIterationSucceeded", "MapIterationFailed", "MapIterationAborted"):
            depth -= 1
        if depth:
            continue
        if "stateEnteredEventDetails" in event:
            entered[event["stateEnteredEventDetails"]["name"]] = event["timestamp"].timestamp()
        elif "stateExitedEventDetails" in event:
            name = event["stateExitedEventDetails"]["name"]
            if name in entered:
                spans.setdefault(name, []).append(event["timestamp"].timestamp() - entered.pop(name))
    return spans


def state_seconds(history: list[dict]) -> dict[str, float]:
    """Seconds spent in each top-level state, summed over its calls (state_spans)."""
    return {name: round(sum(spans), 3) for name, spans in state_spans(history).items()}


def main() -> None:
    settings = json.loads(sys.argv[1])
    print(json.dumps(run(settings), default=str))


if __name__ == "__main__":
    main()
