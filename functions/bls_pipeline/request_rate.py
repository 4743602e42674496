"""One request rate per source host, for every function of every run at once, kept in S3.

BLS blocks robots that request "multiple times per second" (bls.gov/bls/blsterms.htm). The Map runs several copies
at once, each in its own Lambda, and each may retry or read in ranges, so no function can pace itself alone. They
share one small S3 object per host, `<rate prefix><host>.json`, holding the start time of the next free request
slot. Before every request a client reserves a slot with a conditional write (If-Match on the object's ETag, or
If-None-Match when it does not exist yet): two clients can never reserve the same slot, and a reservation that lost
the race reads the object again. It then sleeps until its slot. Slots are 1.2 / rate seconds apart: the 20 %
absorbs the jitter between a slot's start and the request's arrival at the source: r + 1 requests fit in one second
only if one of them arrives 0.2 s later than its slot, whatever the rate r. A client that wakes more than 0.02 s
after its slot (a busy machine, a paused thread) has missed it: sent late, its request would arrive close to the
next slot's, so it gives the slot up and reserves another; the rest of the margin is for the way to the source. A
free slot starts as far ahead as the last reservation took, so that a slow write does not make its own slot late. Every request takes a slot:
the listing, each copy, each range, each retry and each repeat after a Retry-After, in this run or an overlapping
one.

The same object records a block: after a 403 the run's id is written there, and every later request of that run
fails at once with SourceBlocked instead of asking again (a blocked client that keeps asking deepens the block).
The next run asks again, once.

The same object also counts each run's requests to its host (`runs`: run id -> requests), in the same conditional
write that reserves the slot, so the count costs no request and cannot be lost to a race; a slot given up and
reserved again is one request, counted once. Only the last RUNS_KEPT runs are kept. The run manifest reads its
run's count from there (changes.py).
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from .s3_objects import DENIED, ChangedMeanwhile, error_code, read_json_object, replace_json
from .source_http import Deadline, SourceBlocked, TransientSourceError

SLOT_STRETCH = 1.2
LATE_LIMIT = 0.02  # seconds a client may wake after its slot and still use it
MAX_LEAD = 0.2  # the most a free slot is put ahead for the reservation's own write
_RESERVE_ATTEMPTS = 50
RUNS_KEPT = 20  # runs whose request counts the rate object keeps (a few hundred bytes)


def slot_key(prefix: str, url: str) -> str:
    return f"{prefix}{urlsplit(url).netloc.lower()}.json"


class RateTokenError(Exception):
    """The shared request-rate object cannot be read or written: the function's permissions are wrong."""


class RequestSlots:
    """Reserves request slots for one source host at `per_second`, shared through s3://bucket/key."""

    def __init__(
        self, s3: Any, bucket: str, key: str, per_second: float, run_id: str | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
    ):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.per_second = per_second
        self.spacing = SLOT_STRETCH / per_second
        self.missed = 0
        self._lead = 0.0  # how long the last reservation took: a free slot starts that far ahead
        self.run_id = run_id
        self._clock, self._sleep = clock, sleep

    def take(self, deadline: Deadline | None = None) -> float:
        """Block until this client may start one request; returns the start of the slot it used (epoch s)."""
        missed: tuple[str, float] | None = None  # (ETag written, slot) of a slot this client woke too late for
        for _ in range(_RESERVE_ATTEMPTS):
            state, etag = self._read()
            blocked = state.get("blocked") or {}
            if self.run_id is not None and blocked.get("run") == self.run_id:
                raise SourceBlocked("not asked again: the source answered HTTP 403 to this run before (its first "
                                    "SourceBlocked says what to do)")
            now = self._clock()
            free_from = float(state.get("next_slot", 0.0))
            if missed is not None and missed[0] == etag:
                free_from = missed[1]  # nobody reserved after the missed slot: it is taken back, not skipped
            slot = max(now + self._lead, free_from)
            remaining = deadline.remaining() if deadline is not None else None
            if remaining is not None and slot - now > remaining:
                raise TransientSourceError(
                    f"the next request slot for {self.key.rsplit('/', 1)[-1][:-5]} is {slot - now:.1f} s away at "
                    f"{self.per_second:g} request(s) per second, after this step's time limit (temporary; retried "
                    "with backoff)"
                )
            update = {"next_slot": slot + self.spacing}
            if missed is None and self.run_id is not None:  # the first reservation of this request: count it
                update["runs"] = _counted(state.get("runs"), self.run_id)
            written = self._write({**state, **update}, etag)
            self._lead = min(self._clock() - now, MAX_LEAD)
            if written is None:
                self._sleep(random.uniform(0.005, 0.05))
                continue
            waited = slot - self._clock()
            if waited > 0:
                self._sleep(waited)
            if self._clock() - slot <= LATE_LIMIT:
                return slot
            self.missed += 1
            missed = (written, slot)
        raise TransientSourceError(f"could not reserve a request slot in s3://{self.bucket}/{self.key} after "
                                   f"{_RESERVE_ATTEMPTS} tries (temporary; retried with backoff)")

    def requests_of_run(self, run_id: str) -> int:
        """How many requests to this host the run reserved (0 when none, or too many runs ago to be kept)."""
        runs = self._read()[0].get("runs")
        return int(runs.get(run_id, 0)) if isinstance(runs, dict) else 0

    def record_block(self, message: str) -> None:
        """Remember that the source refused this run, so that its other requests are not made."""
        if self.run_id is None:
            return
        for _ in range(_RESERVE_ATTEMPTS):
            state, etag = self._read()
            if self._write({**state, "blocked": {"run": self.run_id, "message": message}}, etag) is not None:
                return
            self._sleep(random.uniform(0.005, 0.05))

    def _read(self) -> tuple[dict, str | None]:
        # No role may list the rate prefix: S3 answers a missing object with 403 (s3_objects).
        stored = read_json_object(self.s3, self.bucket, self.key, denied_is_missing=True)
        if stored is None:
            return {}, None
        try:
            state = stored.value()
        except ValueError:
            state = {}  # unreadable: rewritten by the next reservation
        return (state if isinstance(state, dict) else {}), stored.etag

    def _write(self, state: dict, etag: str | None) -> str | None:
        """Replace the object if it is still the one read (`etag`, None: absent); the new ETag, or None if not."""
        try:
            return replace_json(self.s3, self.bucket, self.key, state, etag)
        except ChangedMeanwhile as exc:  # the race to this slot was lost
            if etag is None and error_code(exc) == "PreconditionFailed" and self._unreadable():
                raise RateTokenError(
                    f"s3://{self.bucket}/{self.key} exists but this function may not read it: its role needs "
                    "s3:GetObject and s3:PutObject on the request-rate prefix"
                ) from exc
            return None
        except ClientError as exc:
            raise RateTokenError(f"cannot reserve a request slot in s3://{self.bucket}/{self.key}: "
                                 f"{error_code(exc)}: {exc}") from exc

    def _unreadable(self) -> bool:
        try:
            self.s3.get_object(Bucket=self.bucket, Key=self.key)
            return False
        except ClientError as exc:
            return error_code(exc) in DENIED


def _counted(runs: Any, run_id: str) -> dict[str, int]:
    """runs with one more request for run_id, the newest run last and at most RUNS_KEPT runs."""
    runs = dict(runs) if isinstance(runs, dict) else {}
    count = int(runs.pop(run_id, 0)) + 1
    kept = list(runs.items())[-(RUNS_KEPT - 1):]
    return {**dict(kept), run_id: count}
