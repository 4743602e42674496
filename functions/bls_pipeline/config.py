"""The one place that reads configuration: Lambda environment variables, plus per-run overrides."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from fnmatch import fnmatchcase
from typing import Any, Callable, ClassVar, Mapping
from urllib.parse import urlsplit

from . import s3_limits

# Where the pipeline keeps its own files. template.yaml's IAM policies and lifecycle rules name these prefixes, so
# they are constants, not settings: another value would only be denied at run time.
RUNS_PREFIX = "pipeline/runs/"
STAGING_PREFIX = "pipeline/staging/"
RATE_PREFIX = "pipeline/rate/"
# The sync index of each mirror (sync_index.py): pipeline/index/<mirror prefix>index.json. Never expires.
INDEX_PREFIX = "pipeline/index/"
REPORTS_PREFIX = "reports/"
# The lasting change log (changes/YYYY/MM/DD/<execution>.json): outside pipeline/, so no lifecycle rule expires it.
CHANGES_PREFIX = "changes/"
# The SQL catalog's symlink manifests (catalog.py): catalog/symlinks/<table>/manifest.txt.
CATALOG_PREFIX = "catalog/"
# The "mirror changed" event on the account's default EventBridge bus (changes.py); subscribers match on these two.
EVENT_SOURCE = "bls-mirror"
EVENT_DETAIL_TYPE = "Mirror Changed"

# The state machine's retry of transient errors as deployed: template.yaml's RetryIntervalSeconds, RetryMaxAttempts
# and RetryMaxDelaySeconds Defaults (tests/test_options.py holds them equal to these), the BackoffRate of its Retry
# fields, and what ListSource's retry of a listing falls back to when its event names none (sync.ListingRetry).
RETRY_INTERVAL_SECONDS = 5
RETRY_MAX_ATTEMPTS = 5
RETRY_MAX_DELAY_SECONDS = 120
RETRY_BACKOFF_RATE = 2.0

MAX_RANGE_STREAMS = 8  # the source client keeps this many connections per host
MAX_REQUESTS_PER_SECOND = 1000.0
_EMAIL = re.compile(r"^[^@\s<>()]+@[^@\s<>()]+\.[^@\s<>()]+$")


class ConfigError(ValueError):
    """A setting or a run override has a value the pipeline cannot work with."""


@dataclass(frozen=True)
class Settings:
    bucket: str = ""
    contact_email: str = ""
    # The BLS time.series tree (each survey is the directory <source_url><survey>/) and the mirror's root in the
    # bucket (each survey is mirrored under <mirror_prefix><survey>/). for_survey() gives one survey's view, whose
    # source_url and mirror_prefix are that survey's directory and prefix.
    source_url: str = "https://download.bls.gov/pub/time.series/"
    mirror_prefix: str = "bls/"
    # The surveys one execution mirrors: "pr", a list "pr,cu,ce", or "*" for every directory the tree lists.
    surveys: str = "pr"
    survey: str = ""  # set only in a per-survey view (for_survey): the survey it mirrors
    http_connect_timeout: float = 10.0
    http_read_timeout: float = 60.0
    # A Retry-After up to this long is honoured inside the step (wait, ask once more); the state machine's Retry
    # cannot read the header, so longer ones are left to its backoff.
    retry_after_limit: float = 60.0
    # Files up to this size are buffered and written with one PutObject; larger ones stream as multipart.
    single_put_limit: int = 8 * s3_limits.MiB
    part_size: int = 8 * s3_limits.MiB
    upload_threads: int = 4
    # Byte-range GETs of one large file at once; 1 reads every file as one stream (one request per file), which is
    # right for BLS: each range is one more request under the rate below.
    range_streams: int = 1
    # Requests per second to the source's host, for the whole run (request_rate.py), and to the population API's.
    source_requests_per_second: float = 1.0
    population_requests_per_second: float = 1.0
    # Loopback, link-local and private source addresses are refused unless this is set (local testing only).
    allow_private_sources: bool = False
    population_url: str = (
        "https://honolulu-api.datausa.io/tesseract/data.jsonrecords"
        "?cube=acs_yg_total_population_1&drilldowns=Year,Nation&locale=en&measures=Population"
    )
    population_key: str = "datausa/population.json"
    data_file: str = "pr.data.0.Current"
    report_series: str = "PRS30006032"
    report_period: str = "Q01"
    max_prune_share: float = 0.5  # a run refuses to delete more than this share of the mirror ...
    force_prune: bool = False  # ... unless the execution input says {"force_prune": true}
    dry_run: bool = False  # {"dry_run": true}: list and plan, record what would change; copy and delete nothing
    # Include/exclude globs per survey, "pr:exclude=*.AllData,*.txt;ce:include=ce.data.*" (see survey_filter)
    survey_filters: str = ""
    # SQL over the mirror (catalog_update.py): the Glue database of the tables and views, the Athena workgroup.
    catalog_database: str = "bls_mirror"
    query_workgroup: str = "primary"
    # How a BLS table reads its file: "symlink" (a manifest naming the mirrored file) or "copy" (a copy of the file
    # in a folder of its own), the fallback for an Athena that misreads symlink tables (catalog.py).
    catalog_table_reads: str = "symlink"

    runs_prefix: ClassVar[str] = RUNS_PREFIX
    staging_prefix: ClassVar[str] = STAGING_PREFIX
    rate_prefix: ClassVar[str] = RATE_PREFIX
    index_prefix: ClassVar[str] = INDEX_PREFIX
    reports_prefix: ClassVar[str] = REPORTS_PREFIX
    changes_prefix: ClassVar[str] = CHANGES_PREFIX
    catalog_prefix: ClassVar[str] = CATALOG_PREFIX

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
        folders = parts.path.rstrip("/").rsplit("/", 2)
        if not self.survey and len(folders) == 3 and folders[1] == "time.series" and _SURVEY.fullmatch(folders[2]):
            raise ConfigError(
                f"source URL {self.source_url!r} names the survey directory {folders[2]!r}, not the time.series "
                f"tree: the source URL is now the tree's root ({self.source_url[: -len(folders[2]) - 1]}), and "
                f"the surveys are chosen apart (SourceTreeUrl and Surveys={folders[2]}; the local runner's "
                f"--source-url and --surveys {folders[2]}; an execution input's 'source_url' and 'surveys')"
            )
        survey_names(self.surveys)
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
        if self.catalog_table_reads not in TABLE_READS:
            raise ConfigError(f"CATALOG_TABLE_READS={self.catalog_table_reads!r} must be one of {', '.join(TABLE_READS)}")
        parse_survey_filters(self.survey_filters)
        value = self.mirror_prefix
        if not value.endswith("/") or value.startswith("/") or {"", ".", ".."} & set(value.split("/")[:-1]):
            raise ConfigError(f"mirror_prefix {value!r} must be a relative S3 prefix ending in '/', like 'bls/', "
                              "without empty, '.' or '..' folders")
        if self.population_key.startswith(self.mirror_root) or not self.population_key or self.population_key.endswith("/"):
            raise ConfigError(
                f"population key {self.population_key!r} must be an object key outside the mirror's folder "
                f"{self.mirror_root!r}, or pruning could delete it"
            )
        for name in ("runs_prefix", "staging_prefix", "reports_prefix", "rate_prefix", "changes_prefix", "index_prefix",
                     "catalog_prefix"):
            other = getattr(self, name)
            if other.startswith(self.mirror_root) or self.mirror_root.startswith(other):
                raise ConfigError(
                    f"mirror prefix {self.mirror_prefix!r} shares its first folder with {name} {other!r}: pruning "
                    "the mirror could delete the pipeline's own files"
                )
        return self

    def for_survey(self, name: str) -> "Settings":
        """One survey's view of the run's settings: source_url <tree><survey>/, mirror_prefix <root><survey>/, so the
        single-directory domain code (sync, sync_index, prune, the filters) works per survey. The name is checked."""
        if self.survey:
            raise ValueError(f"for_survey({name!r}) of the view of survey {self.survey!r}")
        if not _SURVEY.fullmatch(name or ""):
            raise ConfigError(f"survey name {name!r} is not a BLS survey directory name (lower-case letters, digits, "
                              "'.', '_' or '-', not starting with a punctuation mark)")
        return replace(self, source_url=f"{self.source_url}{name}/", mirror_prefix=f"{self.mirror_prefix}{name}/",
                       surveys=name, survey=name)

    def survey_filter(self) -> "SurveyFilter":
        """The include/exclude globs that apply to this survey (of a per-survey view)."""
        return parse_survey_filters(self.survey_filters).get(self.survey, SurveyFilter())

    @property
    def all_surveys(self) -> bool:
        """Surveys "*": every directory the tree's listing shows."""
        return self.surveys.strip() == "*"

    def survey_list(self) -> list[str]:
        """The surveys named by `surveys` (empty for "*": the tree's listing says which)."""
        return survey_names(self.surveys)

    @property
    def mirror_root(self) -> str:
        """The first folder of the mirror prefix: the functions' IAM permissions for mirror files cover it."""
        return self.mirror_prefix.split("/", 1)[0] + "/"

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """Apply the per-run overrides an execution input may carry (see RUN_OVERRIDES)."""
        replaced = sorted(set(overrides) & set(REPLACED_OVERRIDES))
        if replaced:
            raise ConfigError("; ".join(f"execution input field {name!r} is no longer accepted: "
                                        f"{REPLACED_OVERRIDES[name]}" for name in replaced))
        unknown = sorted(set(overrides) - set(RUN_OVERRIDES))
        if unknown:
            raise ConfigError(
                f"unknown execution input field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(RUN_OVERRIDES))}"
            )
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in _FLAGS:
                if not isinstance(value, bool):
                    raise ConfigError(f"execution input field {key!r} must be true or false, got {value!r}")
                changes[RUN_OVERRIDES[key]] = value
                continue
            if not isinstance(value, str):
                raise ConfigError(f"execution input field {key!r} must be a string, got {type(value).__name__}")
            changes[RUN_OVERRIDES[key]] = value
        return replace(self, **changes).validate()


