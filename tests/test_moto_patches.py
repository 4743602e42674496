"""Every change the local engine makes to moto is a record of local_runner/moto_patches.py: no module of local_runner/
patches moto elsewhere, the engine applies exactly the table and undoes it when it stops, a guard stops a moto that
changed, and LOCAL_ENGINE_SPEED_PATCHES=off runs the pipeline on the correctness records alone.

The scan covers local_runner/ only: tests patch moto too (monkeypatch, to inject a fault or count calls), and those are
test doubles, not the engine's behaviour.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local_runner import moto_patches
from local_runner.engine import LocalEngine
from local_runner.moto_patches import CORRECTNESS, PATCHES, SPEED, SWITCH, MotoChanged, MotoPatch
from tests.conftest import ROOT, engine_parameters
from tests.test_state_machine import FILES, serve

LOCAL_RUNNER = ROOT / "local_runner"
MOTO_PACKAGES = ("moto", "botocore", "boto3")
# The patches of local_runner/ that are not of moto (moto_patches' docstring says why they stay where they are):
# (file, what the patch call names first).
NOT_MOTO = {
    ("mocked_aws.py", "os.environ"),  # the process's AWS environment
    ("cloudformation.py", "os.environ"),  # the SAM transform's region
    ("function_clients.py", "aws"),  # bls_pipeline.aws, the project's own client accessors
}
PATCH_CALLS = {"patch", "patch.object", "patch.dict", "patch.multiple", "setattr", "delattr"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _root(node: ast.AST) -> str:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def _imported(tree: ast.AST) -> dict[str, str]:
    """Every name an import binds anywhere in the file -> the module (or module.name) it comes from."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.partition(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _is_moto(module: str) -> bool:
    return module.partition(".")[0] in MOTO_PACKAGES


