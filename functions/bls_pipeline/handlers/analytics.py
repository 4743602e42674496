"""Two entry points to the same reports: the state machine's Analytics state, and the SQS queue that S3 feeds
when the population file is written."""

from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..analytics import run_analytics
from .. import aws
from ._prologue import logger, run_settings

processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """State machine: {"run_id", "run"} -> report summary. SQS: {"Records": [...]} -> partial batch response."""
    if "Records" in event:
        return process_partial_response(event=event, record_handler=_from_queue, processor=processor, context=context)
    return run_analytics(run_settings(event.get("run")), aws.s3_client(), event["run_id"])


def _from_queue(record: SQSRecord) -> dict | None:
    """One SQS message: an S3 event notification (or S3's TestEvent, which has no Records and is skipped)."""
    notification = record.decoded_nested_s3_event
    settings = run_settings(None)
    summary = None
    for s3_record in notification.records if "Records" in notification else ():
        key = unquote_plus(s3_record.s3.get_object.key)  # S3 URL-encodes the key in notifications
        if key != settings.population_key:
            logger.info("ignored notification", extra={"key": key})
            continue
        summary = run_analytics(settings, aws.s3_client(), None)  # named after the run that wrote the file
        logger.info("reports from queue", extra={"summary": summary})
    return summary
