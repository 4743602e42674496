"""The HTTP client against the loopback server: identification, and errors that say whether to retry."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest

from bls_pipeline.source_http import (
    Deadline,
    SourceClient,
    SourceHttpError,
    SourceNotFound,
    SourceBlocked,
    TransientSourceError,
)
from bls_loopback.server import drip_then_stall, status


def test_every_request_carries_the_contact_email(bls):
    bls.put("pr.class", b"x")
    SourceClient("ops@example.com", allow_private=True).get_text(bls.url)
    assert "ops@example.com" in bls.requests_for()[0].user_agent


def test_403_explains_that_bls_wants_contact_information(bls):
    bls.add_faults("", status(403))
    with pytest.raises(SourceBlocked, match="HTTP 403: it blocks this client.*contact information") as raised:
        SourceClient("ops@example.com", allow_private=True).get_text(bls.url)
    assert "ops@example.com" in str(raised.value)


def test_404_is_final(bls):
    with pytest.raises(SourceNotFound, match="does not exist"):
        SourceClient("ops@example.com", allow_private=True).get_text(bls.url + "pr.missing")


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_server_errors_and_throttling_are_transient_and_keep_retry_after(bls, code):
    bls.add_faults("", status(code, headers={"Retry-After": "7"}))
    with pytest.raises(TransientSourceError, match=f"HTTP {code}") as raised:
        SourceClient("ops@example.com", allow_private=True).get_text(bls.url)
    assert raised.value.retry_after == 7.0


def test_other_client_errors_are_final(bls):
    bls.add_faults("", status(400))
    with pytest.raises(SourceHttpError, match="HTTP 400"):
        SourceClient("ops@example.com", allow_private=True).get_text(bls.url)


def test_an_unreachable_host_is_transient_and_named():
    with pytest.raises(TransientSourceError, match="cannot reach http://127.0.0.1:9/"):
        SourceClient("ops@example.com", allow_private=True, connect_timeout=2).get_text("http://127.0.0.1:9/pub/")


def test_a_retry_after_that_fits_is_waited_for_once_within_the_call(bls):
    bls.put("pr.class", b"x")
    bls.add_faults("pr.class", status(429, headers={"Retry-After": "0"}))
    assert SourceClient("ops@example.com", allow_private=True, retry_after_limit=5).get_bytes(bls.url + "pr.class") == b"x"
    assert [r.status for r in bls.requests_for("pr.class")] == [429, 200]


def test_a_refusal_after_waiting_or_a_retry_after_too_long_is_left_to_the_state_machine(bls):
    bls.put("pr.class", b"x")
    bls.add_faults("pr.class", *[status(503, headers={"Retry-After": "0"})] * 2, status(429, headers={"Retry-After": "90"}))
    client = SourceClient("ops@example.com", allow_private=True, retry_after_limit=60)
    with pytest.raises(TransientSourceError, match=r"HTTP 503 .* \(again, after waiting 0 s as it asked\)"):
        client.get_bytes(bls.url + "pr.class")
    with pytest.raises(TransientSourceError, match="throttling this client.*retry after 90 s") as raised:
        client.get_bytes(bls.url + "pr.class")
    assert raised.value.retry_after == 90
    assert [r.status for r in bls.requests_for("pr.class")] == [503, 503, 429]


def test_retry_after_may_be_an_http_date(bls):
    when = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120), usegmt=True)
    bls.add_faults("", status(503, headers={"Retry-After": when}))
    with pytest.raises(TransientSourceError) as raised:
        SourceClient("ops@example.com", allow_private=True).get_text(bls.url)
    assert 100 < raised.value.retry_after <= 120


def test_a_body_that_stalls_is_given_up_at_the_deadline_not_at_the_read_timeout(bls):
    bls.put("pr.class", b"x" * 10_000)
    bls.add_faults("pr.class", drip_then_stall(0.2, 5))
    client = SourceClient("ops@example.com", allow_private=True, read_timeout=60, deadline=Deadline.before_timeout(1.0))
    with pytest.raises(TransientSourceError, match=r"source too slow: .*pr.class delivered \d+ of 10000 bytes"):
        client.get_bytes(bls.url + "pr.class")
