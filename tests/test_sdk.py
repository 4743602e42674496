"""The SDK that ships is the SDK that is tested.

`sam build` packages functions/requirements.txt with the code, so the functions run on the pinned boto3/botocore,
not on whatever the Lambda runtime bundles. These tests fail when the pins, the installed SDK the tests run on, or
another requirements file diverge, or when the pinned botocore lacks a request feature the code uses.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import botocore.session
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "functions" / "requirements.txt"
SDK = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil")
# The oldest botocore with each S3 request feature the code relies on (botocore's changelog).
FEATURES = {
    ("PutObject", "IfMatch"): "1.35.69",
    ("CopyObject", "IfMatch"): "1.40.61",
    ("CopyObject", "IfNoneMatch"): "1.40.61",
    ("CompleteMultipartUpload", "IfMatch"): "1.35.69",
}


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+?)(?:\[[^\]]*\])?\s*==\s*([^\s#;]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def as_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_shipped_requirements_pin_the_whole_sdk_exactly() -> None:
    shipped = pins(SHIPPED)
    assert set(SDK) <= set(shipped), f"{SHIPPED.name} must pin {', '.join(SDK)} with =="
    assert as_tuple(shipped["botocore"]) >= max(as_tuple(v) for v in FEATURES.values())


def test_the_tests_run_on_the_sdk_that_ships() -> None:
    shipped = pins(SHIPPED)
    assert {name: version(name) for name in SDK} == {name: shipped[name] for name in SDK}


def included(path: Path) -> list[Path]:
    """path and every requirements file it includes with -r, recursively."""
    found = [path.resolve()]
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            found += included(path.parent / line[3:].split("#", 1)[0].strip())
    return found


@pytest.mark.parametrize("other", ["requirements-run.txt", "requirements-dev.txt", "bench/requirements.txt"])
def test_no_other_requirements_file_pins_the_sdk_differently(other: str) -> None:
    files = included(ROOT / other)
    assert SHIPPED.resolve() in files, f"{other} must install {SHIPPED.name} (with -r), directly or through another file"
    for path in files[:1] + [f for f in files[1:] if f != SHIPPED.resolve()]:
        assert not set(SDK) & set(pins(path)), f"{path.name} pins the SDK itself; pin it only in {SHIPPED.name}"


def test_the_pinned_botocore_knows_every_request_feature_the_code_uses() -> None:
    model = botocore.session.get_session().get_service_model("s3")
    for (operation, member), since in FEATURES.items():
        assert member in model.operation_model(operation).input_shape.members, f"{operation} {member} (botocore {since})"
    assert "ETag" in model.shape_for("ObjectIdentifier").members, "conditional DeleteObjects (2025-09)"
