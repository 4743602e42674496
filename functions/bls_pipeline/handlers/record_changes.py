from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..changes import record_changes
from ..run_files import RunPlan
from ._prologue import logger, run_settings


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"plan", "run" (from ListSource), "copy_results" (where CopyFiles' ResultWriter put the item outputs;
    null in a dry run), "run_id", "execution", "started_at" (the execution's name, ARN and start time), and
    "failure" ({"Error", "Cause"} of PruneMirror when it failed after the copies)}"""
    settings = run_settings(event.get("run"))
    execution = {"name": event["run_id"], "arn": event["execution"], "started_at": event["started_at"]}
    result = record_changes(settings, aws.s3_client(), aws.events_client(), RunPlan.from_dict(event["plan"]),
                            event.get("copy_results"), execution, failure=event.get("failure"))
    logger.info("recorded changes", extra=result)
    return result
