"""The deployed retry defaults (config.RETRY_*) against template.yaml, the state machine's Retry fields and
ListingRetry."""

from __future__ import annotations

import re
from pathlib import Path

from bls_pipeline import config
from bls_pipeline.sync import ListingRetry
from local_runner.template_model import load_template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = load_template(ROOT / "template.yaml")
PARAMETERS: dict[str, dict] = TEMPLATE["Parameters"]


def test_the_deployed_retry_defaults_are_defined_once_and_everything_uses_them() -> None:
    defaults = {name: PARAMETERS[name]["Default"] for name in ("RetryIntervalSeconds", "RetryMaxAttempts",
                                                                 "RetryMaxDelaySeconds")}
    assert {k: int(v) for k, v in defaults.items()} == {
        "RetryIntervalSeconds": config.RETRY_INTERVAL_SECONDS, "RetryMaxAttempts": config.RETRY_MAX_ATTEMPTS,
        "RetryMaxDelaySeconds": config.RETRY_MAX_DELAY_SECONDS}
    expected = ListingRetry(config.RETRY_MAX_ATTEMPTS, config.RETRY_INTERVAL_SECONDS, config.RETRY_MAX_DELAY_SECONDS,
                            config.RETRY_BACKOFF_RATE)
    assert ListingRetry() == ListingRetry.from_dict(None) == ListingRetry.from_dict({}) == expected
    asl = (ROOT / "statemachine" / "pipeline.asl.json").read_text(encoding="utf-8")
    rates = re.findall(r'"BackoffRate":\s*([0-9.]+)', asl)
    assert rates and {float(r) for r in rates} == {config.RETRY_BACKOFF_RATE}
