"""The one place that reads configuration: Lambda environment variables, plus per-run overrides."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping
from urllib.parse import urlsplit

from . import s3_limits

DEFAULT_SOURCE_URL = "https://download.bls.gov/pub/time.series/pr/"
DEFAULT_MIRROR_PREFIX = "bls/pr/"
DEFAULT_RUNS_PREFIX = "pipeline/runs/"
DEFAULT_STAGING_PREFIX = "pipeline/staging/"
DEFAULT_POPULATION_URL = (
    "https://honolulu-api.datausa.io/tesseract/data.jsonrecords"
    "?cube=acs_yg_total_population_1&drilldowns=Year,Nation&locale=en&measures=Population"
)
DEFAULT_POPULATION_KEY = "datausa/population.json"
DEFAULT_REPORTS_PREFIX = "reports/"
DEFAULT_RATE_PREFIX = "pipeline/rate/"

MAX_RANGE_STREAMS = 8  # the source client keeps this many connections per host
MAX_REQUESTS_PER_SECOND = 1000.0
_EMAIL = re.compile(r"^[^@\s<>()]+@[^@\s<>()]+\.[^@\s<>()]+$")


class ConfigError(ValueError):
    """A setting or a run override has a value the pipeline cannot work with."""


@dataclass(frozen=True)
class Settings:
    bucket: str
    contact_email: str
    source_url: str = DEFAULT_SOURCE_URL
    mirror_prefix: str = DEFAULT_MIRROR_PREFIX
    runs_prefix: str = DEFAULT_RUNS_PREFIX
    staging_prefix: str = DEFAULT_STAGING_PREFIX
    http_connect_timeout: float = 10.0
    http_read_timeout: float = 60.0
    # A Retry-After up to this long is honoured inside the step (wait, ask once more); the state machine's Retry
    # cannot read the header, so longer ones are left to its backoff.
    retry_after_limit: float = 60.0
    # Files up to this size are buffered and written with one PutObject; larger ones stream as multipart.
    single_put_limit: int = 8 * 1024 * 1024
    part_size: int = 8 * 1024 * 1024
    upload_threads: int = 4
    # Byte-range GETs of one large file at once; 1 reads every file as one stream (one request per file), which is
    # right for BLS: each range is one more request under the rate below.
    range_streams: int = 1
    # Requests per second to the source's host, for the whole run (request_rate.py), and to the population API's.
    source_requests_per_second: float = 1.0
    population_requests_per_second: float = 1.0
    rate_prefix: str = DEFAULT_RATE_PREFIX
    # Loopback, link-local and private source addresses are refused unless this is set (local testing only).
    allow_private_sources: bool = False
    population_url: str = DEFAULT_POPULATION_URL
    population_key: str = DEFAULT_POPULATION_KEY
    reports_prefix: str = DEFAULT_REPORTS_PREFIX
    data_file: str = "pr.data.0.Current"
    report_series: str = "PRS30006032"
    report_period: str = "Q01"
    max_prune_share: float = 0.5  # a run refuses to delete more than this share of the mirror ...
    force_prune: bool = False  # ... unless the execution input says {"force_prune": true}

    def validate(self) -> "Settings":
        if not self.bucket:
            raise ConfigError("MIRROR_BUCKET is not set: the pipeline needs the name of the mirror bucket")
        if not _EMAIL.fullmatch(self.contact_email or ""):  # fullmatch: "$" would let a trailing newline through
            raise ConfigError(
                f"contact e-mail {self.contact_email!r} is not an e-mail address: BLS refuses requests whose "
                "User-Agent carries no contact information (set CONTACT_EMAIL / the ContactEmail parameter)"
            )
        parts = urlsplit(self.source_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"source URL {self.source_url!r} is not an http(s) URL")
        if not self.source_url.endswith("/"):
            raise ConfigError(f"source URL {self.source_url!r} must name a directory and end with '/'")
        if urlsplit(self.population_url).scheme not in ("http", "https"):
            raise ConfigError(f"population URL {self.population_url!r} is not an http(s) URL")
        if not s3_limits.MIN_PART_SIZE <= self.part_size <= s3_limits.MAX_PART_SIZE:
            raise ConfigError(f"PART_SIZE_BYTES={self.part_size} is outside S3's part sizes, 5 MiB to 5 GiB")
        if not 1 <= self.range_streams <= MAX_RANGE_STREAMS:
            raise ConfigError(f"RANGE_STREAMS={self.range_streams} must be a whole number from 1 to {MAX_RANGE_STREAMS}")
        for name in ("source_requests_per_second", "population_requests_per_second"):
            if not 0 < getattr(self, name) <= MAX_REQUESTS_PER_SECOND:
                raise ConfigError(f"{name.upper()}={getattr(self, name)} must be more than 0 and at most "
                                  f"{MAX_REQUESTS_PER_SECOND}")
        for name in ("mirror_prefix", "runs_prefix", "staging_prefix", "reports_prefix", "rate_prefix"):
            value = getattr(self, name)
            if not value.endswith("/") or value.startswith("/") or {"", ".", ".."} & set(value.split("/")[:-1]):
                raise ConfigError(f"{name} {value!r} must be a relative S3 prefix ending in '/', like 'bls/pr/', "
                                  "without empty, '.' or '..' folders")
        if self.population_key.startswith(self.mirror_root) or not self.population_key or self.population_key.endswith("/"):
            raise ConfigError(
                f"population key {self.population_key!r} must be an object key outside the mirror's folder "
                f"{self.mirror_root!r}, or pruning could delete it"
            )
        for name in ("runs_prefix", "staging_prefix", "reports_prefix", "rate_prefix"):
            other = getattr(self, name)
            if other.startswith(self.mirror_root) or self.mirror_root.startswith(other):
                raise ConfigError(
                    f"mirror prefix {self.mirror_prefix!r} shares its first folder with {name} {other!r}: pruning "
                    "the mirror could delete the pipeline's own files"
                )
        return self

    @property
    def mirror_root(self) -> str:
        """The first folder of the mirror prefix: the functions' IAM permissions for mirror files cover it."""
        return self.mirror_prefix.split("/", 1)[0] + "/"

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """Apply the per-run overrides an execution input may carry (see RUN_OVERRIDES)."""
        unknown = sorted(set(overrides) - set(RUN_OVERRIDES))
        if unknown:
            raise ConfigError(
                f"unknown execution input field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(RUN_OVERRIDES))}"
            )
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key == "force_prune":
                if not isinstance(value, bool):
                    raise ConfigError(f"execution input field 'force_prune' must be true or false, got {value!r}")
                changes["force_prune"] = value
                continue
            if not isinstance(value, str):
                raise ConfigError(f"execution input field {key!r} must be a string, got {type(value).__name__}")
            changes[RUN_OVERRIDES[key]] = value
        prefix = changes.get("mirror_prefix")
        if prefix is not None and not prefix.startswith(self.mirror_root):
            raise ConfigError(
                f"execution input field 'mirror_prefix' {prefix!r} must stay under {self.mirror_root!r}, the first "
                f"folder of the deployed MirrorPrefix {self.mirror_prefix!r}: the functions may write only there"
            )
        if prefix is not None and prefix != self.mirror_prefix and (
            prefix.startswith(self.mirror_prefix) or self.mirror_prefix.startswith(prefix)
        ):
            raise ConfigError(
                f"execution input field 'mirror_prefix' {prefix!r} nests with the deployed MirrorPrefix "
                f"{self.mirror_prefix!r}: each mirror's prune would delete the other's files as unlisted. Use a "
                "sibling folder, e.g. 'bls/ce/' beside 'bls/pr/'"
            )
        return replace(self, **changes).validate()


