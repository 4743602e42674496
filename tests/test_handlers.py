"""Each Lambda handler called as Lambda calls it, with moto S3 and the loopback BLS server."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest

from bls_pipeline.aws import s3_client
from bls_pipeline.config import ConfigError
from bls_pipeline.handlers import _prologue, copy_file, list_source, prune_mirror
from local_runner.engine import LocalContext
from tests.conftest import mirror_contents

BUCKET = "mirror-bucket"


@pytest.fixture
def env(moto_s3, bls, monkeypatch):
    monkeypatch.setenv("MIRROR_BUCKET", BUCKET)
    monkeypatch.setenv("CONTACT_EMAIL", "ops@example.com")
    monkeypatch.setenv("ALLOW_PRIVATE_SOURCES", "true")  # the loopback server
    monkeypatch.setenv("SOURCE_TREE_URL", bls.url.removesuffix("pr/"))  # the tree; Surveys is pr by default
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    s3_client.cache_clear()
    yield moto_s3
    s3_client.cache_clear()


def ctx(name: str) -> LocalContext:
    return LocalContext(name, 60)


def test_list_source_stores_the_plan_and_returns_only_counts(env, bls):
    bls.put("pr.class", b"a" * 10)
    bls.put("pr.series", b"b" * 20)
    env.put_object(Bucket=BUCKET, Key="bls/pr/pr.gone", Body=b"old")

    result = list_source.handler({"input": {}, "run_id": "exec-1"}, ctx("ListSource"))

    assert {k: result[k] for k in ("listed", "to_copy", "unchanged", "to_delete", "to_copy_bytes")} == {
        "listed": 2, "to_copy": 2, "unchanged": 0, "to_delete": 1, "to_copy_bytes": 30,
    }
    items = json.loads(env.get_object(Bucket=BUCKET, Key=result["plan"]["items_key"])["Body"].read())
    assert [i["name"] for i in items] == ["pr.series", "pr.class"], "largest first, so the longest copy starts first"
    assert {i["survey"] for i in items} == {"pr"}
    assert result["plan"]["items_key"] == "pipeline/runs/exec-1/copy-items.json"
    surveys = json.loads(env.get_object(Bucket=BUCKET, Key=result["plan"]["surveys_key"])["Body"].read())
    assert [s["survey"] for s in surveys["surveys"]] == ["pr"]
    assert surveys["surveys"][0]["plan"]["items_key"] == "pipeline/runs/exec-1/pr/copy-items.json"
    assert len(json.dumps(result)) < 1024


def test_list_source_rejects_an_unknown_override_before_any_request(env, bls):
    with pytest.raises(ConfigError, match="unknown execution input field.*sourceurl"):
        list_source.handler({"input": {"sourceurl": "x"}, "run_id": "e"}, ctx("ListSource"))
    assert bls.requests_for() == []


def test_copy_file_copies_one_file_and_says_what_it_wrote(env, bls):
    bls.put("pr.class", b"class\r\n")
    event = {"file": {"survey": "pr", "name": "pr.class", "url": bls.url + "pr.class", "size": 7,
                      "stamp": "8/6/2026 8:30 AM"}, "run": {}}

    result = copy_file.handler(event, ctx("CopyFile"))

    assert (result["survey"], result["name"]) == ("pr", "pr.class") and result["bytes"] == 7 and len(result["sha256"]) == 64
    assert mirror_contents(env, BUCKET) == {"pr.class": b"class\r\n"}


def test_prune_deletes_only_unlisted_objects_under_the_mirror_prefix_and_reports_failures(env, bls):
    for key in ("bls/pr/pr.keep", "bls/pr/pr.gone", "datausa/population.json", "bls/prx/other"):
        env.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    env.put_object(Bucket=BUCKET, Key="pipeline/runs/e/pr/listing.json", Body=json.dumps(["pr.keep", "pr.bad"]))
    env.put_object(Bucket=BUCKET, Key="pipeline/runs/e/pr/copy-items.json", Body=json.dumps([
        {"name": "pr.bad", "url": "u", "size": 5, "stamp": "s"},
    ]))
    env.put_object(Bucket=BUCKET, Key="pipeline/runs/e/surveys.json", Body=json.dumps({"surveys": [{
        "survey": "pr", "failure": None,
        "plan": {"bucket": BUCKET, "items_key": "pipeline/runs/e/pr/copy-items.json",
                 "listing_key": "pipeline/runs/e/pr/listing.json"}}]}))
    event = {
        "plan": {"bucket": BUCKET, "items_key": "pipeline/runs/e/copy-items.json",
                 "results_prefix": "pipeline/runs/e/copy-results", "surveys_key": "pipeline/runs/e/surveys.json"},
        "run": {},
        "listed": 2,
        "unchanged": 1,
        "copy_results": [{"survey": "pr", "failed": "pr.bad", "error": "SourceNotFound", "message": "HTTP 404"}],
    }

    result = prune_mirror.handler(event, ctx("PruneMirror"))

    keys = {o["Key"] for o in env.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "bls/pr/pr.gone" not in keys
    assert {"bls/pr/pr.keep", "datausa/population.json", "bls/prx/other"} <= keys
    mirror = result["mirror"]
    assert (mirror["deleted_files"], mirror["copied"], mirror["failed"]) == (["pr/pr.gone"], 0, 1)
    assert (mirror["failed_files"], mirror["failed_surveys"], mirror["surveys"]) == (["pr/pr.bad"], 1, 1)


def test_the_librarys_own_loggers_write_through_the_handlers_logger():
    """One way to log: stdlib records of bls_pipeline's modules go out through the Powertools logger's handler."""
    library = logging.getLogger("bls_pipeline")
    # (pytest's log capture adds its own handlers to every logger that does not propagate)
    assert _prologue.logger.registered_handler in library.handlers and not library.propagate
    assert logging.getLogger("bls_pipeline.source_http").getEffectiveLevel() == _prologue.logger.log_level


def test_only_the_prologue_makes_a_logger_and_nothing_prints():
    package = Path(_prologue.__file__).resolve().parent.parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
                name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                if name == "print" or (name == "Logger" and path.name != "_prologue.py"):
                    offenders.append(f"{path.relative_to(package)}:{node.lineno} {name}(")
    assert offenders == []
