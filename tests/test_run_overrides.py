"""What an execution input may change for one run, and the message a bad value gets before any request is made."""

from __future__ import annotations

import pytest

from bls_pipeline.config import ConfigError, Settings, load_settings
from tests.conftest import CONTACT

DEPLOYED = Settings(bucket="mirror", contact_email=CONTACT)  # MirrorPrefix bls/pr/

BAD_INPUTS = [
    ({"mirror_prefix": "data/ce/"}, "must stay under 'bls/'"),
    ({"mirror_prefix": "bls/../reports/"}, "relative S3 prefix"),
    ({"mirror_prefix": "bls/ce"}, "relative S3 prefix"),
    ({"mirror_prefix": 7}, "must be a string"),
    ({"source_url": "ftp://download.bls.gov/pub/"}, "not an http"),
    ({"source_url": "https://download.bls.gov/pub/time.series/ce"}, "end with '/'"),
    ({"force_prune": "yes"}, "true or false"),
    ({"sourceUrl": "https://download.bls.gov/pub/time.series/ce/"}, "unknown execution input field"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[str(i) for i, _ in BAD_INPUTS])
def test_a_bad_override_is_refused_with_what_is_wrong(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        DEPLOYED.with_overrides(overrides)


def test_a_run_may_mirror_another_directory_within_the_mirror_folder() -> None:
    settings = DEPLOYED.with_overrides(
        {"source_url": "https://download.bls.gov/pub/time.series/ce/", "mirror_prefix": "bls/ce/", "force_prune": True}
    )
    assert (settings.mirror_prefix, settings.force_prune) == ("bls/ce/", True)
    assert settings.source_url.endswith("/ce/")


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


def test_a_prefix_outside_the_mirror_folder_fails_the_first_state_before_any_request(bls, make_engine) -> None:
    bls.put("pr.class", b"class_code\tclass_text\r\n")
    engine = make_engine(bls.url)

    result = engine.execute({"mirror_prefix": "reports/pr/"})

    assert result.status == "FAILED" and result.error == "ConfigError"
    assert "mirror_prefix" in result.cause and "'bls/'" in result.cause
    assert bls.requests_for() == []
    assert engine.s3.list_objects_v2(Bucket=engine.bucket).get("KeyCount", 0) == 0
