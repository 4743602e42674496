"""A loopback HTTP server that behaves like download.bls.gov, with fault switches for tests and benchmarks.

It serves an IIS-style listing of an in-memory directory, refuses (403) clients whose User-Agent has no contact
e-mail, sends Content-Length and Last-Modified, and records every request with the time it arrived. Like BLS, it can
block a client that requests too often (max_requests_per_second): from the first request over the rate in any
one-second window, every request is answered 403 until unblock().

A request's arrival time is when its first bytes reached the server's socket, as the kernel stamped them (Linux's
SO_TIMESTAMPNS), not when a handler thread got to read them: the server shares its process, and so its interpreter
lock and its garbage collector's pauses, with the engine that sends the requests, and a handler delayed by either
would make two requests a second apart look closer (or farther) than they arrived. Elsewhere it is the time the
handler read the request.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import platform
import re
import socket
import struct
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import unquote


def iis_stamp(moment: dt.datetime) -> str:
    """'8/6/2026  8:30 AM' as the BLS listing shows it (hour padded to two columns)."""
    hour = moment.hour % 12 or 12
    return f"{moment.month}/{moment.day}/{moment.year} {hour:>2}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


@dataclass
class ServedFile:
    body: bytes
    modified: dt.datetime


@dataclass
class Request:
    method: str
    path: str
    user_agent: str
    status: int
    byte_range: str = ""  # the Range header, if any
    at: float = 0.0  # time.monotonic() when the request arrived


def peak_requests_per_second(times: list[float]) -> int:
    """The largest number of requests that started within any one-second window [t, t + 1)."""
    ordered = sorted(times)
    peak, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - 1.0:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


# A fault is a callable run instead of the normal answer; the queue per path is consumed one request at a time.
Fault = Callable[["BlsHandler", bytes], None]


@dataclass
class BlsServer:
    base_path: str = "/pub/time.series/pr/"
    latency: float = 0.0  # seconds added before every answer
    bandwidth: float | None = None  # bytes per second for bodies, None for unlimited
    files: dict[str, ServedFile] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    listing_override: Callable[[str], tuple[int, str]] | None = None
    listing_style: str = "iis"  # "iis" as download.bls.gov writes it, or "loose": other padding, spacing and case
    directories: list[str] = field(default_factory=list)  # sub-directories, listed as <dir> rows
    # Other documents served at absolute paths (e.g. a DataUSA-like API): path -> (body, content type)
    routes: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    serve_ranges: bool = True  # answer "Range: bytes=a-b" with 206 and Content-Range, as download.bls.gov does
    max_requests_per_second: float | None = None  # block (403) a client that requests faster, as BLS does
    port: int = 0  # 0: any free port

    def __post_init__(self) -> None:
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._in_flight = 0
        self.most_in_flight = 0  # the most requests this server was answering at one time
        self.blocked = False
        self._arrivals: deque[float] = deque()

    # -- content --------------------------------------------------------------------------------------------
    def put(self, name: str, body: bytes, modified: dt.datetime | None = None) -> None:
        self.files[name] = ServedFile(body, modified or dt.datetime(2026, 8, 6, 8, 30))

    def remove(self, name: str) -> None:
        del self.files[name]

    def add_faults(self, name: str, *faults: Fault) -> None:
        """Queue faults for the next requests of a file ('' for the listing, or a route's path)."""
        with self._lock:
            self._faults[name].extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def listing_html(self) -> str:
        rows = [f'<A HREF="{self.base_path.rsplit("/", 2)[0]}/">[To Parent Directory]</A><br><br>']
        entries = [(name, f.modified, str(len(f.body))) for name, f in self.files.items()]
        entries += [(f"{d}/", dt.datetime(2026, 8, 6, 8, 30), "<dir>") for d in self.directories]
        for name, moment, size in sorted(entries):
            rows.append(self._row(name, moment, size))
        title = f"127.0.0.1 - {self.base_path}"
        return (
            f"<html><head><title>{title}</title></head><body><H1>{title}</H1><hr>\r\n\r\n<pre>"
            + "".join(rows)
            + "</pre><hr></body></html>\r\n"
        )

    def _row(self, name: str, moment: dt.datetime, size: str) -> str:
        if self.listing_style == "loose":  # zero-padded, tab-separated, lower case, raw <dir>, no <br>
            hour, half = moment.hour % 12 or 12, "am" if moment.hour < 12 else "pm"
            stamp = f"{moment.month:02d}/{moment.day:02d}/{moment.year}\t{hour:02d}:{moment.minute:02d}{half}"
            return f'{stamp}\t{size}\t<a href="{self.base_path}{name}">{name.rstrip("/")}</a>\n'
        size = size.replace("<dir>", "&lt;dir&gt;")
        return f'{iis_stamp(moment):>19} {size:>12} <A HREF="{self.base_path}{name}">{name.rstrip("/")}</A><br>'

    # -- observation ----------------------------------------------------------------------------------------
    def route(self, path: str, body: bytes, content_type: str = "application/json") -> None:
        self.routes[path] = (body, content_type)

    @property
    def root(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.root + self.base_path

    def requests_for(self, name: str | None = None) -> list[Request]:
        """Requests to the BLS directory (name None) or to one of its files."""
        with self._lock:
            done = list(self.requests)
        if name is None:
            return [r for r in done if r.path.startswith(self.base_path)]
        return [r for r in done if r.path == self.base_path + name]

    def requests_to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def file_requests(self) -> list[Request]:
        return [r for r in self.requests_for() if r.path != self.base_path]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> "BlsServer":
        self._httpd = serve_on_loopback(self.handler(), self, self.port)
        return self

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class to serve (a subclass may serve its own)."""
        return BlsHandler

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "BlsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_fault(self, name: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(name)
            return queue.popleft() if queue else None

    def _log(self, method: str, path: str, agent: str, status: int, byte_range: str = "", at: float | None = None) -> None:
        with self._lock:
            self.requests.append(Request(method, path, agent, status, byte_range, time.monotonic() if at is None else at))

    def unblock(self) -> None:
        with self._lock:
            self.blocked = False
            self._arrivals.clear()

    def _arrive(self, at: float | None = None) -> tuple[float, bool]:
        """Record an arrival at `at` (time.monotonic(); None: now); (its time, whether this client is blocked from now
        on)."""
        now = time.monotonic() if at is None else at
        with self._lock:
            self._arrivals.append(now)
            while self._arrivals and self._arrivals[0] <= now - 1.0:
                self._arrivals.popleft()
            if self.max_requests_per_second is not None and len(self._arrivals) > self.max_requests_per_second:
                self.blocked = True
            return now, self.blocked

    def _count_in_flight(self, change: int) -> None:
        with self._lock:
            self._in_flight += change
            self.most_in_flight = max(self.most_in_flight, self._in_flight)


# The kernel's receive time of the bytes read, as ancillary data of recvmsg (socket(7)); the value of
# SO_TIMESTAMPNS on Linux's common architectures, which Python's socket module does not name.
_SO_TIMESTAMPNS = 35 if sys.platform == "linux" and platform.machine() in (
    "x86_64", "i686", "i386", "aarch64", "arm64", "armv7l", "armv8l", "riscv64", "s390x", "ppc64le") else None
_TIMESPEC = struct.Struct("@qq")  # struct timespec: seconds, nanoseconds (64-bit)


class _QuietServer(ThreadingHTTPServer):
    def server_bind(self) -> None:
        super().server_bind()
        self.stamps_arrivals = False
        if _SO_TIMESTAMPNS is not None and _TIMESPEC.size == 16:
            try:  # accepted connections inherit it
                self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.stamps_arrivals = True
            except OSError:
                pass

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up mid-answer are part of the fault tests


class _ArrivalReader(io.RawIOBase):
    """A connection's bytes, read with recvmsg so that the kernel says when they arrived: `arrived` is the receive
    time (time.monotonic()) of the first bytes read since the last claim()."""

    def __init__(self, connection: socket.socket):
        self._connection = connection
        self.arrived: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size, ancillary, _, _ = self._connection.recvmsg_into([buffer], socket.CMSG_SPACE(_TIMESPEC.size))
        if size and self.arrived is None:
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack(data[:_TIMESPEC.size])
                    self.arrived = time.monotonic() - (time.time() - (seconds + nanoseconds / 1e9))
        return size

    def claim(self) -> float | None:
        """The arrival time of the request just read (None: the kernel gave none); the next read starts anew."""
        arrived, self.arrived = self.arrived, None
        return arrived


# How often the serving loop looks whether shutdown() was asked for: socketserver's default, 0.5 s, is how long
# every stop took (half a second of each test that starts a server).
SHUTDOWN_POLL_SECONDS = 0.02


def serve_on_loopback(handler: type[BaseHTTPRequestHandler], owner: object, port: int = 0) -> ThreadingHTTPServer:
    """Serve `handler` (its requests see `owner` as self.owner) on 127.0.0.1 (port 0: a free one), from a daemon
    thread."""
    httpd = _QuietServer(("127.0.0.1", port), type(handler.__name__, (handler,), {"owner": owner}))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True).start()
    return httpd


class BlsHandler(BaseHTTPRequestHandler):
    owner: BlsServer
    protocol_version = "HTTP/1.1"
    _arrivals: _ArrivalReader | None = None

    def setup(self) -> None:
        super().setup()
        if getattr(self.server, "stamps_arrivals", False):
            self._arrivals = _ArrivalReader(self.connection)
            self.rfile = io.BufferedReader(self._arrivals)

    def handle_one_request(self) -> None:
        if self._arrivals is not None:
            self._arrivals.claim()  # what the last request left unclaimed (its body) is not the next one's arrival
        super().handle_one_request()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.owner._count_in_flight(+1)
        try:
            self._answer(send_body=True)
        finally:
            self.owner._count_in_flight(-1)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        server = self.owner
        agent = self.headers.get("User-Agent", "")
        self.arrived, blocked = server._arrive(self._arrivals.claim() if self._arrivals is not None else None)
        if server.latency:
            time.sleep(server.latency)
        if blocked:
            self.send_status(403, b"<html><body>Access Denied: request rate exceeded</body></html>", send_body)
            return
        if "@" not in agent:
            self.send_status(403, b"<html><body>Access Denied: please identify yourself (contact e-mail in User-Agent)</body></html>", send_body)
            return
        path = self.path.split("?", 1)[0]
        if path in server.routes:
            fault = server._next_fault(path)
            if fault is not None:
                fault(self, b"")
                return
            body, content_type = server.routes[path]
            self.send_body(200, body, content_type, send_body=send_body)
            return
        if path == server.base_path:
            name = ""
        elif path.startswith(server.base_path):
            name = unquote(path[len(server.base_path):])
        else:
            self.send_status(404, b"not found", send_body)
            return
        fault = server._next_fault(name)
        if fault is not None:
            fault(self, b"")
            return
        if name == "":
            if server.listing_override is not None:
                status, page = server.listing_override(server.listing_html())
            else:
                status, page = 200, server.listing_html()
            self.send_body(status, page.encode(), "text/html", send_body=send_body)
            return
        served = server.files.get(name)
        if served is None:
            self.send_status(404, b"<html><body>The resource cannot be found.</body></html>", send_body)
            return
        self.send_file(served.body, served.modified, send_body)

    # -- building blocks, also used by faults -----------------------------------------------------------------
    def send_file(self, body: bytes, modified: dt.datetime, send_body: bool = True) -> None:
        """A file's answer: all of it, or the byte range the request asks for."""
        byte_range = self._requested_range(len(body)) if self.owner.serve_ranges else None
        if byte_range is None:
            self.send_body(200, body, "text/plain", modified, send_body, headers={"Accept-Ranges": "bytes"})
        elif byte_range == "unsatisfiable":
            self.send_status(416, b"Requested Range Not Satisfiable", send_body, headers={"Content-Range": f"bytes */{len(body)}"})
        else:
            first, last = byte_range
            self.send_body(206, body[first:last + 1], "text/plain", modified, send_body,
                           headers={"Content-Range": f"bytes {first}-{last}/{len(body)}", "Accept-Ranges": "bytes"})

    def _requested_range(self, size: int) -> tuple[int, int] | str | None:
        """The single byte range the request asks for (a Range header this server does not parse is ignored)."""
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
        if match is None:
            return None
        first = int(match.group(1))
        last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        if first >= size or last < first:
            return "unsatisfiable"
        return first, last

    def send_status(self, status: int, body: bytes, send_body: bool = True, headers: dict | None = None) -> None:
        self.send_body(status, body, "text/html", send_body=send_body, headers=headers)

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str,
        modified: dt.datetime | None = None,
        send_body: bool = True,
        headers: dict | None = None,
        declared_length: int | None = None,
        cut_after: int | None = None,
        reset: bool = False,
        length: bool = True,
    ) -> None:
        """Answer with a body; declared_length lies about Content-Length, cut_after closes the connection early
        (reset: with a TCP RST instead of a clean close), length=False sends no Content-Length (the end of the body
        is the end of the connection)."""
        self.owner._log(self.command, self.path, self.headers.get("User-Agent", ""), status, self.headers.get("Range", ""),
                        getattr(self, "arrived", None))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
        if modified is not None:
            self.send_header("Last-Modified", email.utils.format_datetime(modified.replace(tzinfo=dt.timezone.utc), usegmt=True))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if cut_after is not None or not length:
            self.send_header("Connection", "close")
        self.end_headers()
        if not send_body:
            return
        payload = body if cut_after is None else body[:cut_after]
        bandwidth = self.owner.bandwidth
        try:
            if bandwidth:
                chunk = max(1024, int(bandwidth / 20))
                for start in range(0, len(payload), chunk):
                    self.wfile.write(payload[start:start + chunk])
                    time.sleep(min(chunk, len(payload) - start) / bandwidth)
            else:
                self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        if cut_after is not None or not length:
            self.close_connection = True


# -- ready-made faults ---------------------------------------------------------------------------------------
def status(code: int, headers: dict | None = None) -> Fault:
    def fault(handler: BlsHandler, _: bytes) -> None:
        handler.send_status(code, f"<html><body>HTTP {code}</body></html>".encode(), headers=headers)

    return fault


def answer_then_republish(modified: dt.datetime) -> Fault:
    """Answer from the current version, and from then on serve the file as republished at `modified` (same bytes,
    new Last-Modified): a file replaced while a client reads it in ranges."""

    def fault(handler: BlsHandler, _: bytes) -> None:
        served = _served(handler)
        current = served.modified
        served.modified = modified
        handler.send_file(served.body, current)

    return fault


def answer_normally() -> Fault:
    def fault(handler: BlsHandler, _: bytes) -> None:
        served = _served(handler)
        handler.send_file(served.body, served.modified)

    return fault


def range_without_version(handler: BlsHandler, _: bytes) -> None:
    """A 206 answer without Last-Modified or ETag: parts read this way cannot be checked to belong together."""
    body = _served(handler).body
    first, last = handler._requested_range(len(body))
    handler.send_body(206, body[first:last + 1], "text/plain",
                      headers={"Content-Range": f"bytes {first}-{last}/{len(body)}"})


def _served(handler: BlsHandler) -> ServedFile:
    return handler.owner.files[handler.path[len(handler.owner.base_path):]]


def short_body(missing: int = 100) -> Fault:
    """Declare the real length, send all but the last `missing` bytes, close."""

    def fault(handler: BlsHandler, _: bytes) -> None:
        body = _served(handler).body
        handler.send_body(200, body, "text/plain", cut_after=max(0, len(body) - missing))

    return fault


# -- answers that succeed with the wrong thing ---------------------------------------------------------------------
def no_length_cut(after: int) -> Fault:
    """No Content-Length, and the connection closes cleanly after `after` bytes: a body that looks complete."""

    def fault(handler: BlsHandler, _: bytes) -> None:
        served = _served(handler)
        handler.send_body(200, served.body[:after], "text/plain", served.modified, length=False)

    return fault


def declared_short(missing: int) -> Fault:
    """A Content-Length `missing` bytes smaller than the body that follows."""

    def fault(handler: BlsHandler, _: bytes) -> None:
        served = _served(handler)
        handler.send_body(200, served.body, "text/plain", served.modified, declared_length=len(served.body) - missing)
        handler.close_connection = True

    return fault


def partial_without_range(handler: BlsHandler, _: bytes) -> None:
    """206 with the first half of the file, to a request that asked for all of it."""
    served = _served(handler)
    half = len(served.body) // 2
    handler.send_body(206, served.body[:half], "text/plain", served.modified,
                      headers={"Content-Range": f"bytes 0-{half - 1}/{len(served.body)}"})


def gzip_encoded(handler: BlsHandler, _: bytes) -> None:
    """The file gzip-compressed with Content-Encoding: gzip, although the client asked for identity."""
    import gzip

    served = _served(handler)
    handler.send_body(200, gzip.compress(served.body), "text/plain", served.modified, headers={"Content-Encoding": "gzip"})


def html_error_page(handler: BlsHandler, _: bytes) -> None:
    """200 OK carrying an HTML error page instead of the file."""
    handler.send_body(200, b"<html><body><h1>Service temporarily unavailable</h1></body></html>", "text/html")


def redirect_to(location: str) -> Fault:
    def fault(handler: BlsHandler, _: bytes) -> None:
        handler.send_body(302, b"", "text/html", headers={"Location": location})

    return fault


def reset_mid_body(after: int) -> Fault:
    """Declare the real length, send the first `after` bytes, then reset the connection (TCP RST)."""

    def fault(handler: BlsHandler, _: bytes) -> None:
        served = _served(handler)
        handler.send_body(200, served.body, "text/plain", served.modified, cut_after=after, reset=True)

    return fault


def drip_then_stall(drip_seconds: float, stall_seconds: float) -> Fault:
    """The file's headers, then a few bytes every 0.1 s for `drip_seconds`, then nothing for `stall_seconds`."""

    def fault(handler: BlsHandler, _: bytes) -> None:
        served = _served(handler)
        handler.owner._log(handler.command, handler.path, handler.headers.get("User-Agent", ""), 200)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(served.body)))
        handler.end_headers()
        sent, started = 0, time.monotonic()
        try:
            while time.monotonic() - started < drip_seconds and sent < len(served.body) - 64:
                handler.wfile.write(served.body[sent:sent + 64])
                handler.wfile.flush()
                sent += 64
                time.sleep(0.1)
            time.sleep(stall_seconds)
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True

    return fault


