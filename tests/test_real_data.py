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


def test_reports_on_the_real_files_match_an_independent_computation():
    """Recomputed here with plain floats, rounding and a sort, independent of bls_pipeline.reports."""
    import json
    import math

    from bls_pipeline.analytics import load_reports_from_files

    data, population = SNAPSHOT / "pr.data.0.Current", REAL_DATA / "datausa_new_api" / "population.json"
    reports = load_reports_from_files(str(data), str(population))

    sums: dict[tuple[str, int], float] = {}
    q01: dict[int, float] = {}
    for line in data.read_text().splitlines()[1:]:
        series, year, period, value = (c.strip() for c in line.split("\t")[:4])
        if period in ("Q01", "Q02", "Q03", "Q04"):
            sums[series, int(year)] = sums.get((series, int(year)), 0.0) + float(value)
        if series == "PRS30006032" and period == "Q01":
            q01[int(year)] = float(value)
    best = {}
    for (series, year), total in sorted(sums.items(), key=lambda kv: (kv[0][0], -round(kv[1], 6), kv[0][1])):
        best.setdefault(series, (year, round(total, 6)))
    assert {r["series_id"]: (r["year"], r["value"]) for r in reports.best_year_by_series} == best
    assert reports.bad_row_count == 0 and reports.rows_read == 38412

    pops = {r["Year"]: r["Population"] for r in json.loads(population.read_text())["data"]}
    window = [pops[y] for y in range(2013, 2019)]
    mean = sum(window) / 6
    assert reports.population_stats["mean"] == mean
    assert math.isclose(reports.population_stats["stddev"], math.sqrt(sum((p - mean) ** 2 for p in window) / 5))
    assert [(r["year"], r["value"], r["Population"]) for r in reports.series_population] == [
        (y, q01[y], int(pops[y]) if y in pops else None) for y in sorted(q01)
    ]