@dataclass(frozen=True)
class SurveyFilter:
    """Which listed names of a survey are mirrored: those matching an include glob (every name when there is none)
    and no exclude glob (fnmatch, case-sensitive). Applied to the listing before anything else is requested; a
    filtered-out file is neither copied nor deleted from the mirror."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def selects(self, name: str) -> bool:
        return (not self.include or any(fnmatchcase(name, g) for g in self.include)) and not any(
            fnmatchcase(name, g) for g in self.exclude)

    def to_dict(self) -> dict:
        return {"include": list(self.include), "exclude": list(self.exclude)}


_SURVEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
TABLE_READS = ("symlink", "copy")  # catalog_table_reads
MAX_SURVEYS = 200  # the BLS tree lists about 60; the run's plan and manifest hold one section per survey
# The survey the reports are computed from (its data_file, pr.data.0.Current); other surveys are mirrored only.
REPORT_SURVEY = "pr"


def survey_name_ok(name: str) -> bool:
    """Whether a name can be a survey: a BLS time.series directory name, and one S3 key folder."""
    return bool(_SURVEY.fullmatch(name or ""))


def survey_names(text: str) -> list[str]:
    """"pr,cu, ce" -> ["pr", "cu", "ce"] (each checked, duplicates dropped, order kept); "*" -> [] (the tree's
    listing decides)."""
    if (text or "").strip() == "*":
        return []
    names = list(dict.fromkeys(part.strip() for part in (text or "").split(",")))
    bad = [n for n in names if not _SURVEY.fullmatch(n)]
    if not names or bad or len(names) > MAX_SURVEYS:
        raise ConfigError(
            f"surveys {text!r} is not a comma-separated list of BLS survey directory names such as 'pr,cu,ce' (lower "
            f"case, at most {MAX_SURVEYS}), or '*' for every directory the tree lists"
            + (f"; not a survey name: {', '.join(map(repr, bad[:5]))}" if bad else "")
        )
    return names


def parse_survey_filters(text: str) -> dict[str, SurveyFilter]:
    """"pr:exclude=*.AllData,*.txt;ce:include=ce.data.*;ce:exclude=*.AllData" -> survey -> SurveyFilter. Entries are
    separated by ';', globs by ','; a survey may have several entries (their globs add up)."""
    found: dict[str, dict[str, list[str]]] = {}
    for entry in filter(None, (part.strip() for part in (text or "").split(";"))):
        survey, _, rule = entry.partition(":")
        kind, _, globs = rule.partition("=")
        names = [g.strip() for g in globs.split(",") if g.strip()]
        if not _SURVEY.fullmatch(survey.strip()) or kind.strip() not in ("include", "exclude") or not names:
            raise ConfigError(
                f"survey filter {entry!r} is not '<survey>:include=<glob>[,<glob>...]' or '<survey>:exclude=<glob>"
                "[,<glob>...]' (entries separated by ';', e.g. 'ce:exclude=*.AllData;la:exclude=*.AllData')"
            )
        found.setdefault(survey.strip(), {"include": [], "exclude": []})[kind.strip()].extend(names)
    return {s: SurveyFilter(tuple(v["include"]), tuple(v["exclude"])) for s, v in found.items()}


# Execution input field -> Settings attribute that a single run may override.
RUN_OVERRIDES = {"source_url": "source_url", "surveys": "surveys", "force_prune": "force_prune",
                 "dry_run": "dry_run", "survey_filters": "survey_filters"}
# Execution input fields that were replaced, and what to use instead.
REPLACED_OVERRIDES = {
    "mirror_prefix": "each survey is mirrored under the deployed MirrorRoot, in <MirrorRoot><survey>/; choose the "
                     "surveys of one run with 'surveys' (e.g. {\"surveys\": \"ce\"}, mirrored under bls/ce/)",
}
_FLAGS = frozenset({"force_prune", "dry_run"})


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default)


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


def _byte_count(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_number(env, name, default))


def _whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    value = _number(env, name, default)
    if not float(value).is_integer():
        raise ConfigError(f"{name}={env.get(name)!r} must be a whole number")
    return int(value)


def _percent(env: Mapping[str, str], name: str, default: float) -> float:
    """A share given in percent (MAX_PRUNE_PERCENT=50 -> 0.5)."""
    return _number(env, name, default * 100) / 100


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "true" if default else "false").strip().lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"{name}={env.get(name)!r} must be true or false")
    return raw == "true"


# Environment variable (template.yaml's Globals) -> the Settings field it sets, and how it is read. The field's
# default applies when the variable is unset (or, for numbers, empty).
ENVIRONMENT: dict[str, tuple[str, Callable[[Mapping[str, str], str, Any], Any]]] = {
    "MIRROR_BUCKET": ("bucket", _text),
    "CONTACT_EMAIL": ("contact_email", _text),
    "SOURCE_TREE_URL": ("source_url", _text),
    "MIRROR_ROOT": ("mirror_prefix", _text),
    "SURVEYS": ("surveys", _text),
    "HTTP_READ_TIMEOUT": ("http_read_timeout", _number),
    "SINGLE_PUT_LIMIT_BYTES": ("single_put_limit", _byte_count),
    "PART_SIZE_BYTES": ("part_size", _byte_count),
    "RANGE_STREAMS": ("range_streams", _whole_number),
    "SOURCE_REQUESTS_PER_SECOND": ("source_requests_per_second", _number),
    "POPULATION_REQUESTS_PER_SECOND": ("population_requests_per_second", _number),
    "ALLOW_PRIVATE_SOURCES": ("allow_private_sources", _flag),
    "POPULATION_URL": ("population_url", _text),
    "POPULATION_KEY": ("population_key", _text),
    "REPORT_SERIES_ID": ("report_series", _text),
    "REPORT_PERIOD": ("report_period", _text),
    "MAX_PRUNE_PERCENT": ("max_prune_share", _percent),
    "SURVEY_FILTERS": ("survey_filters", _text),
    "CATALOG_DATABASE": ("catalog_database", _text),
    "QUERY_WORKGROUP": ("query_workgroup", _text),
    "CATALOG_TABLE_READS": ("catalog_table_reads", _text),
}
DEFAULTS = {f.name: f.default for f in fields(Settings)}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values = {field: read(env, variable, DEFAULTS[field]) for variable, (field, read) in ENVIRONMENT.items()}
    return Settings(**values).validate()
