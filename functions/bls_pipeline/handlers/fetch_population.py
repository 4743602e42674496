from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..config import load_settings
from ..population import fetch_and_store
from ..sync import source_client

logger = Logger(service="bls-mirror")


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"run": <overrides>, "run_id": <execution>}; returns {"key", "changed", "years", "first_year", "last_year"}."""
    settings = load_settings().with_overrides(event.get("run") or {})
    s3 = aws.s3_client()
    remaining = context.get_remaining_time_in_millis() / 1000
    source = source_client(settings, s3, event.get("run_id"), remaining, population=True)
    result = fetch_and_store(s3, source, settings.population_url, settings.bucket, settings.population_key,
                             event.get("run_id"))
    logger.info("fetched population", extra={"population": result})
    return result
