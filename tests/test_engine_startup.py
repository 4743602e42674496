"""What makes the local engine start fast must not change what it runs or what it refuses."""

from __future__ import annotations

import gc
import pickle

import pytest
from botocore.exceptions import ClientError

import local_runner.engine as engine_module
from local_runner.engine import LocalEngine
from local_runner.mocked_aws import ParsedDefinitions
from local_runner.moto_patches import speed_patches_on
from tests.conftest import engine_parameters
from tests.test_state_machine import FILES, serve

# What these tests check is what the speed records of local_runner/moto_patches.py do.
needs_speed_patches = pytest.mark.skipif(
    not speed_patches_on(), reason="LOCAL_ENGINE_SPEED_PATCHES=off: the speed patches this test checks are not applied")

pytestmark = pytest.mark.engine  # every test here starts engines, some through helpers

BAD_DEFINITIONS = [
    '{"StartAt": "A", "States": {"A": {"Type": "Bogus"}}}',
    '{"StartAt": "A"',
]


@pytest.fixture
def parses(monkeypatch, tmp_path):
    """A new process's parsed-definition cache (in tmp_path), and the list of definitions moto's parser parses."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    monkeypatch.setenv("BLS_MIRROR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(engine_module, "PARSED_DEFINITIONS", ParsedDefinitions())
    parsed: list[str] = []
    original = AmazonStateLanguageParser.parse

    def counting(definition):
        parsed.append(definition)
        return original(definition)

    monkeypatch.setattr(AmazonStateLanguageParser, "parse", staticmethod(counting))
    return parsed


def new_engine(bls) -> LocalEngine:
    return LocalEngine(engine_parameters(bls.url), extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"})


def run_once(bls) -> bool:
    with new_engine(bls) as started:
        return started.execute().succeeded


@needs_speed_patches
def test_the_definition_is_parsed_once_by_moto_and_every_execution_runs_a_fresh_program_of_it(bls, parses, tmp_path, monkeypatch):
    serve(bls)
    with new_engine(bls) as started:
        first, second = started.execute(), started.execute()
        definition = started.definition

    assert first.succeeded and second.succeeded
    assert len([i for i in first.invocations if i.function == "CopyFileFunction"]) == len(FILES)
    assert not [i for i in second.invocations if i.function == "CopyFileFunction"]
    assert parses == [definition], "validated and executed twice on one parse"
    [cached] = tmp_path.glob("asl-program-*.pickle")

    # What the executions ran is what moto's parser makes of the definition, component for component.
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    fresh, _ = AmazonStateLanguageParser.parse(definition)
    assert pickle.dumps(fresh, protocol=pickle.HIGHEST_PROTOCOL) == cached.read_bytes()
    assert "heap_key" not in cached.read_bytes().decode("latin-1"), "pickled before any evaluation"

    # A new process reads the parse from disk; a damaged file is parsed again and rewritten.
    parses.clear()
    monkeypatch.setattr(engine_module, "PARSED_DEFINITIONS", ParsedDefinitions())
    assert run_once(bls)
    assert parses == []
    cached.write_bytes(b"not a pickle")
    monkeypatch.setattr(engine_module, "PARSED_DEFINITIONS", ParsedDefinitions())
    assert run_once(bls)
    assert len(parses) == 1 and cached.read_bytes() == pickle.dumps(fresh, protocol=pickle.HIGHEST_PROTOCOL)


@needs_speed_patches
@pytest.mark.parametrize("definition", BAD_DEFINITIONS)
def test_a_definition_moto_refuses_is_still_refused_with_moto_s_own_error_and_never_cached(definition, make_engine, parses, tmp_path):
    engine = make_engine("http://127.0.0.1:9/pub/time.series/pr/")
    role = "arn:aws:iam::123456789012:role/local-pipeline"
    for _ in range(2):  # the second time too: a refusal is not remembered as a parse
        with pytest.raises(ClientError, match="ASLParserException"):
            engine.sfn.create_state_machine(name="refused", definition=definition, roleArn=role)
    assert len(list(tmp_path.glob("asl-program-*.pickle"))) == 1, "only the template's own definition is cached"
    assert parses.count(definition) == 4, "each refusal is moto's parse (ours, then moto's own for its message)"


def test_what_the_start_froze_for_the_collector_is_given_back_when_the_engine_stops(monkeypatch):
    gc.unfreeze()
    with LocalEngine({"ContactEmail": "ops@example.com"}):
        assert gc.get_freeze_count() > 100_000, "moto's tables and the engine are not walked by every collection"
    assert gc.get_freeze_count() == 0, "a test suite's engines are still collected"

    def fails(*_):
        raise RuntimeError("the start fails")

    monkeypatch.setattr(LocalEngine, "_create_state_machine", fails)
    with pytest.raises(RuntimeError, match="the start fails"):
        LocalEngine({"ContactEmail": "ops@example.com"}).__enter__()
    assert gc.get_freeze_count() == 0


@needs_speed_patches
def test_moto_s_backends_learn_the_same_regions_and_its_invokes_share_one_client(bls, monkeypatch):
    import boto3
    from moto.core.base_backend import AccountSpecificBackend

    serve(bls)
    made: list[str] = []
    original = boto3.client

    def counting(*args, **kwargs):
        made.append(kwargs.get("service_name") or args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(boto3, "client", counting)
    with new_engine(bls) as started:
        result = started.execute()
        asked, default = AccountSpecificBackend.get_session(), boto3.DEFAULT_SESSION
    assert result.succeeded
    assert len([i for i in result.invocations if i.function == "CopyFileFunction"]) == len(FILES)
    assert made.count("lambda") == 3, "creating the functions, the queue's delivery, one for every Task's invoke"

    own = AccountSpecificBackend.get_session()  # the session moto asks when the engine does not run
    assert asked is default and own is not asked
    assert asked.get_available_partitions() == own.get_available_partitions()
    for service in ("s3", "lambda", "stepfunctions", "sqs", "iam", "events", "sts"):
        for partition in own.get_available_partitions():
            assert asked.get_available_regions(service, partition) == own.get_available_regions(service, partition)
