import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..aws import s3_client
from ..config import load_settings
from ..mirror import PlanLocation
from ..sync import CopyFailure, finish_run

logger = Logger(service="bls-mirror")


def _message(cause: object) -> str:
    """A raw Lambda error cause is JSON with errorMessage; other causes are kept as they are."""
    if isinstance(cause, str) and cause.startswith("{"):
        try:
            return str(json.loads(cause).get("errorMessage", cause))
        except (ValueError, AttributeError):
            pass
    return str(cause)


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"plan", "run", "listed", "unchanged" (from ListSource), "copy_results" (the Map's output)}

    The Map outputs {} for each copied file and {"failed", "error", "message"} for each file that failed.
    """
    settings = load_settings().with_overrides(event.get("run") or {})
    failures = [
        CopyFailure(r["failed"], r.get("error", ""), _message(r.get("message", "")))
        for r in event.get("copy_results") or []
        if r and "failed" in r
    ]
    result = finish_run(settings, s3_client(), PlanLocation(**event["plan"]), failures)
    mirror = {"listed": event.get("listed"), "unchanged": event.get("unchanged"), **result}
    logger.info("pruned mirror", extra=mirror)
    return {"run": event.get("run") or {}, "mirror": mirror}
