"""The real BLS `pr` files (../shared/data/real, when present) through the whole state machine."""

from __future__ import annotations

import pytest

from tests.conftest import REAL_DATA, mirror_contents

SNAPSHOT = REAL_DATA / "bls_pr_2026-08-06"
pytestmark = pytest.mark.skipif(not SNAPSHOT.is_dir(), reason="../shared/data/real is not present")


def real_files() -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in SNAPSHOT.glob("pr.*")}
    for name in ("pr.contacts", "pr.txt"):  # the 2026 crawl skipped these two
        files[name] = (REAL_DATA / "bls_pr_2024-06-06" / name).read_bytes()
    return files


def test_the_real_pr_directory_is_mirrored_byte_identical_then_a_rerun_downloads_nothing(bls, make_engine):
    files = real_files()
    for name, body in files.items():
        bls.put(name, body)
    engine = make_engine(bls.url)

    first = engine.execute()
    assert first.succeeded, first.cause
    assert mirror_contents(engine.s3, engine.bucket) == files

    bls.reset_log()
    second = engine.execute()
    assert second.succeeded
    assert [r.path for r in bls.requests_for()] == [bls.base_path]
    assert second.output["mirror"]["unchanged"] == len(files)
