from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..run_files import RunPlan
from ..sync import finish_run
from ._prologue import logger, run_settings


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"plan", "run", "listed", "unchanged" (from ListSource), "copy_results" (the Map's output: where its
    ResultWriter stored the item outputs), "run_id"}"""
    settings = run_settings(event.get("run"))
    s3 = aws.s3_client()
    result = finish_run(settings, s3, RunPlan.from_dict(event["plan"]), event.get("copy_results"), event.get("run_id", ""))
    mirror = {"listed": event.get("listed"), "unchanged": event.get("unchanged"), **result}
    logger.info("pruned mirror", extra=mirror)
    # The result replaces the state (ResultPath "$"): the plan and the copy results' location go on to RecordChanges.
    return {"run": event.get("run") or {}, "mirror": mirror, "plan": event["plan"], "copy_results": event.get("copy_results")}
