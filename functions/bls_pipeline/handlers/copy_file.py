from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..bls_listing import SourceFile
from ..mirror import write_condition
from ..sync import copy_one, source_client
from ._prologue import logger, run_settings, seconds_left


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"file": {"name", "url", "size", "stamp", "mirror_etag"}, "run": <overrides>, "run_id": <execution>}"""
    settings = run_settings(event.get("run"))
    file = SourceFile.from_dict(event["file"])
    s3 = aws.s3_client()
    source = source_client(settings, s3, event.get("run_id"), seconds_left(context))
    result = copy_one(settings, s3, source, file, write_condition(event["file"])).to_dict()
    logger.info("copied file", extra={"copy": result})
    return result
