"""HTTP access to the source: one identifying User-Agent, and errors that say whether retrying can help."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import urllib3

from . import __version__

# Statuses that a later attempt can cure; everything else (404, 410, 400 ...) is final.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class SourceError(Exception):
    """The source could not deliver what was asked for."""


class SourceRefused(SourceError):
    """HTTP 403: BLS rejects clients without contact information or that request too fast."""


class SourceNotFound(SourceError):
    """HTTP 404/410: the file is gone; retrying will not bring it back."""


class SourceHttpError(SourceError):
    """Any other final HTTP status."""


class TransientSourceError(SourceError):
    """A failure a later attempt may not meet: 5xx, 429, timeouts, resets, short bodies."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def user_agent(contact_email: str) -> str:
    return f"bls-s3-mirror/{__version__} (data pipeline; contact: {contact_email})"


class SourceClient:
    def __init__(self, contact_email: str, connect_timeout: float = 10.0, read_timeout: float = 60.0):
        self.user_agent = user_agent(contact_email)
        self._http = urllib3.PoolManager(
            headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            # Retries belong to the state machine, where an operator sees them; only redirects are followed here.
            retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5),
        )

    def get_text(self, url: str) -> str:
        return self.get_bytes(url).decode("utf-8", errors="replace")

    def get_bytes(self, url: str) -> bytes:
        with self.stream(url) as response:
            try:
                return response.read()
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise TransientSourceError(f"reading {url} failed: {exc}") from exc

    @contextmanager
    def stream(self, url: str) -> Iterator[urllib3.BaseHTTPResponse]:
        """Open a GET whose body is read by the caller; raises a SourceError for any non-2xx status."""
        try:
            response = self._http.request("GET", url, preload_content=False, decode_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientSourceError(f"cannot reach {url}: {_reason(exc)}") from exc
        try:
            _raise_for_status(url, response, self.user_agent)
            yield response
        finally:
            response.release_conn()


def _raise_for_status(url: str, response: urllib3.BaseHTTPResponse, agent: str) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    if status == 403:
        raise SourceRefused(
            f"BLS refused the request (HTTP 403) for {url}. BLS blocks clients whose User-Agent carries no "
            f"contact e-mail and clients that request several times per second; this request sent "
            f"User-Agent {agent!r}. Check the contact e-mail and lower the copy concurrency."
        )
    if status in (404, 410):
        raise SourceNotFound(f"HTTP {status}: {url} does not exist at the source")
    if status in TRANSIENT_STATUSES:
        raise TransientSourceError(
            f"HTTP {status} from {url} (temporary; retried with backoff)",
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    raise SourceHttpError(f"HTTP {status} from {url}")


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)
