"""AWS clients, created once per Lambda container with retrying configuration."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)


@lru_cache(maxsize=None)
def s3_client() -> Any:
    return boto3.client("s3", config=_CONFIG)
