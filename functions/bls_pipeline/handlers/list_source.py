from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..sync import ListingRetry, list_source, source_client
from ._prologue import logger, run_settings, seconds_left


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"input": <execution input: optional overrides>, "run_id": <execution name>, "retry": {"max_attempts",
    "interval_seconds", "max_delay_seconds"} (the state machine's retry settings, for each survey's listing)}"""
    overrides = event.get("input") or {}
    settings = run_settings(overrides)
    s3 = aws.s3_client()
    source = source_client(settings, s3, event["run_id"], seconds_left(context))
    result = list_source(settings, s3, source, event["run_id"], ListingRetry.from_dict(event.get("retry")))
    result["run"] = overrides
    logger.info("listed source", extra={"source_url": settings.source_url, "surveys_requested": settings.surveys,
                                                **result})
    return result
