"""The test tiers, a pytest plugin (tests/conftest.py registers it): every collected test gets exactly one of the
markers that pyproject.toml registers, and `pytest -m <tier>` runs one tier.

- unit: no engine and no external checker (`make test-fast`, in under a minute);
- engine: the real state machine in a LocalEngine, in the test's process or in a child process (`make test-engine`);
- tools: cfn-lint, checkov or the SAM CLI on the template (`make test-tools`).

A test's tier is the first of these that applies:
1. a tier marker on the test, its parametrize case, its class or its module (`pytestmark`); two different ones stop
   the collection (`-m` selects by every marker of the chain, so a closer one cannot override a farther one);
2. engine, when the source of the test, or of a fixture it uses (directly or through other fixtures), starts a
   LocalEngine (`LocalEngine(`; conftest's make_engine does);
3. unit.

The rules are checked while the tests run, not trusted: a unit test that enters a LocalEngine, or starts
`python -m local_runner` (or the bench's pipeline run) or one of the checkers in a child process, fails and names
the marker it needs. At the end
of a run, one line gives the number of tests and the seconds of each tier.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
from collections import defaultdict
from typing import Iterable

import pytest

TIERS = ("unit", "engine", "tools")
STARTS_AN_ENGINE = re.compile(r"\bLocalEngine\(")
CHECKERS = frozenset({"cfn-lint", "checkov", "sam"})
ENGINE_MODULES = frozenset({"local_runner", "bench.pipeline_run"})  # `python -m` these starts a LocalEngine

_source_starts_engine: dict[object, bool] = {}
_running: list[tuple[str, str]] = []  # (node id, tier) of the tests being set up, run or torn down, innermost last
_TOTALS = pytest.StashKey[dict[str, list[float]]]()  # tier -> [tests, seconds], of one session


class TierError(Exception):
    """A test does what its tier excludes."""


def marked_tiers(item: pytest.Item) -> list[str]:
    """The tiers the item is marked with, on itself, its class or its module."""
    return sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})


def _starts_engine(function: object) -> bool:
    if function not in _source_starts_engine:
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            source = ""
        _source_starts_engine[function] = bool(STARTS_AN_ENGINE.search(source))
    return _source_starts_engine[function]


def _fixture_functions(item: pytest.Item) -> Iterable[object]:
    info = getattr(item, "_fixtureinfo", None)
    definitions = getattr(info, "name2fixturedefs", {}) if info is not None else {}
    for name in getattr(item, "fixturenames", ()):
        for definition in definitions.get(name, ())[-1:]:  # the definition that applies here (the closest)
            yield definition.func


def tier_of(item: pytest.Item) -> str:
    """The item's tier, by the rules above; TierError when it has two tiers."""
    explicit = marked_tiers(item)
    if len(explicit) > 1:
        raise TierError(f"{item.nodeid}: marked {' and '.join(explicit)}; a test has exactly one tier")
    if explicit:
        return explicit[0]
    functions = [getattr(item, "function", None), *_fixture_functions(item)]
    if any(f is not None and _starts_engine(f) for f in functions):
        return "engine"
    return "unit"


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        try:
            tier = tier_of(item)
        except TierError as error:
            problems.append(str(error))
            continue
        if tier not in marked_tiers(item):
            item.add_marker(tier)
        if marked_tiers(item) != [tier]:
            problems.append(f"{item.nodeid}: tiers {marked_tiers(item)}; a test has exactly one tier")
    if problems:
        raise pytest.UsageError("tests/tiers.py: every test has exactly one tier of " + ", ".join(TIERS) + ":\n  "
                                + "\n  ".join(problems))


def _tier(item: pytest.Item) -> str:
    found = marked_tiers(item)
    return found[0] if len(found) == 1 else "unit"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    tier = _tier(item)
    _running.append((item.nodeid, tier))
    started = time.monotonic()
    try:
        return (yield)
    finally:
        _running.pop()
        totals = item.config.stash.setdefault(_TOTALS, defaultdict(lambda: [0, 0.0]))
        totals[tier][0] += 1
        totals[tier][1] += time.monotonic() - started


def _refuse(what: str, needs: str) -> None:
    if _running and _running[-1][1] == "unit":
        raise TierError(f"{_running[-1][0]} is in the unit tier but {what}: mark it @pytest.mark.{needs} "
                        "(tests/tiers.py)")


def _engine_entered(enter):
    def guarded(self):
        _refuse("enters a LocalEngine", "engine")
        return enter(self)

    guarded.__wrapped__ = enter
    return guarded


def _child_process(event: str, args: tuple) -> None:
    """The audit hook: a child process started by a unit test must not be an engine or a checker."""
    if event != "subprocess.Popen" or not _running or _running[-1][1] != "unit":
        return
    executable, argv = args[0], args[1]
    if argv is None or isinstance(argv, (str, bytes, os.PathLike)):
        argv = [argv if argv is not None else executable]
    argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv]
    if len(argv) == 1:  # one command line (shell=True, or a string)
        argv = argv[0].split()
    programs = {os.path.basename(argv[0])} if argv else set()
    if len(argv) > 2 and argv[1] == "-c" and os.path.basename(argv[0]) in ("sh", "bash", "dash"):
        programs |= {os.path.basename(argv[2].split()[0])} if argv[2].split() else set()  # shell=True
    for program in sorted(programs & CHECKERS):
        _refuse(f"runs {program}", "tools")
    if any(b == "-m" and a in ENGINE_MODULES for b, a in zip(argv, argv[1:])) or any(
            STARTS_AN_ENGINE.search(a) for a in argv):
        _refuse("starts a LocalEngine in a child process", "engine")


_audit_hook_added = False


def pytest_configure(config: pytest.Config) -> None:
    """Guard what a unit test may start. Both guards stay for the process (a session run inside a test shares them),
    idle outside a unit test."""
    global _audit_hook_added
    from local_runner.engine import LocalEngine

    if not hasattr(LocalEngine.__enter__, "__wrapped__"):
        LocalEngine.__enter__ = _engine_entered(LocalEngine.__enter__)
    if not _audit_hook_added:  # an audit hook cannot be removed
        sys.addaudithook(_child_process)
        _audit_hook_added = True


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    totals = config.stash.get(_TOTALS, {})
    if totals:
        terminalreporter.write_line("tiers: " + ", ".join(
            f"{tier} {int(totals[tier][0])} test(s) in {totals[tier][1]:.1f} s" for tier in TIERS if tier in totals))
