from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..config import load_settings
from ..sync import list_source, source_client

logger = Logger(service="bls-mirror")


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"input": <execution input: optional overrides>, "run_id": <execution name>}"""
    overrides = event.get("input") or {}
    settings = load_settings().with_overrides(overrides)
    s3 = aws.s3_client()
    source = source_client(settings, s3, event["run_id"], context.get_remaining_time_in_millis() / 1000)
    result = list_source(settings, s3, source, event["run_id"])
    result["run"] = overrides
    logger.info("listed source", extra={"source_url": settings.source_url, **result})
    return result
