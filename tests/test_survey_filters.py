"""Include/exclude globs per survey (SurveyFilters), through the real state machine: applied to the listing before
anything is requested, shown in the manifest, and a filtered-out file is neither copied nor deleted."""

from __future__ import annotations

import json

import pytest

from bls_pipeline.config import ConfigError, SurveyFilter, parse_survey_filters
from tests.conftest import mirror_contents

FILES = {
    "pr.class": b"class_code\tclass_text\r\n",
    "pr.data.0.Current": b"series_id\tyear\tperiod\tvalue\r\nPRS30006032\t2018\tQ01\t0.5\r\n",
    "pr.data.1.AllData": b"series_id\tyear\tperiod\tvalue\r\n" * 50,
    "pr.txt": b"about pr\r\n",
}


def test_excluded_files_are_never_requested_and_the_manifest_shows_the_filters(bls, make_engine) -> None:
    for name, body in FILES.items():
        bls.put(name, body)
    engine = make_engine(bls.url, SurveyFilters="pr:exclude=*.AllData,*.txt;ce:include=ce.data.*")

    result = engine.execute()

    assert result.succeeded, result.cause
    assert sorted(mirror_contents(engine.s3, engine.bucket)) == ["pr.class", "pr.data.0.Current"]
    requested = sorted(r.path.rsplit("/", 1)[1] for r in bls.file_requests())
    assert requested == ["pr.class", "pr.data.0.Current"]
    manifest_key = result.output["changes"]["manifest"].split("/", 3)[3]
    manifest = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=manifest_key)["Body"].read())
    assert manifest["surveys"]["pr"]["filters"] == {"include": [], "exclude": ["*.AllData", "*.txt"]}


def test_a_file_mirrored_before_its_filter_is_kept_and_a_run_override_changes_the_filter(bls, make_engine) -> None:
    for name, body in FILES.items():
        bls.put(name, body)
    engine = make_engine(bls.url)
    assert engine.execute().succeeded
    assert sorted(mirror_contents(engine.s3, engine.bucket)) == sorted(FILES)
    bls.reset_log()

    result = engine.execute({"survey_filters": "pr:include=pr.data.*,pr.class;pr:exclude=*.AllData"})

    assert result.succeeded, result.cause
    assert result.output["mirror"]["deleted"] == 0
    assert mirror_contents(engine.s3, engine.bucket) == FILES  # filtered out: not copied, not deleted
    assert [r.path for r in bls.requests_for()] == [bls.base_path]


def test_the_filter_syntax() -> None:
    filters = parse_survey_filters("ce:exclude=*.AllData; la:include=la.data.*,la.series ;la:exclude=*.AllData")
    assert filters == {"ce": SurveyFilter((), ("*.AllData",)),
                       "la": SurveyFilter(("la.data.*", "la.series"), ("*.AllData",))}
    assert filters["la"].selects("la.data.1.Current") and not filters["la"].selects("la.data.0.AllData")
    assert not filters["la"].selects("la.footnote")
    for bad in ("pr", "pr:skip=*.txt", "pr:exclude=", "PR SPACE:exclude=x"):
        with pytest.raises(ConfigError):
            parse_survey_filters(bad)