# -- a tree of directories on one host ---------------------------------------------------------------------------------
@dataclass
class _Directory(BlsServer):
    """One survey directory of a BlsTree: served by the tree's HTTP server; its arrivals count against the tree's
    (the whole host's) request rate, and its requests are also in the tree's log."""

    host: "BlsTree | None" = None

    @property
    def root(self) -> str:
        assert self.host is not None
        return self.host.root

    def _arrive(self, at: float | None = None) -> tuple[float, bool]:
        assert self.host is not None
        return self.host._arrive(at)

    def _log(self, method: str, path: str, agent: str, status: int, byte_range: str = "", at: float | None = None) -> None:
        super()._log(method, path, agent, status, byte_range, at)
        assert self.host is not None
        self.host._log(method, path, agent, status, byte_range, at)


@dataclass
class BlsTree(BlsServer):
    """download.bls.gov's time.series tree on one loopback port: /pub/time.series/ lists each survey as a <dir> row,
    and each survey directory below it is a BlsServer of its own (tree.survey("ce").put(...)), with its own files,
    faults and request log. Every request to the host arrives in the tree's log and counts against the tree's
    max_requests_per_second (BLS sees one client, whatever directory it asks for)."""

    base_path: str = "/pub/time.series/"
    surveys: dict[str, _Directory] = field(default_factory=dict)

    def survey(self, name: str) -> BlsServer:
        """The directory of survey `name`, created (empty) on first use."""
        if name not in self.surveys:
            self.surveys[name] = _Directory(base_path=f"{self.base_path}{name}/", latency=self.latency,
                                            bandwidth=self.bandwidth, host=self)
        return self.surveys[name]

    def remove_survey(self, name: str) -> None:
        del self.surveys[name]

    def listing_html(self) -> str:
        saved = self.directories
        self.directories = sorted(set(saved) | set(self.surveys))
        try:
            return super().listing_html()
        finally:
            self.directories = saved

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return TreeHandler

    def all_requests(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def reset_log(self) -> None:
        super().reset_log()
        for directory in self.surveys.values():
            directory.reset_log()

    def unblock(self) -> None:
        super().unblock()


class TreeHandler(BlsHandler):
    """Answers a request with the survey directory its path is in (that directory is the owner), or the tree."""

    def _answer(self, send_body: bool) -> None:
        tree = type(self).owner
        path = self.path.split("?", 1)[0]
        rest = path[len(tree.base_path):] if path.startswith(tree.base_path) else ""
        name = rest.split("/", 1)[0]
        directory = tree.surveys.get(name) if "/" in rest else None
        self.owner = directory if directory is not None else tree  # this request's owner
        super()._answer(send_body)
