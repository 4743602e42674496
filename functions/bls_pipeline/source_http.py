"""HTTP access to the source: one identifying User-Agent, bodies checked against their length and read within the
step's time budget, and errors that say whether retrying can help."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import ipaddress
import logging
import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urljoin, urlsplit

import urllib3

from . import __version__
from .config import MAX_RANGE_STREAMS

logger = logging.getLogger(__name__)

# Statuses that a later attempt can cure; everything else (404, 410, 400 ...) is final.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_PIECE = 256 * 1024
_MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class SourceError(Exception):
    """The source could not deliver what was asked for."""


class SourceBlocked(SourceError):
    """HTTP 403: the source blocks this client (BLS blocks robots without contact information or that request too
    fast). Never retried: asking again deepens a block."""


class SourceNotFound(SourceError):
    """HTTP 404/410: the file is gone; retrying will not bring it back."""


class SourceHttpError(SourceError):
    """Any other final HTTP status."""


class TransientSourceError(SourceError):
    """A failure a later attempt may not meet: 5xx, 429, timeouts, resets, short or too slow bodies."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Deadline:
    """The moment by which a step must have stopped reading, so that it can still fail cleanly before it is killed."""

    def __init__(self, at: float | None = None):
        self.at = at  # a time.monotonic() value; None: no limit

    @classmethod
    def before_timeout(cls, remaining_seconds: float) -> "Deadline":
        """Keep a reserve of a quarter of the remaining time, at most 10 s, for giving up cleanly."""
        return cls(time.monotonic() + remaining_seconds - min(10.0, remaining_seconds / 4))

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


def user_agent(contact_email: str) -> str:
    return f"bls-s3-mirror/{__version__} (data pipeline; contact: {contact_email})"


@dataclass(frozen=True)
class ContentRange:
    """What a 206 answer says it holds: bytes first..last (inclusive) of a body of `total` bytes (None: unknown)."""

    first: int
    last: int
    total: int | None


class SourceBody:
    """File-like reader over one response body: it hashes what passes, fails on a body shorter or longer than its
    Content-Length, and fails when the deadline passes before the body is complete."""

    def __init__(self, response: urllib3.BaseHTTPResponse, url: str, deadline: Deadline):
        self._response = response
        self.url = url
        self.deadline = deadline
        self.status = response.status
        self.expected = _content_length(response)
        # A 206 whose Content-Range cannot be read leaves this None as well: such a body cannot be placed in a file.
        self.content_range = _content_range(response) if response.status == 206 else None
        self.received = 0
        self.complete = False
        # Set by a caller that knows how long the body must be (the listing's size): more is refused as it arrives,
        # so no buffer or upload ever grows past it.
        self.max_bytes: int | None = None
        self._sha256 = hashlib.sha256()
        self._started = time.monotonic()

    @property
    def content_type(self) -> str:
        return self._response.headers.get("Content-Type", "application/octet-stream")

    def read(self, size: int = -1) -> bytes:
        wanted = None if size is None or size < 0 else size
        parts: list[bytes] = []
        got = 0
        while wanted is None or got < wanted:
            piece = self._read_piece(_PIECE if wanted is None else min(_PIECE, wanted - got))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    @property
    def validator(self) -> str | None:
        """The version of the file this answer comes from, as far as HTTP tells it: Last-Modified, else the ETag
        (servers behind a load balancer may each give the same file another ETag, but the same modification time)."""
        return self._response.headers.get("Last-Modified") or self._response.headers.get("ETag")

    def read_all(self) -> bytes:
        return self.read()

    def read_into(self, buffer: bytearray) -> int:
        """Fill `buffer` from its start with the whole body, in place (no copy held besides it); returns the length."""
        view = memoryview(buffer)
        filled = 0
        while piece := self._read_piece(min(_PIECE, max(1, len(buffer) - filled))):
            if filled + len(piece) > len(buffer):
                raise TransientSourceError(f"{self.url} sent more than the {len(buffer)} bytes asked for")
            view[filled:filled + len(piece)] = piece
            filled += len(piece)
        return filled

    def sha256(self) -> "hashlib._Hash":
        return self._sha256

    def _read_piece(self, size: int) -> bytes:
        if self.complete:
            return b""
        if self.deadline.expired():
            raise self._too_slow()
        try:
            chunk = self._response.read1(size)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self.deadline.expired():
                raise self._too_slow() from exc
            raise TransientSourceError(
                f"download of {self.url} broke after {self.received} of {self._expected_text()} bytes: "
                f"{_broken_because(exc)}; nothing was written (temporary; retried with backoff)"
            ) from exc
        self.received += len(chunk)
        self._sha256.update(chunk)
        if self.expected is not None and self.received > self.expected:
            raise TransientSourceError(f"{self.url} sent more than its Content-Length of {self.expected} bytes")
        if self.max_bytes is not None and self.received > self.max_bytes:
            raise TransientSourceError(
                f"{self.url} sent more than the {self.max_bytes} bytes the listing states; nothing was written "
                "(temporary; retried with backoff)"
            )
        if not chunk:
            if self.deadline.expired():
                raise self._too_slow()
            if self.expected is not None and self.received < self.expected:
                raise TransientSourceError(
                    f"download of {self.url} ended after {self.received} of {self.expected} bytes (Content-Length); "
                    "nothing was written (temporary; retried with backoff)"
                )
            self.complete = True
        return chunk

    def _too_slow(self) -> TransientSourceError:
        elapsed = time.monotonic() - self._started
        return TransientSourceError(
            f"source too slow: {self.url} delivered {self.received} of {self._expected_text()} bytes in {elapsed:.1f} s "
            "and the step had to stop before its time limit; nothing was written (temporary; retried with backoff). "
            "If it persists, check the network path to the source or raise the function's Timeout."
        )

    def _expected_text(self) -> str:
        return "unknown" if self.expected is None else str(self.expected)


