"""`python -m local_runner`: run the pipeline's real state machine on this machine, with no AWS and no Docker."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from typing import TextIO

from .changes_report import show_changes
from .options import DEFAULT_STATE_DIR  # noqa: F401  (local_runner/sql.py's --state-dir default)
from .options import FLAG_OF_VARIABLE, OPTIONS, function_environment, shown, template_parameters
from .startup import PhaseClock, paused_gc


def _settings_defaults() -> dict:
    """The pipeline's own defaults (the Settings dataclass in functions/bls_pipeline/config.py), by field name."""
    from bls_pipeline.config import DEFAULTS

    return DEFAULTS


def build_parser() -> argparse.ArgumentParser:
    """The flags of local_runner/options.py's OPTIONS, in its order, with its defaults and help."""
    defaults = _settings_defaults()
    parser = argparse.ArgumentParser(
        prog="python -m local_runner",
        description=(
            "Run the pipeline's real Step Functions definition (statemachine/*.asl.json) with the real Lambda "
            "handlers on this machine: moto plays S3, Lambda and Step Functions; no AWS account, no Docker. "
            "The mirrored files are kept in --state-dir, so the next run is incremental."
        ),
    )
    for option in OPTIONS:
        if option.switch:
            parser.add_argument(option.flag, action="store_true", help=option.help)
            continue
        default = os.environ.get(option.default_from) if option.default_from else option.runner_default(defaults)
        extra = {"type": option.type} if option.type else {}
        parser.add_argument(option.flag, default=default, metavar=option.metavar, **extra,
                            help=option.help.replace("{default}", shown(default)))
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    if not args.contact_email:
        print("error: --contact-email is required (BLS answers 403 to clients without contact information); "
              "or set BLS_CONTACT_EMAIL", file=sys.stderr)
        return 2
    try:
        execution_input = json.loads(args.input)
    except json.JSONDecodeError as exc:
        print(f"error: --input is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(execution_input, dict):
        print(f"error: --input must be a JSON object such as '{{\"force_prune\": true}}', not {args.input!r}",
              file=sys.stderr)
        return 2
    if args.dry_run:
        execution_input["dry_run"] = True
    if args.state_dir.exists() and not args.state_dir.is_dir():
        print(f"error: --state-dir {args.state_dir} is a file, not a directory; nothing was changed", file=sys.stderr)
        return 2
    problem = _check_settings(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    with _quiet_logs(not args.verbose):
        return _run(args, execution_input, out)



def _run(args: argparse.Namespace, execution_input: dict, out: TextIO) -> int:
    clock = PhaseClock()
    with paused_gc():
        from .engine import LocalEngine
        from .progress import Progress
        from .state_dir import StateDir
    clock.end("imports")

    parameters = template_parameters(vars(args))
    state = StateDir(args.state_dir)
    progress = Progress(out, retries=retried_errors(args.retry_attempts))
    extra_env = {} if args.verbose else {"POWERTOOLS_LOG_LEVEL": "ERROR"}
    run_id = f"local-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    mirror_dir = state.objects / args.mirror_prefix
    started = time.monotonic()
    running = False
    try:
        with paused_gc():
            engine = LocalEngine(parameters, observer=progress.on_invocation, extra_env=extra_env)
        if args.function_timeout:
            engine.function_timeouts = dict.fromkeys(engine.function_timeouts, args.function_timeout)
        with engine:
            try:
                state.load_into(engine.s3, engine.bucket)
                state.load_catalog_into(engine.glue)
                engine.purge_queues()  # restoring yesterday's files is not a new write
                written = _keys_written_by_the_functions(engine)
                clock.end("engine_start")
                progress.start(args.source_url, args.surveys, run_id)
                running = True
                result = engine.execute(execution_input, name=run_id)
                clock.end("execution")
            except KeyboardInterrupt:
                if not running:
                    progress.interrupted(time.monotonic() - started, 0, None)
                    return 130
                with _no_interrupts():  # the files copied so far are whole objects: keep them
                    state.save_from(engine.s3, engine.bucket, written)
                    state.save_catalog_from(engine.glue)
                copied = sum(1 for c in engine.invocations if c.function == "CopyFileFunction" and not c.error_type)
                progress.interrupted(time.monotonic() - started, copied, mirror_dir)
                return 130
            if result.status != "FAILED" or _got_past_listing(result):
                with _no_interrupts():
                    state.save_from(engine.s3, engine.bucket, written)
                    state.save_catalog_from(engine.glue)
            reports, vintage = _reports_of_run(engine, run_id)
            if progress.queue_handled:
                progress.queue_outcome(None if reports else _why_no_reports(args, engine))
    except ValueError as exc:  # bad parameters reach here before anything runs
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress.finish(result, time.monotonic() - started, mirror_dir)
    show_changes(result, state.objects, out)
    if result.succeeded:
        if reports:
            progress.show_reports(reports, vintage, f"{state.objects / 'reports' / run_id}/")
        elif (state.objects / "reports" / "latest").is_dir():
            progress.show_unchanged_reports(f"{state.objects / 'reports' / 'latest'}/")
    status = _exit_status(result)
    clock.end("exit")
    if args.timings:
        clock.report(sys.stderr)
    return status


def _exit_status(result) -> int:
    if not result.succeeded:
        print(f"error: {_one_line_error(result)}", file=sys.stderr)
        return 1
    queue_failures = [
        c for c in result.invocations
        if c.function == "AnalyticsFunction" and "Records" in c.event
        and (c.error_type or (c.result or {}).get("batchItemFailures"))
    ]
    if queue_failures:
        print("error: the analytics function failed on the population queue message; rerun with --verbose "
              "to see its log", file=sys.stderr)
        return 1
    return 0


def _keys_written_by_the_functions(engine) -> set[str]:
    """The keys the functions write from now on (filled as they write): the same bytes may carry new metadata."""
    written: set[str] = set()
    for operation in ("PutObject", "CopyObject", "CompleteMultipartUpload"):
        engine.on_s3(f"before-parameter-build.s3.{operation}", lambda params, **_: written.add(params["Key"]))
    return written


def retried_errors(attempts: int) -> dict[str, int]:
    """Error name -> retries, as statemachine/pipeline.asl.json's Retry fields give them for the task states."""
    lambda_errors = ("Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                     "Lambda.TooManyRequestsException", "Lambda.ClientExecutionTimeoutException")
    return {"TransientSourceError": attempts, **dict.fromkeys(lambda_errors, attempts), "Sandbox.Timedout": 1}


@contextmanager
def _quiet_logs(quiet: bool):
    """Without --verbose, nothing from moto and botocore (the runner reports their errors itself) and only errors
    from the pipeline's own loggers; restored afterwards."""
    quieter = {"moto": logging.CRITICAL, "botocore": logging.CRITICAL, "bls_pipeline": logging.ERROR} if quiet else {}
    loggers = {logging.getLogger(name): level for name, level in quieter.items()}
    previous = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in previous.items():
            logger.setLevel(level)


@contextmanager
def _no_interrupts():
    """Ctrl-C waits until the state directory is consistent again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _settings_environment(args: argparse.Namespace) -> dict[str, str]:
    """The functions' environment for these flags, as the template gives it to them."""
    return {"MIRROR_BUCKET": "local", **function_environment(vars(args))}


def _check_settings(args: argparse.Namespace) -> str | None:
    """Validate the flags with the pipeline's own rules before the engine starts."""
    from bls_pipeline.config import ConfigError, load_settings

    try:
        load_settings(_settings_environment(args))
    except ConfigError as exc:
        return _in_flag_terms(str(exc))
    if args.concurrency < 1:
        return "--concurrency must be at least 1"
    if args.function_timeout is not None and not 0 < args.function_timeout <= 900:
        return "--function-timeout must be more than 0 and at most 900 seconds (Lambda's limit)"
    return None


def _in_flag_terms(message: str) -> str:
    """The pipeline's message names its environment variable and template parameter; a runner user has a flag."""
    return re.sub(r"set ([A-Z_]+) / the \w+ parameter", lambda m: f"pass {FLAG_OF_VARIABLE.get(m[1], m[1])}", message)


def _why_no_reports(args: argparse.Namespace, engine) -> str | None:
    """Why the analytics function made no reports, by its own rule, for the S3 -> SQS path that cannot say."""
    from bls_pipeline.analytics import why_no_new_reports
    from bls_pipeline.config import load_settings

    settings = load_settings(_settings_environment(args) | {"MIRROR_BUCKET": engine.bucket})
    return (why_no_new_reports(settings, engine.s3)[1] or {}).get("skipped")


def _reports_of_run(engine, run_id: str) -> tuple[dict[str, list[dict]], dict]:
    """The reports this run wrote (reports/<run id>/), and which inputs they came from; ({}, {}) if none."""
    found, vintage = {}, {}
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"reports/{run_id}/").get("Contents", [])
    for obj in listed:
        if obj["Key"].endswith(".json"):
            name = obj["Key"].rsplit("/", 1)[1][: -len(".json")]
            document = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=obj["Key"])["Body"].read())
            if name == "inputs":
                vintage = document
            else:
                found[name] = document
    return found, vintage


def _got_past_listing(result) -> bool:
    return any(i.function == "ListSourceFunction" and i.error_type is None for i in result.invocations)


def _one_line_error(result) -> str:
    cause = result.cause or ""
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            cause = parsed["errorMessage"]
    except (json.JSONDecodeError, TypeError):
        pass
    return f"{result.error}: {cause}".replace("\n", " ")
