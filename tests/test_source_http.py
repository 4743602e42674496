"""The HTTP client against the loopback server: identification, and errors that say whether to retry."""

from __future__ import annotations

import pytest

from bls_pipeline.source_http import (
    SourceClient,
    SourceHttpError,
    SourceNotFound,
    SourceRefused,
    TransientSourceError,
)
from tests.bls_server import status


def test_every_request_carries_the_contact_email(bls):
    bls.put("pr.class", b"x")
    SourceClient("ops@example.com").get_text(bls.url)
    assert "ops@example.com" in bls.requests_for()[0].user_agent


def test_403_explains_that_bls_wants_contact_information(bls):
    bls.add_faults("", status(403))
    with pytest.raises(SourceRefused, match="BLS refused the request.*contact e-mail") as raised:
        SourceClient("ops@example.com").get_text(bls.url)
    assert "ops@example.com" in str(raised.value)


def test_404_is_final(bls):
    with pytest.raises(SourceNotFound, match="does not exist"):
        SourceClient("ops@example.com").get_text(bls.url + "pr.missing")


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_server_errors_and_throttling_are_transient_and_keep_retry_after(bls, code):
    bls.add_faults("", status(code, headers={"Retry-After": "7"}))
    with pytest.raises(TransientSourceError, match=f"HTTP {code}") as raised:
        SourceClient("ops@example.com").get_text(bls.url)
    assert raised.value.retry_after == 7.0


def test_other_client_errors_are_final(bls):
    bls.add_faults("", status(400))
    with pytest.raises(SourceHttpError, match="HTTP 400"):
        SourceClient("ops@example.com").get_text(bls.url)


def test_an_unreachable_host_is_transient_and_named():
    with pytest.raises(TransientSourceError, match="cannot reach http://127.0.0.1:9/"):
        SourceClient("ops@example.com", connect_timeout=2).get_text("http://127.0.0.1:9/pub/")
