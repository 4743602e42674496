"""The local runner's options, one table: each flag of `python -m local_runner`, the template parameter it sets, the
environment variable the template gives the functions from that parameter, and the Settings field
(functions/bls_pipeline/config.py) that variable sets.

cli.py builds from OPTIONS its argparse options (flag, type, default, help), the template parameters of a run, the
environment in which it checks the settings with the pipeline's own rules, and the flag names of the errors it
prints. tests/conftest.py and the bench take the parameters of a run against a loopback source from
loopback_parameters(). tests/test_options.py holds the table to the parser, template.yaml and config.ENVIRONMENT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from bls_pipeline.config import RETRY_INTERVAL_SECONDS, RETRY_MAX_ATTEMPTS, RETRY_MAX_DELAY_SECONDS

DEFAULT_STATE_DIR = ".local-state"

SETTING = object()  # a runner default: the Settings field's own default (config.DEFAULTS), as deployed


def _true_false(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True)
class Option:
    """One flag of the runner. parameter / variable / field: None where the flag has none (a flag of the runner
    only; a parameter only the state machine reads, such as the retry settings, has no variable and no field)."""

    flag: str  # "--source-url"
    help: str  # as --help shows it; "{default}" stands for the runner default
    parameter: str | None = None  # template.yaml's Parameter, e.g. "SourceTreeUrl"
    variable: str | None = None  # the functions' environment variable set from the parameter, e.g. "SOURCE_TREE_URL"
    field: str | None = None  # the Settings field the variable sets, e.g. "source_url"
    type: Callable[[str], Any] | None = None  # argparse's type; None: the text as given
    default: Any = None  # the runner default; SETTING: the Settings field's default
    default_from: str | None = None  # an environment variable of the runner's user that gives the default
    switch: bool = False  # a flag without a value (store_true)
    metavar: str | None = None
    to_parameter: Callable[[Any], str] = str  # the flag's value -> the parameter's (and the variable's) text
    # The deployed default (template.yaml's Default, checked by tests/test_options.py) where the runner's
    # deliberately differs from it, and why; None: the runner's default is the deployed one (or there is none).
    deployed: Any = None
    differs_because: str = ""

    @property
    def dest(self) -> str:
        """The attribute argparse gives the flag's value: --source-url -> source_url."""
        return self.flag.removeprefix("--").replace("-", "_")

    def runner_default(self, settings_defaults: Mapping[str, Any]) -> Any:
        if self.default is SETTING:
            return settings_defaults[self.field]
        return self.default

    def deployed_default(self, settings_defaults: Mapping[str, Any]) -> Any:
        """The value of the deployed stack when nobody overrides the parameter (None for a runner-only flag)."""
        if self.deployed is not None:
            return self.deployed
        if self.field is not None:
            return settings_defaults[self.field]
        return self.default if self.parameter else None


_LOCAL_RETRIES = ("shorter than the deployed retries: a local run against a test server or a failing source "
                  "should end in seconds, not minutes")

