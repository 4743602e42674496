from aws_lambda_powertools.utilities.typing import LambdaContext

from .. import aws
from ..bls_listing import SourceFile
from ..copier import CopyTarget, TransferSettings, copy_file
from ..run_files import write_condition
from ..sync import source_client
from ._prologue import logger, run_settings, seconds_left


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    """event: {"file": {"survey", "name", "url", "size", "stamp", "mirror_etag"}, "run": <overrides>, "run_id":
    <execution>}; returns {survey, name, sha256, bytes, superseded, etag}"""
    settings = run_settings(event.get("run")).for_survey(event["file"]["survey"])
    file = SourceFile.from_dict(event["file"])
    s3 = aws.s3_client()
    source = source_client(settings, s3, event.get("run_id"), seconds_left(context))
    target = CopyTarget.in_mirror(settings, file, write_condition(event["file"]))
    result = {"survey": settings.survey, **copy_file(s3, source, target, TransferSettings.from_settings(settings)).to_dict()}
    logger.info("copied file", extra={"copy": result})
    return result
