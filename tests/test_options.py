"""local_runner/options.py's table against what it names: the runner's parser, template.yaml's Parameters and the
functions' environment, config.ENVIRONMENT and the Settings fields; the deployed retry defaults (config.RETRY_*)
against template.yaml, the state machine's Retry fields and ListingRetry."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

import pytest

from bls_pipeline import config
from bls_pipeline.sync import ListingRetry
from local_runner.cli import build_parser
from local_runner.options import LOOPBACK, OPTIONS, SETTING, loopback_parameters, template_parameters
from local_runner.template_model import load_template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = load_template(ROOT / "template.yaml")
PARAMETERS: dict[str, dict] = TEMPLATE["Parameters"]
WITH_PARAMETER = [o for o in OPTIONS if o.parameter]


def _function_environments() -> list[dict]:
    """The Variables of Globals' Function Environment and of each function's."""
    found = [TEMPLATE.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})]
    for resource in TEMPLATE["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            found.append(resource.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    return found


def _accepted(name: str, value: str) -> bool:
    """Whether CloudFormation would take this value for the parameter (its AllowedPattern, AllowedValues, bounds)."""
    spec = PARAMETERS[name]
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        return False
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return False
    if spec["Type"] == "Number":
        number = float(value)
        return spec.get("MinValue", number) <= number <= spec.get("MaxValue", number)
    return True


def test_the_parser_has_exactly_the_tables_flags_in_its_order() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert [a.option_strings for a in actions] == [[o.flag] for o in OPTIONS]
    assert [a.dest for a in actions] == [o.dest for o in OPTIONS]
    assert [isinstance(a, argparse._StoreTrueAction) for a in actions] == [o.switch for o in OPTIONS]


def test_every_parameter_variable_and_field_the_table_names_exists_and_they_belong_together() -> None:
    settings_fields = {f.name for f in fields(config.Settings)}
    environments = _function_environments()
    for option in OPTIONS:
        if option.parameter:
            assert option.parameter in PARAMETERS, f"{option.flag}: no Parameter {option.parameter} in template.yaml"
        if option.variable:
            assert option.parameter, f"{option.flag}: a variable without the parameter that sets it"
            assert option.variable in config.ENVIRONMENT, f"{option.flag}: {option.variable} not in config.ENVIRONMENT"
            assert config.ENVIRONMENT[option.variable][0] == option.field, option.flag
            assert {"Ref": option.parameter} in [env.get(option.variable) for env in environments], (
                f"{option.flag}: template.yaml does not set {option.variable} from {option.parameter}")
        if option.field:
            assert option.variable and option.field in settings_fields, option.flag
        if option.default is SETTING:
            assert option.field, f"{option.flag}: the Settings default of no field"


def test_every_parameter_the_template_sets_a_runner_variable_from_has_a_flag() -> None:
    """The settings check (cli._check_settings) sees what a run would: each variable of the table's parameters."""
    flagged = {o.parameter for o in WITH_PARAMETER}
    for env in _function_environments():
        for variable, value in env.items():
            if isinstance(value, dict) and value.get("Ref") in flagged:
                assert variable in {o.variable for o in OPTIONS}, f"{variable} (from {value['Ref']}) has no option"


@pytest.mark.parametrize("option", WITH_PARAMETER, ids=[o.flag for o in WITH_PARAMETER])
def test_the_deployed_default_is_template_yamls_and_a_runner_default_that_differs_says_why(option) -> None:
    deployed = option.deployed_default(config.DEFAULTS)
    spec = PARAMETERS[option.parameter]
    if "Default" not in spec:
        assert not deployed and not option.differs_because, f"{option.parameter} has no Default in template.yaml"
        return
    if option.switch:
        assert option.to_parameter(deployed) == str(spec["Default"])
    else:
        assert (option.type or str)(str(spec["Default"])) == deployed
    runner = option.runner_default(config.DEFAULTS)
    if runner is None:  # not passed: the template's Default applies
        assert not option.differs_because
    else:
        assert (runner != deployed) == bool(option.differs_because), (
            f"{option.flag}: runner default {runner!r}, deployed {deployed!r}, differs_because "
            f"{option.differs_because!r}")


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


def test_the_runners_defaults_and_a_loopback_run_are_parameters_the_template_accepts() -> None:
    runner = template_parameters(vars(build_parser().parse_args(["--contact-email", "ops@example.com"])))
    loopback = loopback_parameters("ops@example.com", "http://127.0.0.1:8000/pub/time.series/",
                                   "http://127.0.0.1:8000/population", surveys="pr,cu")
    for parameters in (runner, loopback):
        bad = {name: value for name, value in parameters.items() if not _accepted(name, value)}
        assert not bad, f"refused by template.yaml's constraints: {bad}"
    assert "PopulationUrl" not in runner, "without --population-url the template's Default applies"


def test_a_loopback_run_allows_its_source_and_keeps_the_overrides() -> None:
    parameters = loopback_parameters("a@b.org", "http://127.0.0.1:1/pub/time.series/", "http://127.0.0.1:1/p",
                                     RetryMaxAttempts=1, Surveys="ce")
    assert parameters["AllowPrivateSourceAddresses"] == "true"
    assert (parameters["RetryMaxAttempts"], parameters["Surveys"]) == ("1", "ce")
    assert set(LOOPBACK) <= set(parameters) and "Surveys" not in loopback_parameters("a@b.org", "http://x/", "http://y/")
