from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..population import fetch_and_store
from ..sync import source_client
from ._prologue import logger, run_settings, seconds_left


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"run": <overrides>, "run_id": <execution>}; returns {"key", "changed", "years", "first_year", "last_year"}."""
    settings = run_settings(event.get("run"))
    s3 = aws.s3_client()
    source = source_client(settings, s3, event.get("run_id"), seconds_left(context), population=True)
    result = fetch_and_store(s3, source, settings.population_url, settings.bucket, settings.population_key,
                             event.get("run_id"))
    logger.info("fetched population", extra={"population": result})
    return result