class SourceClient:
    def __init__(
        self,
        contact_email: str,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        deadline: Deadline | None = None,
        retry_after_limit: float = 0.0,
        slots: Any = None,
        allow_private: bool = False,
    ):
        """retry_after_limit: the longest Retry-After this client honours by waiting and asking once more; a longer
        one (or a second refusal) is raised as TransientSourceError for the state machine's Retry.
        slots: the shared request rate (request_rate.RequestSlots): every request waits for its slot first.
        allow_private: also ask loopback, link-local and private addresses (local testing only; see
        check_public_address)."""
        self.user_agent = user_agent(contact_email)
        self.slots = slots
        self.allow_private = allow_private
        self._checked_hosts: set[str] = set()
        self.deadline = deadline or Deadline()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry_after_limit = retry_after_limit
        self._http = urllib3.PoolManager(
            headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
            # Retries belong to the state machine, where an operator sees them; redirects are followed by _open, and
            # only within the same scheme and host.
            retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=0),
            maxsize=MAX_RANGE_STREAMS,  # connections kept per host: a large file is read in several ranges at once
        )

    def get_text(self, url: str) -> str:
        return self.get_bytes(url).decode("utf-8", errors="replace")

    def get_bytes(self, url: str) -> bytes:
        with self.stream(url) as body:
            return body.read_all()

    @contextmanager
    def stream(self, url: str, byte_range: tuple[int, int] | None = None) -> Iterator[SourceBody]:
        """Open a GET whose body the caller reads; raises a SourceError for any non-2xx status.

        byte_range: (first, last) byte, inclusive, to ask for; a server that does not serve ranges answers 200 with
        the whole body, which the caller tells by body.status.
        A watchdog shuts the socket down when the deadline passes, so that no read blocks beyond it.
        """
        response = self._open(url, {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else None)
        _refuse_unasked_forms(url, response, byte_range is not None)
        body = SourceBody(response, url, self.deadline)
        watchdog = None
        remaining = self.deadline.remaining()
        if remaining is not None:
            watchdog = threading.Timer(max(0.0, remaining), _shutdown, (response,))
            watchdog.daemon = True
            watchdog.start()
        try:
            yield body
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if not body.complete:
                response.close()  # unread bytes must not stay on a pooled connection
            response.release_conn()

    def _open(self, url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        waited: float | None = None
        target, redirects = url, 0
        while True:
            response = self._request(target, headers)
            if response.status in _REDIRECTS and "Location" in response.headers:
                _discard(response)
                target = _same_origin_redirect(url, target, response.headers["Location"], redirects)
                redirects += 1
                continue
            try:
                _raise_for_status(url, response, self.user_agent, self.slots)
                return response
            except TransientSourceError as exc:
                _discard(response)
                wait = exc.retry_after
                if waited is not None or wait is None or not self._can_wait(wait):
                    if waited is not None:
                        raise TransientSourceError(f"{exc} (again, after waiting {waited:g} s as it asked)", wait) from None
                    raise
                logger.warning("waiting %.1f s before asking %s again, as its Retry-After asked", wait, url)
                time.sleep(wait)
                waited = wait
            except SourceBlocked as exc:
                _discard(response)
                if self.slots is not None:
                    self.slots.record_block(str(exc))
                raise
            except SourceError:
                _discard(response)
                raise

    def _can_wait(self, seconds: float) -> bool:
        remaining = self.deadline.remaining()
        return seconds <= self.retry_after_limit and (remaining is None or seconds <= remaining / 2)

    def _request(self, url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        self._check_address(url)
        connect, read = self.connect_timeout, self.read_timeout
        remaining = self.deadline.remaining()
        if remaining is not None:
            if remaining <= 0:
                raise TransientSourceError(f"no time left to fetch {url} before the step's time limit (temporary; retried)")
            connect, read = min(connect, remaining), min(read, remaining)
        if self.slots is not None:
            self.slots.take(self.deadline)
            remaining = self.deadline.remaining()
            if remaining is not None:
                connect, read = min(connect, max(remaining, 0.001)), min(read, max(remaining, 0.001))
        try:
            return self._http.request(
                "GET", url, preload_content=False, decode_content=False, redirect=False,
                timeout=urllib3.Timeout(connect=connect, read=read),
                headers={**self._http.headers, **headers} if headers else None,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientSourceError(f"cannot reach {url}: {_reason(exc)}") from exc


    def _check_address(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        if host not in self._checked_hosts:
            check_public_address(url, self.allow_private)
            self._checked_hosts.add(host)


class SourceAddressError(SourceError):
    """The source's address is not one this pipeline may ask: loopback, link-local, private or reserved, or a
    redirect to another host."""


def check_public_address(url: str, allow_private: bool = False) -> None:
    """Refuse a URL whose host resolves to an address that is not on the public internet (loopback, link-local such
    as the instance metadata endpoint, private, reserved, multicast), unless allow_private (local testing)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceAddressError(f"{url!r} is not an http(s) URL with a host")
    if allow_private:
        return
    try:
        found = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)}
    except OSError as exc:
        raise TransientSourceError(f"cannot resolve {parts.hostname}: {exc} (temporary; retried with backoff)") from exc
    for address in sorted(found):
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise SourceAddressError(
                f"{parts.hostname} resolves to {address}, which is not a public internet address (loopback, "
                "link-local, private or reserved); the pipeline asks only public sources. For a local test server, "
                "run the local runner with --allow-private-source (AllowPrivateSourceAddresses=true)"
            )


def _same_origin_redirect(origin: str, current: str, location: str, redirects: int) -> str:
    target = urljoin(current, location)
    first, then = urlsplit(origin), urlsplit(target)
    if (then.scheme, (then.hostname or "").lower(), then.port) != (first.scheme, (first.hostname or "").lower(), first.port):
        raise SourceAddressError(
            f"{origin} redirected to another scheme or host ({then.scheme}://{then.hostname}); not followed: the "
            "pipeline reads a source only from its own host"
        )
    if redirects >= _MAX_REDIRECTS:
        raise SourceHttpError(f"{origin} redirected more than {_MAX_REDIRECTS} times")
    return target


def _refuse_unasked_forms(url: str, response: urllib3.BaseHTTPResponse, asked_range: bool) -> None:
    """A body in a form that was not asked for is not the file: a part of it (206 without a Range request), or an
    encoding (this client asks for identity and stores bytes as they come)."""
    problem = None
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if response.status == 206 and not asked_range:
        problem = "answered 206 Partial Content to a request for the whole file"
    elif encoding not in ("", "identity"):
        problem = f"sent the body with Content-Encoding {encoding!r} although identity was asked for"
    if problem:
        _discard(response)
        raise TransientSourceError(f"{url} {problem}; nothing was written (temporary; retried with backoff)")


def _broken_because(exc: BaseException) -> str:
    text = str(exc)
    if "IncompleteRead" in text:
        return "the connection closed before the end of the body (Content-Length)"
    if "ConnectionResetError" in text or "Connection reset" in text:
        return "the source reset the connection"
    return text


def _shutdown(response: urllib3.BaseHTTPResponse) -> None:
    try:
        response.shutdown()
    except (ValueError, RuntimeError, OSError):
        pass  # already closed or released: nothing is blocked on it


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    response.close()
    response.release_conn()


# Where BLS states its terms for robots; a blocked client is pointed there (and to its contact page).
BLS_TERMS = "https://www.bls.gov/bls/blsterms.htm"
BLS_CONTACT = "https://www.bls.gov/bls/contact.htm"


def _raise_for_status(url: str, response: urllib3.BaseHTTPResponse, agent: str, slots: Any = None) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    if status == 403:
        rate = (f"at most {slots.per_second:g} request(s) per second to this host" if slots is not None
                else "no request-rate limit")
        raise SourceBlocked(
            f"the source refused {url} with HTTP 403: it blocks this client. BLS blocks robots whose User-Agent "
            f"carries no contact information and robots that request multiple times per second ({BLS_TERMS}). This "
            f"run sent User-Agent {agent!r} with {rate}. What to do: check that the contact e-mail in the User-Agent "
            f"is yours and reachable; lower SourceRequestsPerSecond (the local runner's --source-requests-per-second); "
            f"if the block persists, contact BLS ({BLS_CONTACT}) with that User-Agent and the time of this run. "
            "No further request is made in this run; the next run asks once more."
        )
    if status in (404, 410):
        raise SourceNotFound(f"HTTP {status}: {url} does not exist at the source")
    if status in TRANSIENT_STATUSES:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if status == 429:
            message = (f"HTTP 429 Too Many Requests from {url}: the source is throttling this client "
                       "(temporary; retried with backoff; lower SourceRequestsPerSecond if it persists)")
        else:
            message = f"HTTP {status} from {url} (temporary; retried with backoff)"
        if retry_after is not None:
            message += f"; it asked to retry after {retry_after:g} s"
        raise TransientSourceError(message, retry_after=retry_after)
    raise SourceHttpError(f"HTTP {status} from {url}")


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from either of its forms: delta-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _content_length(response: urllib3.BaseHTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _content_range(response: urllib3.BaseHTTPResponse) -> ContentRange | None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    if match is None:
        return None
    first, last, total = match.groups()
    return ContentRange(int(first), int(last), None if total == "*" else int(total))


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)
