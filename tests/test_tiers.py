"""tests/tiers.py: every test gets exactly one tier, by its marker or by what it starts, and a unit test that starts
an engine or a checker anyway fails. Each case runs a small suite in this process (pytester)."""

from __future__ import annotations

import pytest

from tests.tiers import TIERS, marked_tiers

pytest_plugins = ["pytester"]

INI = """
[pytest]
addopts = -p tests.tiers --strict-markers -p no:cacheprovider
markers =
    unit: u
    engine: e
    tools: t
"""

SUITE = '''
import pytest

class LocalEngine:  # the rule reads the source: a fixture that calls LocalEngine( starts an engine
    def __init__(self, parameters): pass

@pytest.fixture
def make_engine():
    return lambda: LocalEngine({})

@pytest.fixture
def deployment(make_engine):  # an engine through another fixture
    return make_engine()

def test_plain():
    pass

def test_with_an_engine(make_engine):
    pass

def test_through_a_fixture(deployment):
    pass

def test_starting_one_itself():
    LocalEngine({})

@pytest.mark.tools
def test_a_checker():
    pass

@pytest.mark.parametrize("case", [1, pytest.param(2, marks=pytest.mark.engine)])
def test_cases(case):
    pass
'''


def tiers_of(pytester: pytest.Pytester, *args: str) -> dict[str, list[str]]:
    items, _ = pytester.inline_genitems(*args)
    return {item.nodeid.split("::", 1)[1]: marked_tiers(item) for item in items}


def test_each_test_gets_the_tier_its_marker_or_what_it_starts_says(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)

    assert tiers_of(pytester) == {
        "test_plain": ["unit"], "test_with_an_engine": ["engine"], "test_through_a_fixture": ["engine"],
        "test_starting_one_itself": ["engine"], "test_a_checker": ["tools"],
        "test_cases[1]": ["unit"], "test_cases[2]": ["engine"],
    }
    selected = pytester.runpytest("--collect-only", "-q", "-m", "unit").outlines
    assert [line.split("::", 1)[1] for line in selected if "::" in line] == ["test_plain", "test_cases[1]"]


def test_two_tiers_on_one_test_stop_the_collection(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite="""
import pytest

pytestmark = pytest.mark.unit

@pytest.mark.engine
def test_both():
    pass
""")
    result = pytester.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*every test has exactly one tier*", "*test_both: marked engine and unit*"])


def test_a_unit_test_that_starts_an_engine_or_a_checker_fails_naming_its_marker(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite="""
import subprocess
import sys

from local_runner.engine import LocalEngine

def test_enters_an_engine():
    LocalEngine.__enter__(object())  # refused before the engine's own __enter__ runs

def test_runs_the_runner():
    subprocess.run([sys.executable, "-m", "local_runner", "--help"], check=True)

def test_runs_a_checker():
    subprocess.run(["cfn-lint", "--version"], check=True)

def test_runs_another_program():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
""")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines_random([
        "*test_enters_an_engine is in the unit tier but enters a LocalEngine: mark it @pytest.mark.engine*",
        "*test_runs_the_runner is in the unit tier but starts a LocalEngine in a child process: mark it "
        "@pytest.mark.engine*",
        "*test_runs_a_checker is in the unit tier but runs cfn-lint: mark it @pytest.mark.tools*",
        "tiers: unit 4 test(s) in *",
    ])


def test_every_test_of_this_session_has_exactly_one_tier(request: pytest.FixtureRequest) -> None:
    assert request.session.items
    assert {item.nodeid: marked_tiers(item) for item in request.session.items if len(marked_tiers(item)) != 1} == {}
    assert set(TIERS) == {"unit", "engine", "tools"}
