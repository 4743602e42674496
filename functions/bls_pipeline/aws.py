"""AWS clients, created once per Lambda container with retrying configuration.

Handlers call `aws.s3_client()` through the module (not a name imported from it): the local engine gives each
function its own client, checked against that function's IAM role, by replacing this one function.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)


@lru_cache(maxsize=None)
def s3_client() -> Any:
    return boto3.client("s3", config=CLIENT_CONFIG)
