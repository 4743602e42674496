"""Two entry points to the same reports: the state machine's Analytics state, and the SQS queue that S3 feeds
when the population file is written."""

import json
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..analytics import run_analytics
from .. import aws
from ..config import load_settings

logger = Logger(service="bls-mirror")
processor = BatchProcessor(event_type=EventType.SQS)


def _log(message: str, fields: dict, level: str = "info") -> None:
    getattr(logger, level)(message, extra=fields)


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """State machine: {"run_id", "run"} -> report summary. SQS: {"Records": [...]} -> partial batch response."""
    if "Records" in event:
        return process_partial_response(event=event, record_handler=_from_queue, processor=processor, context=context)
    settings = load_settings().with_overrides(event.get("run") or {})
    return run_analytics(settings, aws.s3_client(), event["run_id"], _log)


def _from_queue(record: SQSRecord) -> dict | None:
    """One SQS message: an S3 event notification (or S3's TestEvent, which is skipped)."""
    body = json.loads(record.body)
    settings = load_settings()
    summary = None
    for s3_record in body.get("Records", []):
        key = unquote_plus(s3_record["s3"]["object"]["key"])
        if key != settings.population_key:
            logger.info("ignored notification", extra={"key": key})
            continue
        summary = run_analytics(settings, aws.s3_client(), None, _log)  # named after the run that wrote the file
        logger.info("reports from queue", extra={"summary": summary})
    return summary
