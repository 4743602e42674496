from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..bls_listing import SourceFile
from ..config import load_settings
from ..mirror import write_condition
from ..sync import copy_one, source_client

logger = Logger(service="bls-mirror")


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"file": {"name", "url", "size", "stamp", "mirror_etag"}, "run": <overrides>, "run_id": <execution>}"""
    settings = load_settings().with_overrides(event.get("run") or {})
    file = SourceFile.from_dict(event["file"])
    s3 = aws.s3_client()
    source = source_client(settings, s3, event.get("run_id"), context.get_remaining_time_in_millis() / 1000)
    result = copy_one(settings, s3, source, file, write_condition(event["file"])).to_dict()
    logger.info("copied file", extra={"copy": result})
    return result