OPTIONS: tuple[Option, ...] = (
    Option("--contact-email", parameter="ContactEmail", variable="CONTACT_EMAIL", field="contact_email",
           default_from="BLS_CONTACT_EMAIL",
           help="your e-mail, sent in the User-Agent; BLS refuses clients without one (default: $BLS_CONTACT_EMAIL)"),
    Option("--source-url", parameter="SourceTreeUrl", variable="SOURCE_TREE_URL", field="source_url", default=SETTING,
           help="the BLS time.series tree; each survey is its directory SOURCE_URL<survey>/ (default: {default})"),
    Option("--surveys", parameter="Surveys", variable="SURVEYS", field="surveys", default=SETTING, metavar="LIST",
           help="the surveys to mirror, e.g. pr,cu,ce, or '*' for every directory the tree lists (default: "
                "{default})"),
    Option("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR),
           help="where the local bucket is kept between runs; each survey lands in STATE_DIR/s3/MIRROR_PREFIX"
                "<survey>/ (default: {default})"),
    # None: the parameter is not passed, so the template's Default (the Settings default) applies.
    Option("--population-url", parameter="PopulationUrl", variable="POPULATION_URL", field="population_url",
           help="DataUSA population API URL (default: the template's PopulationUrl, the tesseract "
                "acs_yg_total_population_1 endpoint)"),
    Option("--mirror-prefix", parameter="MirrorRoot", variable="MIRROR_ROOT", field="mirror_prefix", default=SETTING,
           help="S3 prefix under which each survey is mirrored, in MIRROR_PREFIX<survey>/ (default: {default})"),
    Option("--concurrency", parameter="CopyConcurrency", type=int, default=4,
           help="files copied at once, the Map's MaxConcurrency (default: {default})"),
    Option("--source-requests-per-second", parameter="SourceRequestsPerSecond", variable="SOURCE_REQUESTS_PER_SECOND",
           field="source_requests_per_second", type=float, default=SETTING, metavar="RATE",
           help="requests per second to the source's host, for the whole run: every copy, range, retry and the "
                "listing (default: {default}; BLS blocks robots that request several times per second)"),
    Option("--population-requests-per-second", parameter="PopulationRequestsPerSecond",
           variable="POPULATION_REQUESTS_PER_SECOND", field="population_requests_per_second", type=float,
           default=SETTING, metavar="RATE",
           help="requests per second to the population API's host (default: {default})"),
    Option("--retry-interval", parameter="RetryIntervalSeconds", type=int, default=1,
           deployed=RETRY_INTERVAL_SECONDS, differs_because=_LOCAL_RETRIES,
           help="first retry delay in seconds (default: {default})"),
    Option("--retry-attempts", parameter="RetryMaxAttempts", type=int, default=3,
           deployed=RETRY_MAX_ATTEMPTS, differs_because=_LOCAL_RETRIES,
           help="retries per transient failure (default: {default})"),
    Option("--retry-max-delay", parameter="RetryMaxDelaySeconds", type=int, default=8,
           deployed=RETRY_MAX_DELAY_SECONDS, differs_because=_LOCAL_RETRIES,
           help="longest retry delay in seconds (default: {default})"),
    # None: every function keeps its Timeout in template.yaml.
    Option("--function-timeout", type=float, metavar="SECONDS",
           help="run every function with this timeout instead of its Timeout in template.yaml, e.g. to see quickly "
                "what a slow source does (default: the template's)"),
    Option("--allow-private-source", parameter="AllowPrivateSourceAddresses", variable="ALLOW_PRIVATE_SOURCES",
           field="allow_private_sources", switch=True, default=False, to_parameter=_true_false,
           help="let the functions ask loopback, link-local and private addresses, e.g. a test server on 127.0.0.1 "
                "(refused by default, as in the deployed stack)"),
    Option("--input", default="{}", help="execution input as JSON, e.g. per-run overrides (default: {default})"),
    Option("--dry-run", switch=True,
           help='list and plan, print what would be copied and deleted; change nothing (input {"dry_run": true})'),
    Option("--verbose", switch=True, help="also print the handlers' structured logs"),
    Option("--timings", switch=True,
           help='print where the time went to stderr, as one line: timings: {"imports": s, "engine_start": s, '
                '"execution": s, "exit": s} (exit: saving the state directory, reports, stopping the engine)'),
)

BY_FLAG = {option.flag: option for option in OPTIONS}


def shown(value: Any) -> str:
    """A default as --help shows it: 1.0 -> "1"."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _passed(option: Option, value: Any) -> bool:
    """Whether a flag's value reaches the stack: a flag without a runner default (--population-url) that was not
    given, or given empty, leaves the template's Default."""
    return value is not None and (value != "" or option.default is not None)


def template_parameters(values: Mapping[str, Any], options: Iterable[Option] = OPTIONS) -> dict[str, str]:
    """The template parameters of the flags' values (by dest, as argparse gives them)."""
    return {o.parameter: o.to_parameter(values[o.dest]) for o in options
            if o.parameter and _passed(o, values.get(o.dest))}


def function_environment(values: Mapping[str, Any], options: Iterable[Option] = OPTIONS) -> dict[str, str]:
    """The functions' environment variables for the flags' values, as the template gives them (the parameter's
    text); a flag left out leaves the Settings default."""
    return {o.variable: o.to_parameter(values[o.dest]) for o in options
            if o.variable and _passed(o, values.get(o.dest))}


FLAG_OF_VARIABLE = {option.variable: option.flag for option in OPTIONS if option.variable}

# A run against a loopback source (bls_loopback's server): its addresses allowed (the deployed default refuses
# them), rates such a server does not mind, and retries short enough that a failing source costs a test seconds
# (moto's Step Functions really sleeps the Retry delays).
LOOPBACK = {
    "AllowPrivateSourceAddresses": "true",
    "SourceRequestsPerSecond": "1000",
    "PopulationRequestsPerSecond": "1000",
    "CopyConcurrency": "4",
    "RetryIntervalSeconds": "1",
    "RetryMaxAttempts": "3",
    "RetryMaxDelaySeconds": "1",
}


def loopback_parameters(contact_email: str, tree_url: str, population_url: str, surveys: str | None = None,
                        **overrides: Any) -> dict[str, str]:
    """The template parameters of a run against a loopback source: the tree (SourceTreeUrl), the surveys (None:
    the template's Default), the population API's URL, LOOPBACK, then the overrides (by template parameter)."""
    return {
        "ContactEmail": contact_email,
        "SourceTreeUrl": tree_url,
        **({"Surveys": surveys} if surveys else {}),
        "PopulationUrl": population_url,
        **LOOPBACK,
        **{name: str(value) for name, value in overrides.items()},
    }
