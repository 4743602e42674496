"""Shared fixtures: a BLS-like loopback server and the local engine running the real state machine."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent

from bls_loopback.population import POPULATION_PATH, population_json  # noqa: E402
from bls_loopback.server import BlsServer  # noqa: E402
from local_runner.engine import LocalEngine  # noqa: E402
from local_runner.moto_patches import atomic_conditional_puts  # noqa: E402
from local_runner.options import loopback_parameters  # noqa: E402

pytest_plugins = ["tests.tiers"]  # every test in one tier: unit, engine or tools

CONTACT = "data-team@example.com"
REAL_DATA = ROOT.parent / "shared" / "data" / "real"

logging.getLogger("moto").setLevel(logging.CRITICAL)


@pytest.fixture
def bls() -> Iterator[BlsServer]:
    """The BLS-like server; it also answers DataUSA's population API at POPULATION_PATH."""
    with BlsServer() as server:
        server.route(POPULATION_PATH, population_json())
        yield server


def tree_and_survey(url: str) -> tuple[str, str | None]:
    """A survey directory's URL (http://host/pub/time.series/pr/) -> (the tree's URL, "pr"); a tree's URL -> (it,
    None)."""
    head, name = url.rstrip("/").rsplit("/", 1)
    return (head + "/", name) if head.endswith("/time.series") else (url, None)


def tree_url(server) -> str:
    """The time.series tree a survey directory's server is in (its URL without the survey's folder)."""
    return tree_and_survey(server.url)[0]


def engine_parameters(source_url: str, **overrides: str) -> dict[str, str]:
    """Template parameters for tests: a loopback run (local_runner/options.py's loopback_parameters: retries short
    enough to keep the suite fast, as moto really sleeps, and a request rate that the loopback source does not
    mind; tests/test_politeness.py runs at BLS's). source_url: the tree's URL, or one survey directory's (then that
    survey is the one mirrored, e.g. bls.url: pr)."""
    tree, survey = tree_and_survey(source_url)
    population = source_url.split("/pub/", 1)[0] + POPULATION_PATH + "?cube=acs_yg_total_population_1"
    return loopback_parameters(CONTACT, tree, population, surveys=survey, **overrides)


@pytest.fixture
def make_engine() -> Iterator[Callable[..., LocalEngine]]:
    """Start a LocalEngine (moto + the real ASL + the real handlers); stopped after the test."""
    with ExitStack() as started:

        def start(source_url: str, **overrides: str) -> LocalEngine:
            parameters = engine_parameters(source_url, **overrides)
            return started.enter_context(LocalEngine(parameters, extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}))

        yield start


@pytest.fixture
def moto_s3() -> Iterator[object]:
    """A moto S3 client with one versioned bucket, 'mirror-bucket', for domain and handler tests."""
    import os

    from moto import mock_aws

    env = {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with mock_aws(), atomic_conditional_puts():
            import boto3

            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="mirror-bucket")
            s3.put_bucket_versioning(Bucket="mirror-bucket", VersioningConfiguration={"Status": "Enabled"})
            yield s3
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def mirror_contents(s3, bucket: str, prefix: str = "bls/pr/") -> dict[str, bytes]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return found
