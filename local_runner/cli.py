"""`python -m local_runner`: run the pipeline's real state machine on this machine, with no AWS and no Docker."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from .startup import PhaseClock, paused_gc

DEFAULT_SOURCE = "https://download.bls.gov/pub/time.series/pr/"
DEFAULT_STATE_DIR = ".local-state"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local_runner",
        description=(
            "Run the pipeline's real Step Functions definition (statemachine/*.asl.json) with the real Lambda "
            "handlers on this machine: moto plays S3, Lambda and Step Functions; no AWS account, no Docker. "
            "The mirrored files are kept in --state-dir, so the next run is incremental."
        ),
    )
    parser.add_argument(
        "--contact-email",
        default=os.environ.get("BLS_CONTACT_EMAIL"),
        help="your e-mail, sent in the User-Agent; BLS refuses clients without one "
        "(default: $BLS_CONTACT_EMAIL)",
    )
    parser.add_argument("--source-url", default=DEFAULT_SOURCE, help=f"directory to mirror (default: {DEFAULT_SOURCE})")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(DEFAULT_STATE_DIR),
        help=f"where the local bucket is kept between runs; the mirror lands in STATE_DIR/s3/MIRROR_PREFIX "
        f"(default: {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--population-url",
        default=None,
        help="DataUSA population API URL (default: the template's PopulationUrl, the tesseract "
        "acs_yg_total_population_1 endpoint)",
    )
    parser.add_argument("--mirror-prefix", default="bls/pr/", help="S3 prefix of the mirror (default: bls/pr/)")
    parser.add_argument("--concurrency", type=int, default=4, help="files copied at once, the Map's MaxConcurrency (default: 4)")
    parser.add_argument(
        "--source-requests-per-second", type=float, default=1.0, metavar="RATE",
        help="requests per second to the source's host, for the whole run: every copy, range, retry and the "
        "listing (default: 1; BLS blocks robots that request several times per second)",
    )
    parser.add_argument(
        "--population-requests-per-second", type=float, default=1.0, metavar="RATE",
        help="requests per second to the population API's host (default: 1)",
    )
    parser.add_argument("--retry-interval", type=int, default=1, help="first retry delay in seconds (default: 1)")
    parser.add_argument("--retry-attempts", type=int, default=3, help="retries per transient failure (default: 3)")
    parser.add_argument("--retry-max-delay", type=int, default=8, help="longest retry delay in seconds (default: 8)")
    parser.add_argument(
        "--function-timeout", type=float, default=None, metavar="SECONDS",
        help="run every function with this timeout instead of its Timeout in template.yaml, e.g. to see quickly "
        "what a slow source does (default: the template's)",
    )
    parser.add_argument(
        "--allow-private-source", action="store_true",
        help="let the functions ask loopback, link-local and private addresses, e.g. a test server on 127.0.0.1 "
        "(refused by default, as in the deployed stack)",
    )
    parser.add_argument("--input", default="{}", help="execution input as JSON, e.g. per-run overrides (default: {})")
    parser.add_argument("--verbose", action="store_true", help="also print the handlers' structured logs")
    parser.add_argument(
        "--timings", action="store_true",
        help='print where the time went to stderr, as one line: timings: {"imports": s, "engine_start": s, '
        '"execution": s, "exit": s} (exit: saving the state directory, reports, stopping the engine)',
    )
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
    if args.state_dir.exists() and not args.state_dir.is_dir():
        print(f"error: --state-dir {args.state_dir} is a file, not a directory; nothing was changed", file=sys.stderr)
        return 2
    problem = _check_settings(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not args.verbose:
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        logging.getLogger("botocore").setLevel(logging.CRITICAL)

    clock = PhaseClock()
    with paused_gc():
        from .engine import LocalEngine
        from .progress import Progress
        from .state_dir import StateDir
    clock.end("imports")

    parameters = {
        "ContactEmail": args.contact_email,
        "SourceUrl": args.source_url,
        "MirrorPrefix": args.mirror_prefix,
        "CopyConcurrency": str(args.concurrency),
        "SourceRequestsPerSecond": str(args.source_requests_per_second),
        "PopulationRequestsPerSecond": str(args.population_requests_per_second),
        "AllowPrivateSourceAddresses": "true" if args.allow_private_source else "false",
        "RetryIntervalSeconds": str(args.retry_interval),
        "RetryMaxAttempts": str(args.retry_attempts),
        "RetryMaxDelaySeconds": str(args.retry_max_delay),
    }
    if args.population_url:
        parameters["PopulationUrl"] = args.population_url
    state = StateDir(args.state_dir)
    progress = Progress(out)
    extra_env = {} if args.verbose else {"POWERTOOLS_LOG_LEVEL": "WARNING"}
    started = time.monotonic()
    try:
        with paused_gc():
            engine = LocalEngine(parameters, observer=progress.on_invocation, extra_env=extra_env)
        if args.function_timeout:
            engine.function_timeouts = dict.fromkeys(engine.function_timeouts, args.function_timeout)
        with engine:
            state.load_into(engine.s3, engine.bucket)
            engine.purge_queues()  # restoring yesterday's files is not a new write
            clock.end("engine_start")
            progress.start(args.source_url)
            result = engine.execute(execution_input)
            clock.end("execution")
            if result.status != "FAILED" or _got_past_listing(result):
                saved = state.save_from(engine.s3, engine.bucket)
            else:
                saved = None
            reports = _latest_reports(engine)
    except ValueError as exc:  # bad parameters reach here before anything runs
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress.finish(result, time.monotonic() - started, state.objects / args.mirror_prefix, saved)
    progress.show_reports(reports, f"{state.objects / 'reports' / 'latest'}/")
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
        if c.function == "AnalyticsFunction" and "Records" in c.event and (c.result or {}).get("batchItemFailures")
    ]
    if queue_failures:
        print("error: the analytics function failed on the population queue message; rerun with --verbose "
              "to see its log", file=sys.stderr)
        return 1
    return 0


def _check_settings(args: argparse.Namespace) -> str | None:
    """Validate the flags with the pipeline's own rules before the engine starts."""
    from .template_model import FUNCTIONS_DIR

    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    from bls_pipeline.config import ConfigError, load_settings

    try:
        load_settings(
            {
                "MIRROR_BUCKET": "local",
                "CONTACT_EMAIL": args.contact_email,
                "SOURCE_URL": args.source_url,
                "MIRROR_PREFIX": args.mirror_prefix,
                "SOURCE_REQUESTS_PER_SECOND": str(args.source_requests_per_second),
                "POPULATION_REQUESTS_PER_SECOND": str(args.population_requests_per_second),
                **({"POPULATION_URL": args.population_url} if args.population_url else {}),
            }
        )
    except ConfigError as exc:
        return str(exc)
    if args.concurrency < 1:
        return "--concurrency must be at least 1"
    if args.function_timeout is not None and not 0 < args.function_timeout <= 900:
        return "--function-timeout must be more than 0 and at most 900 seconds (Lambda's limit)"
    return None


def _latest_reports(engine) -> dict[str, list[dict]]:
    found = {}
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix="reports/latest/").get("Contents", [])
    for obj in listed:
        if obj["Key"].endswith(".json"):
            name = obj["Key"].rsplit("/", 1)[1][: -len(".json")]
            found[name] = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=obj["Key"])["Body"].read())
    return found


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
