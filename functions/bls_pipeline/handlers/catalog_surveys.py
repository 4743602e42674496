from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..catalog_update import update_catalog
from ._prologue import logger, run_settings, seconds_left


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"run": <the execution's overrides>, "run_id": <the execution's name>, "previous": <this execution's
    previous call's result, or {}>} -> what the catalog step built (counts, rebuilt surveys, failures, and how many
    surveys remain for the next invocation)."""
    result = update_catalog(run_settings(event.get("run")), aws.s3_client(), aws.glue_client(), aws.athena_client(),
                            time_left=lambda: seconds_left(context), run_id=event.get("run_id"),
                            previous=event.get("previous") or None)
    logger.info("catalog updated", extra=result)
    return result
