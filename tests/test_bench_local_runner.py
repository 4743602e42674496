"""The bench's local-runner section: its parsing and report logic only (the bench itself measures; nothing is timed
here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.local_runner_startup import StartupBenchError, foreign_imports, parse_timings
from bench.report import LOCAL_RUNNER_HEADING, splice_section


def test_the_timings_line_is_read_from_among_other_stderr_lines():
    stderr = ('warning: something\ntimings: {"imports": 0.31, "engine_start": 0.8, "execution": 14.9, "exit": 0.09}\n'
              "error: late line\n")
    assert parse_timings(stderr) == {"imports": 0.31, "engine_start": 0.8, "execution": 14.9, "exit": 0.09}


def test_no_timings_line_is_none_and_a_malformed_one_fails_loudly():
    assert parse_timings("error: nothing here\n") is None
    with pytest.raises(StartupBenchError):
        parse_timings('timings: {"imports": 0.3, "execution": 1.0}\n')


def test_imports_from_another_checkout_are_found_in_python_v_output():
    own, other = Path("/scratch/baseline"), "/work/checkout"
    stderr = "\n".join([
        f"# code object from {own}/functions/bls_pipeline/config.py",
        f"# {own}/local_runner/__pycache__/cli.cpython-311.pyc matches {own}/local_runner/cli.py",
        f"# code object from '{other}/functions/bls_pipeline/__pycache__/sync.cpython-311.pyc'",
        "import 'bls_pipeline.sync' # <_frozen_importlib_external.SourceFileLoader object at 0x7f>",
    ])
    seen, foreign = foreign_imports(stderr, own)
    assert len(seen) == 4
    assert foreign == {f"{other}/functions/bls_pipeline/__pycache__/sync.cpython-311.pyc"}


def test_splicing_replaces_only_the_local_runner_section():
    document = f"# Results\n\n## Targets\n\nold targets\n\n{LOCAL_RUNNER_HEADING}\n\nold numbers\n\n## Caveats\n\n* one\n"
    spliced = splice_section(document, [LOCAL_RUNNER_HEADING, "", "new numbers"])
    assert spliced == f"# Results\n\n## Targets\n\nold targets\n\n{LOCAL_RUNNER_HEADING}\n\nnew numbers\n\n## Caveats\n\n* one\n"


def test_splicing_inserts_a_missing_section_before_the_caveats_or_at_the_end():
    section = [LOCAL_RUNNER_HEADING, "", "numbers"]
    assert splice_section("# R\n\n## Caveats\n\n* one\n", section) == \
        f"# R\n\n{LOCAL_RUNNER_HEADING}\n\nnumbers\n\n## Caveats\n\n* one\n"
    assert splice_section("# R\n\ntext\n", section) == f"# R\n\ntext\n\n{LOCAL_RUNNER_HEADING}\n\nnumbers\n"
