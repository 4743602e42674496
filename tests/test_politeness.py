"""Polite to BLS by construction: one request rate for the whole execution, and a block diagnosed, not deepened.

The loopback source here behaves like BLS: it blocks (403, from then on) a client whose requests exceed the rate
in any one-second window, and logs when each request arrived. The tests judge the rate by that log, as BLS would:
at most `rate` arrivals in any one-second window. An arrival is when the request's bytes reached the server's socket
(the kernel's stamp; the last test here checks it), so a handler thread that the engine's work in the same process
kept waiting does not move it.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from bls_pipeline.request_rate import SLOT_STRETCH, RequestSlots
from bls_pipeline.source_http import SourceBlocked
from bls_loopback.server import peak_requests_per_second, status
from bls_loopback.population import POPULATION_PATH
from tests.conftest import CONTACT, mirror_contents

FILES = {f"pr.file.{index:02d}": f"file {index}\r\n".encode() * (index + 1) for index in range(29)}
FILES["pr.data.0.Current"] = b"series_id\tyear\tperiod\tvalue\tfootnote_codes\r\nPRS30006032     \t2018\tQ01\t0.5\t\r\n"


def serve(bls) -> None:
    for name, body in FILES.items():
        bls.put(name, body)


def assert_mirror_equals_source(engine, bls) -> None:
    assert mirror_contents(engine.s3, engine.bucket) == {name: f.body for name, f in bls.files.items()}


@pytest.mark.parametrize("rate", [1, 3])
def test_thirty_files_with_retries_and_a_429_stay_within_the_rate_in_every_second(bls, make_engine, capsys, rate) -> None:
    serve(bls)
    bls.max_requests_per_second = rate  # a faster client is blocked, as BLS blocks it
    bls.add_faults("pr.file.07", status(503))  # retried by the state machine after its backoff
    bls.add_faults("pr.file.11", status(429, {"Retry-After": "1"}))  # waited out inside the step, then asked again
    bls.add_faults("pr.file.19", status(429))  # no Retry-After: the state machine's backoff
    engine = make_engine(bls.url, SourceRequestsPerSecond=str(rate), PopulationRequestsPerSecond=str(rate))
    started = time.monotonic()

    result = engine.execute()

    seconds = time.monotonic() - started
    times = [r.at for r in bls.requests]
    peak = peak_requests_per_second(times)
    arrivals = sorted((r.at, r.path.rsplit("/", 1)[-1] or "listing") for r in bls.requests)
    gaps = [f"{b[0] - a[0]:.3f} {a[1]}->{b[1]}" for a, b in zip(arrivals, arrivals[1:])]
    with capsys.disabled():
        print(f"\n{rate}/s: {len(times)} requests to the source in {seconds:.1f} s, peak {peak} in any one-second window;"
              f" gaps: {', '.join(gaps[:8])}")
    assert result.succeeded, (result.error, result.cause)
    assert not bls.blocked
    assert peak <= rate
    assert len(times) == 1 + 30 + 3 + 1  # the listing, each file, three refused answers asked again, the population
    assert_mirror_equals_source(engine, bls)


def test_a_blocked_listing_fails_in_source_blocked_with_one_request_and_the_next_run_heals(bls, make_engine) -> None:
    for name in ("pr.data.0.Current", "pr.file.00", "pr.file.01"):  # the healing run copies them at 1/s: a few will do
        bls.put(name, FILES[name])
    bls.blocked = True
    engine = make_engine(bls.url, SourceRequestsPerSecond="1")

    result = engine.execute()

    assert result.error == "SourceBlocked"
    message = result.cause
    assert f"contact: {CONTACT}" in message and "at most 1 request(s) per second" in message
    assert "What to do" in message and "SourceRequestsPerSecond" in message and "blsterms" in message
    assert len(bls.requests) == 1
    assert mirror_contents(engine.s3, engine.bucket) == {}

    bls.unblock()
    healed = engine.execute()
    assert healed.succeeded, healed.cause
    assert_mirror_equals_source(engine, bls)


def test_a_blocked_file_stops_the_runs_other_requests_and_the_next_run_heals(bls, make_engine) -> None:
    serve(bls)
    bls.put("pr.file.big", b"the largest file, copied first\r\n" * 100)
    bls.add_faults("pr.file.big", status(403))
    # The population API on another host name (the same loopback server): a block of the source is not its block.
    population = bls.root.replace("127.0.0.1", "localhost") + POPULATION_PATH
    engine = make_engine(bls.url, CopyConcurrency="4", PopulationUrl=population)

    result = engine.execute()

    assert result.error == "SourceBlocked"
    assert "file(s) could not be copied after retries: pr.file.big: SourceBlocked: the source refused" in result.cause
    assert "What to do" in result.cause and "not asked again" in result.cause
    refused = [r for r in bls.requests if r.path.endswith("/pr.file.big")]
    assert len(refused) == 1, "a 403 is never asked again"
    after = [r for r in bls.requests if r.at > refused[0].at and "/pr." in r.path]
    # Copies already past their slot, or reserving one while the 403 was on its way back, may still arrive (at most
    # about two per Map worker); the other files of the run are never asked for.
    assert len(after) <= 2 * 4, f"{len(after)} requests reached the source after it refused this run"
    asked = {r.path for r in bls.requests if "/pr." in r.path}
    assert len(asked) <= 1 + 3 + 2 * 4 < len(FILES) + 1, f"{len(asked)} of {len(FILES) + 1} files were asked for"
    assert "not asked again" in result.cause

    healed = engine.execute()
    assert healed.succeeded, healed.cause
    assert_mirror_equals_source(engine, bls)


# -- the shared slots themselves --------------------------------------------------------------------------------------

def test_concurrent_clients_get_slots_spaced_by_the_rate(moto_s3) -> None:
    rate, clients, each = 40.0, 6, 5
    starts: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        slots = RequestSlots(moto_s3, "mirror-bucket", "pipeline/rate/example.org.json", rate)
        for _ in range(each):
            slot = slots.take()  # the reserved slot: when the request starts depends on the scheduler, not on it
            with lock:
                starts.append(slot)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    starts.sort()
    assert len(starts) == clients * each
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= SLOT_STRETCH / rate - 1e-6, min(gaps)  # slot times are floats stored as JSON


def test_a_recorded_block_stops_that_run_only(moto_s3) -> None:
    key = "pipeline/rate/example.org.json"
    first = RequestSlots(moto_s3, "mirror-bucket", key, 100, run_id="run-1")
    first.take()
    first.record_block("the source refused https://example.org/x with HTTP 403")
    with pytest.raises(SourceBlocked, match="not asked again"):
        RequestSlots(moto_s3, "mirror-bucket", key, 100, run_id="run-1").take()
    RequestSlots(moto_s3, "mirror-bucket", key, 100, run_id="run-2").take()


class _LateClock:
    """A clock whose sleeps overshoot by `late` seconds, as a thread on a busy machine wakes late."""

    def __init__(self, late: float) -> None:
        self.now, self.late = 1000.0, late

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.late


def test_a_client_that_wakes_too_late_for_its_slot_does_not_use_it(moto_s3) -> None:
    key = "pipeline/rate/example.org.json"
    on_time = RequestSlots(moto_s3, "mirror-bucket", key, 1)
    first = on_time.take()
    clock = _LateClock(late=0.4)  # woken 0.4 s after a slot, a request would arrive 0.8 s before the next one's
    late = RequestSlots(moto_s3, "mirror-bucket", key, 1, clock=clock, sleep=clock.sleep)
    clock.now = first + 0.1

    started = late.take()

    assert late.missed >= 1
    assert started == clock.now  # the slot it used starts when it sends, not 0.4 s before
    assert started - first >= SLOT_STRETCH  # and the request before it is a full spacing away


def test_a_missed_slot_nobody_reserved_after_is_taken_back_not_skipped(moto_s3) -> None:
    key = "pipeline/rate/example.org.json"
    clock = _LateClock(late=0.0)
    slots = RequestSlots(moto_s3, "mirror-bucket", key, 1, clock=clock, sleep=clock.sleep)
    slots.take()
    clock.late = 0.5
    before = clock.now

    slots.take()  # its slot is 1.2 s away; it wakes 0.5 s late, then takes the slot back from the time it woke

    assert slots.missed == 1
    assert clock.now - before < 2 * SLOT_STRETCH  # not a whole spacing more for the slot nobody else wanted


def test_concurrent_conditional_writes_of_one_object_let_exactly_one_win(moto_s3, monkeypatch) -> None:
    """S3 decides conditional writes atomically; moto checks and writes in two steps, so the engine serializes them
    (local_runner/mocked_aws.py). A pause between moto's check and its write makes the race certain here."""
    from moto.s3.responses import S3Response

    etag = moto_s3.put_object(Bucket="mirror-bucket", Key="pipeline/rate/x.json", Body=b"{}")["ETag"]
    checksum = S3Response._get_checksum

    def slow_checksum(self, *args, **kwargs):
        time.sleep(0.05)  # moto computes this after its If-Match check, before it stores the object
        return checksum(self, *args, **kwargs)

    monkeypatch.setattr(S3Response, "_get_checksum", slow_checksum)
    winners: list[int] = []

    def writer(index: int) -> None:
        try:
            moto_s3.put_object(Bucket="mirror-bucket", Key="pipeline/rate/x.json", Body=str(index).encode(), IfMatch=etag)
            winners.append(index)
        except moto_s3.exceptions.ClientError:
            pass

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1, winners


# -- the loopback source's log of arrivals ----------------------------------------------------------------------------

@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's receive timestamps (SO_TIMESTAMPNS) are Linux's")
def test_the_source_logs_when_a_request_arrived_not_when_its_handler_got_to_read_it(bls) -> None:
    bls.put("pr.class", b"class\r\n")
    with socket.create_connection(("127.0.0.1", int(bls.root.rsplit(":", 1)[1])), timeout=10) as client:
        time.sleep(0.2)  # the server has accepted the connection; its handler waits for the request
        interval = sys.getswitchinterval()
        sys.setswitchinterval(5.0)  # this thread keeps the interpreter lock: the handler cannot run while it spins
        try:
            sent = time.monotonic()
            client.sendall(b"GET /pub/time.series/pr/pr.class HTTP/1.1\r\nHost: x\r\nUser-Agent: t (a@b.org)\r\n\r\n")
            while time.monotonic() - sent < 0.5:
                pass
        finally:
            sys.setswitchinterval(interval)
        assert client.recv(100).startswith(b"HTTP/1.1 200")
    [request] = bls.requests
    assert request.at - sent < 0.1, f"logged {request.at - sent:.3f} s after it was sent (its handler ran 0.5 s late)"
