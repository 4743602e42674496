"""What an execution input may change for one run, and the message a bad value gets before any request is made."""

from __future__ import annotations

import pytest

from bls_pipeline.config import ConfigError, Settings, load_settings
from tests.conftest import CONTACT

DEPLOYED = Settings(bucket="mirror", contact_email=CONTACT)  # MirrorRoot bls/, Surveys pr

BAD_INPUTS = [
    ({"mirror_prefix": "bls/ce/"}, "'mirror_prefix' is no longer accepted: each survey is mirrored under the deployed "
                                   "MirrorRoot, in <MirrorRoot><survey>/; choose the surveys of one run with 'surveys'"),
    ({"surveys": 7}, "must be a string"),
    ({"surveys": "pr,,ce"}, "not a comma-separated list"),
    ({"surveys": "PR"}, "not a survey name: 'PR'"),
    ({"surveys": "../reports"}, "not a survey name"),
    ({"source_url": "ftp://download.bls.gov/pub/"}, "not an http"),
    ({"source_url": "https://download.bls.gov/pub/time.series"}, "end with '/'"),
    ({"source_url": "https://download.bls.gov/pub/time.series/ce/"}, "names the survey directory 'ce', not the "
                                                                      "time.series tree"),
    ({"force_prune": "yes"}, "true or false"),
    ({"sourceUrl": "https://download.bls.gov/pub/time.series/ce/"}, "unknown execution input field"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[str(i) for i, _ in BAD_INPUTS])
def test_a_bad_override_is_refused_with_what_is_wrong(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        DEPLOYED.with_overrides(overrides)


def test_a_run_may_mirror_other_surveys_each_under_its_own_folder_of_the_mirror_root() -> None:
    settings = DEPLOYED.with_overrides({"surveys": "ce, la,ce", "force_prune": True})
    assert (settings.survey_list(), settings.force_prune) == (["ce", "la"], True)
    ce = settings.for_survey("ce")
    assert (ce.source_url, ce.mirror_prefix, ce.survey) == ("https://download.bls.gov/pub/time.series/ce/", "bls/ce/", "ce")
    everything = DEPLOYED.with_overrides({"surveys": "*"})
    assert everything.all_surveys and everything.survey_list() == []


def test_an_old_style_source_url_names_the_settings_that_replaced_it() -> None:
    """A saved SourceUrl (or runner flag) of one survey's directory must not silently list .../pr/pr/."""
    with pytest.raises(ConfigError) as raised:
        load_settings({"MIRROR_BUCKET": "m", "CONTACT_EMAIL": CONTACT,
                       "SOURCE_TREE_URL": "https://download.bls.gov/pub/time.series/pr/"})
    assert "https://download.bls.gov/pub/time.series/" in str(raised.value) and "Surveys=pr" in str(raised.value)


def test_the_population_file_may_not_share_the_mirror_folder() -> None:
    with pytest.raises(ConfigError, match="bls/"):
        Settings(bucket="mirror", contact_email=CONTACT, population_key="bls/population.json").validate()


@pytest.mark.parametrize("mirror_prefix", ["reports/pr/", "pipeline/pr/"])
def test_the_mirror_may_not_share_a_folder_with_the_pipelines_own_files(mirror_prefix: str) -> None:
    with pytest.raises(ConfigError, match=mirror_prefix.split("/")[0] + "/"):
        Settings(bucket="mirror", contact_email=CONTACT, mirror_prefix=mirror_prefix).validate()


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("PART_SIZE_BYTES", "1048576", "outside S3's part sizes"),
    ("RANGE_STREAMS", "0", "must be a positive number"),
    ("RANGE_STREAMS", "9", "from 1 to 8"),
    ("RANGE_STREAMS", "2.5", "must be a whole number"),
])
def test_transfer_settings_outside_what_s3_and_the_copier_accept_are_refused(variable, value, message) -> None:
    environ = {"MIRROR_BUCKET": "mirror", "CONTACT_EMAIL": CONTACT, variable: value}
    with pytest.raises(ConfigError, match=message):
        load_settings(environ)


def test_a_mirror_prefix_override_fails_the_first_state_before_any_request(bls, make_engine) -> None:
    bls.put("pr.class", b"class_code\tclass_text\r\n")
    engine = make_engine(bls.url)

    result = engine.execute({"mirror_prefix": "reports/pr/"})

    assert result.status == "FAILED" and result.error == "ConfigError"
    assert "'mirror_prefix' is no longer accepted" in result.cause and "'surveys'" in result.cause
    assert bls.requests_for() == []
    assert engine.s3.list_objects_v2(Bucket=engine.bucket).get("KeyCount", 0) == 0
