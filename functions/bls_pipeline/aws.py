"""AWS clients, created once per Lambda container with retrying configuration.

Handlers call `aws.s3_client()`, `aws.events_client()`, `aws.glue_client()` and `aws.athena_client()` through the
module (not names imported from it): the local engine gives each function its own clients, checked against that
function's IAM role, by replacing these functions.
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


@lru_cache(maxsize=None)
def events_client() -> Any:
    """EventBridge, for the 'mirror changed' event (changes.py)."""
    return boto3.client("events", config=CLIENT_CONFIG)


@lru_cache(maxsize=None)
def glue_client() -> Any:
    """The Glue Data Catalog, for the tables over the mirror (catalog step)."""
    return boto3.client("glue", config=CLIENT_CONFIG)


@lru_cache(maxsize=None)
def athena_client() -> Any:
    """Athena, for the views' DDL and the named report queries (catalog step)."""
    return boto3.client("athena", config=CLIENT_CONFIG)