def patches_in(path: Path) -> tuple[list[str], set[tuple[str, str]]]:
    """What a module of local_runner/ patches: (the moto patches, as "line: source"; the other patches, as NOT_MOTO's
    (file, target) pairs). A patch call whose target is not one of NOT_MOTO counts as moto's: unknown is not allowed."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported = _imported(tree)
    moto: list[str] = []
    other: set[tuple[str, str]] = set()

    def found(node: ast.AST) -> None:
        moto.append(f"{path.name}:{node.lineno}: {ast.get_source_segment(source, node)}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.removeprefix("unittest.").removeprefix("mock.").removeprefix("monkeypatch.") not in PATCH_CALLS:
                continue
            target = _dotted(node.args[0]) if node.args else ""
            if (path.name, target) in NOT_MOTO and not _is_moto(imported.get(_root(node.args[0]), "")):
                other.add((path.name, target))
            else:
                found(node)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if not isinstance(target, (ast.Attribute, ast.Subscript)):
                    continue
                root = _root(target)
                if _is_moto(imported.get(root, "")) or _dotted(getattr(target, "value", target)) == "sys.modules":
                    found(node)
    return sorted(moto, key=lambda line: int(line.split(":")[1])), other


def test_no_module_of_local_runner_but_moto_patches_patches_moto_or_checks_its_signatures():
    moto: list[str] = []
    other: set[tuple[str, str]] = set()
    for path in sorted(LOCAL_RUNNER.glob("*.py")):
        if path.name == "moto_patches.py":
            continue
        found, others = patches_in(path)
        moto += found
        other |= others
        source = path.read_text(encoding="utf-8")
        if "inspect.signature" in source or "getattr_static" in source:
            moto.append(f"{path.name}: a signature guard of its own (moto_patches.check_signature is the one)")
    assert moto == [], "patch moto in local_runner/moto_patches.py, as a record of PATCHES"
    assert other == NOT_MOTO, "NOT_MOTO names every patch of local_runner/ that is not moto's, and only those"


def test_the_scan_sees_the_ways_a_module_patches_moto(tmp_path):
    module = tmp_path / "sample.py"
    module.write_text(
        "import sys\n"
        "from unittest import mock\n"
        "from moto.s3.responses import S3Response\n"
        "def f(module, original):\n"
        "    with mock.patch.object(S3Response, 'put_object', original):\n"
        "        pass\n"
        "    mock.patch.object(module, 'boto_client_for', original)\n"
        "    setattr(S3Response, 'get_object', original)\n"
        "    S3Response.head_object = original\n"
        "    sys.modules['moto.batch'] = module\n"
        "    with mock.patch.dict(os.environ, {}):\n"  # not in NOT_MOTO for this file: counts
        "        pass\n",
        encoding="utf-8",
    )
    moto, other = patches_in(module)
    assert [line.split(":")[1] for line in moto] == ["5", "7", "8", "9", "10", "11"] and other == set()


def test_each_record_says_what_it_patches_why_and_for_what():
    targets = [record.target for record in PATCHES]
    assert len(set(targets)) == len(targets)
    for record in PATCHES:
        assert record.need in (CORRECTNESS, SPEED), record.target
        assert record.why and "\n" not in record.why and record.why == record.why.strip(), record.target
        assert record.module.startswith("moto."), record.target
        guarded = record.signature is not None or record.create or record.guard is not None
        assert guarded, f"{record.target} has no guard"
    assert {record.need for record in PATCHES} == {CORRECTNESS, SPEED}


def test_the_engine_applies_every_chosen_record_and_undoes_each_but_the_module_one_when_it_stops():
    attributes = [record for record in PATCHES if not record.is_module]
    applies = {record.target for record in moto_patches.chosen() if not record.is_module}  # all, or with the switch off
    before = {record.target: moto_patches.current(record) for record in attributes}
    with LocalEngine(engine_parameters("http://127.0.0.1:9/pub/time.series/pr/")):
        during = {record.target: moto_patches.current(record) for record in attributes}
        active = moto_patches.active()
    after = {record.target: moto_patches.current(record) for record in attributes}

    assert {t for t in before if during[t] is not before[t]} == applies, "each chosen record replaces its target"
    assert {t for t in active if t in before} == applies, "active() names what is applied"
    assert after == before, "the engine leaves moto as it found it"
    assert moto_patches.active() == tuple(t for t in active if t not in before)


def test_a_moto_that_changed_stops_the_start_before_anything_is_patched(monkeypatch):
    from moto.athena.responses import AthenaResponse
    from moto.s3.responses import S3Response

    changed = MotoPatch("moto.s3.responses:S3Response.get_object", CORRECTNESS, "a test's", lambda original, _: original,
                        signature=("self", "bucket"))
    monkeypatch.setattr(moto_patches, "PATCHES", (*PATCHES, changed))
    put_object = S3Response.put_object
    with pytest.raises(MotoChanged, match=r"moto's moto\.s3\.responses:S3Response\.get_object takes \['self'\], "
                                          r"not \['self', 'bucket'\].*update its record in local_runner/moto_patches.py"):
        LocalEngine(engine_parameters("http://127.0.0.1:9/pub/time.series/pr/")).__enter__()
    assert S3Response.put_object is put_object and not any(":" in t for t in moto_patches.active())

    monkeypatch.setattr(moto_patches, "PATCHES", PATCHES)
    monkeypatch.setattr(AthenaResponse, "update_named_query", lambda response: "{}", raising=False)  # a moto that has it
    with pytest.raises(MotoChanged, match=r"AthenaResponse\.update_named_query exists now: drop"):
        with moto_patches.applied(targets=["moto.athena.responses:AthenaResponse.update_named_query"]):
            pass


def test_the_switch_is_on_or_off(monkeypatch):
    monkeypatch.delenv(SWITCH, raising=False)
    assert moto_patches.speed_patches_on() and moto_patches.chosen() == PATCHES
    monkeypatch.setenv(SWITCH, "off")
    assert [r.need for r in moto_patches.chosen()] == [CORRECTNESS] * len([r for r in PATCHES if r.need == CORRECTNESS])
    monkeypatch.setenv(SWITCH, "slow")
    with pytest.raises(ValueError, match="LOCAL_ENGINE_SPEED_PATCHES='slow': expected on or off"):
        moto_patches.chosen()


RUN_WITHOUT_SPEED_PATCHES = """
import json, sys
from local_runner import moto_patches
from local_runner.engine import LocalEngine
from tests.conftest import engine_parameters

attributes = [r for r in moto_patches.PATCHES if not r.is_module]
before = {r.target: moto_patches.current(r) for r in attributes}
with LocalEngine(engine_parameters(sys.argv[1]), extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as engine:
    result = engine.execute()
    replaced = sorted(r.target for r in attributes if moto_patches.current(r) is not before[r.target])
    active = moto_patches.active()
batch = sys.modules.get("moto.batch")
print(json.dumps({
    "status": result.status, "cause": result.cause,
    "copies": len([i for i in result.invocations if i.function == "CopyFileFunction"]),
    "replaced": replaced, "active": sorted(active),
    "batch_deferred": batch is not None and "__getattr__" in vars(batch),
}))
"""


@pytest.mark.engine  # a child process runs the pipeline (RUN_WITHOUT_SPEED_PATCHES)
def test_the_pipeline_runs_on_the_correctness_records_alone_with_the_switch_off(bls, tmp_path):
    serve(bls)
    env = {**os.environ, SWITCH: "off", "BLS_MIRROR_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", RUN_WITHOUT_SPEED_PATCHES, bls.url], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = json.loads(done.stdout.strip().splitlines()[-1])

    correctness = sorted(r.target for r in PATCHES if r.need == CORRECTNESS)
    assert ran["status"] == "SUCCEEDED", ran["cause"]
    assert ran["copies"] == len(FILES)
    assert ran["replaced"] == correctness and ran["active"] == correctness, "no speed record applied"
    assert not ran["batch_deferred"], "moto.batch imported as moto imports it"
    assert not list(tmp_path.glob("asl-program-*.pickle")), "moto parsed the definition itself"