# Execution input field -> Settings attribute that a single run may override.
RUN_OVERRIDES = {"source_url": "source_url", "mirror_prefix": "mirror_prefix", "force_prune": "force_prune"}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    settings = Settings(
        bucket=env.get("MIRROR_BUCKET", ""),
        contact_email=env.get("CONTACT_EMAIL", ""),
        source_url=env.get("SOURCE_URL", DEFAULT_SOURCE_URL),
        mirror_prefix=env.get("MIRROR_PREFIX", DEFAULT_MIRROR_PREFIX),
        runs_prefix=env.get("RUNS_PREFIX", DEFAULT_RUNS_PREFIX),
        staging_prefix=env.get("STAGING_PREFIX", DEFAULT_STAGING_PREFIX),
        http_read_timeout=_number(env, "HTTP_READ_TIMEOUT", 60.0),
        single_put_limit=int(_number(env, "SINGLE_PUT_LIMIT_BYTES", 8 * 1024 * 1024)),
        part_size=int(_number(env, "PART_SIZE_BYTES", 8 * 1024 * 1024)),
        range_streams=_whole_number(env, "RANGE_STREAMS", 1),
        source_requests_per_second=_number(env, "SOURCE_REQUESTS_PER_SECOND", 1.0),
        population_requests_per_second=_number(env, "POPULATION_REQUESTS_PER_SECOND", 1.0),
        rate_prefix=env.get("RATE_PREFIX", DEFAULT_RATE_PREFIX),
        allow_private_sources=_flag(env, "ALLOW_PRIVATE_SOURCES"),
        population_url=env.get("POPULATION_URL", DEFAULT_POPULATION_URL),
        population_key=env.get("POPULATION_KEY", DEFAULT_POPULATION_KEY),
        reports_prefix=env.get("REPORTS_PREFIX", DEFAULT_REPORTS_PREFIX),
        report_series=env.get("REPORT_SERIES_ID", "PRS30006032"),
        report_period=env.get("REPORT_PERIOD", "Q01"),
        max_prune_share=_number(env, "MAX_PRUNE_PERCENT", 50.0) / 100,
    )
    return settings.validate()


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be a positive number")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "false").strip().lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"{name}={env.get(name)!r} must be true or false")
    return raw == "true"


def _whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    value = _number(env, name, default)
    if not float(value).is_integer():
        raise ConfigError(f"{name}={env.get(name)!r} must be a whole number")
    return int(value)
