"""deploy/preflight.py refuses, before `sam deploy`, a stack name that a resource named after it would outgrow."""

from __future__ import annotations

import subprocess
import sys

from deploy.preflight import problems, stack_named_resources
from tests.conftest import ROOT


def test_the_limits_come_from_every_resource_named_after_the_stack() -> None:
    longest = {f"{n.resource}.{n.where}": n.longest_stack_name for n in stack_named_resources()}
    assert longest == {
        "PipelineStateMachine.Name": 80 - len("-pipeline"),
        "PipelineStateMachine.Events.Daily.Name": 64 - len("-daily"),
        "PipelineLogGroup.LogGroupName": 512 - len("/aws/vendedlogs/states/-pipeline"),
    }


def test_stack_names_up_to_58_characters_pass_and_longer_ones_are_refused_naming_the_resource() -> None:
    assert problems("bls-mirror") == []
    assert problems("b" * 58) == []
    refused = problems("b" * 59)
    assert len(refused) == 1 and "Events.Daily.Name" in refused[0] and "at most 58" in refused[0]
    assert len(problems("b" * 72)) == 2  # the state machine name (80) too
    assert "start with a letter" in problems("1-mirror")[0]
    assert "start with a letter" in problems("bls_mirror")[0]


def test_the_command_exits_non_zero_with_one_line_per_problem() -> None:
    ran = subprocess.run([sys.executable, "-m", "deploy.preflight", "m" * 59], cwd=ROOT, capture_output=True, text=True)
    assert ran.returncode == 1 and ran.stderr.count("error:") == 1
    ok = subprocess.run([sys.executable, "-m", "deploy.preflight", "bls-mirror"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "ok" in ok.stdout
