"""What every handler shares before its one domain call: the one logger, and the run's settings.

The functions log through one Powertools Logger, configured from the environment as Powertools documents it
(POWERTOOLS_SERVICE_NAME and POWERTOOLS_LOG_LEVEL, set in template.yaml's Globals). The library's modules log with
the standard `logging.getLogger(__name__)`; their parent logger `bls_pipeline` gets this logger's handler and level,
so their records come out in the same JSON format.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from ..config import Settings, load_settings

LIBRARY_LOGGER = __name__.split(".", 1)[0]  # "bls_pipeline"

logger = Logger()
# copy_config_to_registered_loggers configures only top-level loggers that exist: make sure the package's does.
logging.getLogger(LIBRARY_LOGGER)
copy_config_to_registered_loggers(source_logger=logger, include={LIBRARY_LOGGER})


def run_settings(overrides: Mapping[str, Any] | None) -> Settings:
    """The deployed settings with this execution's overrides applied (and checked)."""
    return load_settings().with_overrides(overrides or {})


def seconds_left(context: Any) -> float:
    """What remains of this invocation's timeout, in seconds."""
    return context.get_remaining_time_in_millis() / 1000
