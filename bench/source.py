"""The benchmark's source: the tests' BLS-like server, plus bodies generated on the fly and a `pr`-shaped directory.

tests/bls_server.py keeps every body in memory; a 1 GiB file must not be, so `GeneratedBody` describes a body by
size and seed and is streamed chunk by chunk. The server also counts the file bytes it sends.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bls_loopback.population import POPULATION as BASE_POPULATION, population_json
from bls_loopback.server import BlsHandler, BlsServer

CONTACT = "bench@example.com"
USER_AGENT = f"bls-bench/1.0 (benchmark; contact: {CONTACT})"
POPULATION_PATH = "/tesseract/data.jsonrecords"
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_CURRENT = REAL_DATA / "bls_pr_2026-08-06" / "pr.data.0.Current"

RELEASE = dt.datetime(2026, 8, 6, 8, 30)
NEXT_RELEASE = dt.datetime(2026, 9, 3, 8, 30)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class GeneratedBody:
    """`size` deterministic bytes: `header` (e.g. a BLS header row, bench/tree_layout.py), then pseudo-random bytes
    produced per 1 MiB chunk from `seed`."""

    size: int
    seed: int = 0
    offset: int = 0  # where this body starts in the byte stream header + seed's bytes (a byte range of a larger body)
    header: bytes = b""

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice) -> "GeneratedBody":
        start, stop, _ = part.indices(self.size)
        return GeneratedBody(max(0, stop - start), self.seed, self.offset + start, self.header)

    def chunks(self):
        position, end = self.offset, self.offset + self.size
        lead = len(self.header)
        if position < min(lead, end):
            take = min(lead, end) - position
            yield self.header[position:position + take]
            position += take
        if position >= end:
            return
        block = random.Random(self.seed).randbytes(_CHUNK)
        while position < end:
            # Each chunk differs (its index is stamped in) so the body is not one repeated block.
            index, skip = divmod(position - lead, _CHUNK)
            piece = index.to_bytes(8, "big") + block[8:]
            take = min(_CHUNK - skip, end - position)
            yield piece[skip:skip + take]
            position += take

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()


class CountsFileBytes:
    """For a BlsServer (or BlsTree) subclass: a count of the file bytes its streaming handler sends, reset with its
    request log."""

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        self.file_bytes_sent = 0
        self._bytes_lock = threading.Lock()

    def reset_log(self) -> None:
        super().reset_log()  # type: ignore[misc]
        with self._bytes_lock:
            self.file_bytes_sent = 0

    def count_file_bytes(self, count: int) -> None:
        with self._bytes_lock:
            self.file_bytes_sent += count


class BenchSource(CountsFileBytes, BlsServer):
    """BlsServer with streamed generated bodies and a count of file bytes sent."""

    def handler(self) -> type:
        return _StreamingHandler

    def request_counts(self) -> dict[str, int]:
        """Requests to the mirrored directory: the listing, HEADs and GETs of files (other routes left out)."""
        counts = {"listing": 0, "head": 0, "get": 0}
        for request in self.requests_for():
            if request.path.split("?", 1)[0] == self.base_path:
                counts["listing"] += 1
            elif request.method == "HEAD":
                counts["head"] += 1
            else:
                counts["get"] += 1
        counts["bytes"] = self.file_bytes_sent
        return counts


class _StreamingHandler(BlsHandler):
    owner: BenchSource

    def count_file_bytes(self, count: int) -> None:
        self.owner.count_file_bytes(count)

    def send_body(self, status, body, content_type, modified=None, send_body=True, **options) -> None:
        is_file = self.command == "GET" and status in (200, 206) and self.path.startswith(self.owner.base_path) \
            and self.path != self.owner.base_path
        if not isinstance(body, GeneratedBody):
            super().send_body(status, body, content_type, modified, send_body, **options)
            if is_file and send_body:
                self.count_file_bytes(len(body))
            return
        self.owner._log(self.command, self.path, self.headers.get("User-Agent", ""), status, at=getattr(self, "arrived", None))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if modified is not None:
            self.send_header("Last-Modified", email.utils.format_datetime(modified.replace(tzinfo=dt.timezone.utc), usegmt=True))
        for key, value in (options.get("headers") or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not send_body:
            return
        bandwidth = self.owner.bandwidth
        try:
            for chunk in body.chunks():
                self.wfile.write(chunk)
                self.count_file_bytes(len(chunk))
                if bandwidth:
                    time.sleep(len(chunk) / bandwidth)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


# -- the pr-shaped directory ----------------------------------------------------------------------------------
# Sizes and listing stamps of the real `pr` directory (2026-08-06 snapshot; pr.contacts and pr.txt from 2024).
PR_SMALL_FILES = {
    "pr.class": (102, RELEASE),
    "pr.contacts": (562, dt.datetime(2022, 9, 13, 10, 2)),
    "pr.duration": (176, RELEASE),
    "pr.footnote": (40, RELEASE),
    "pr.measure": (745, RELEASE),
    "pr.period": (146, dt.datetime(1994, 1, 7, 15, 53)),
    "pr.seasonal": (79, dt.datetime(2011, 11, 18, 16, 5)),
    "pr.sector": (263, RELEASE),
    "pr.series": (15657, RELEASE),
    "pr.txt": (18343, dt.datetime(2011, 11, 17, 9, 1)),
}
LARGE_FILE = "pr.data.9.Large"
CHANGED_FILE = "pr.data.0.Current"


def pr_data_file(series_count: int = 282, first_year: int = 1995, last_year: int = 2026, seed: int = 1,
                 series_suffix: str = "") -> bytes:
    """A BLS time-series data file shaped like pr.data.0.Current: padded series_id, left-padded value, CRLF."""
    rng = random.Random(seed)
    lines = ["series_id        \tyear\tperiod\t       value\tfootnote_codes\r\n"]
    for index in range(series_count):
        series = f"PRS{30006011 + index * 10:08d}{series_suffix}"
        for year in range(first_year, last_year + 1):
            for period in ("Q01", "Q02", "Q03", "Q04", "Q05"):
                value = round(rng.uniform(-9, 120), rng.choice((1, 1, 3)))
                lines.append(f"{series:<17}\t{year}\t{period}\t{value:>12}\t\r\n")
    return "".join(lines).encode()


def filler(size: int, seed: int) -> bytes:
    """Tab-separated text of exactly `size` bytes, for the small metadata files."""
    rng = random.Random(seed)
    words = [f"{rng.choice(('code', 'text', 'Q0', 'sector', 'All workers'))}{rng.randint(0, 99)}" for _ in range(size)]
    text = "\t".join(words).encode()[:size]
    return text[:-2] + b"\r\n" if size >= 2 else text


def populate_pr_directory(source: BlsServer, large_bytes: int) -> None:
    """The `pr` directory's twelve files at their real sizes (data generated), plus one large generated file."""
    source.files.clear()
    for seed, (name, (size, stamp)) in enumerate(sorted(PR_SMALL_FILES.items())):
        source.put(name, filler(size, seed), stamp)
    source.put("pr.data.0.Current", pr_data_file(), RELEASE)
    source.put("pr.data.1.AllData", pr_data_file(first_year=1947, seed=2), RELEASE)
    if large_bytes:
        source.put(LARGE_FILE, GeneratedBody(large_bytes, seed=7), RELEASE)


def change_one_file(source: BlsServer) -> str:
    """The next release rewrites pr.data.0.Current: one more row, a new listing stamp."""
    current = source.files[CHANGED_FILE].body
    source.put(CHANGED_FILE, current + b"PRS30006011      \t2026\tQ03\t         1.7\t\r\n", NEXT_RELEASE)
    return CHANGED_FILE


def populate_many_files(source: BlsServer, count: int) -> None:
    """pr.data.0.Current (the reports need it) and `count` - 1 small files (100-400 bytes)."""
    source.files.clear()
    source.put("pr.data.0.Current", pr_data_file(), RELEASE)
    rng = random.Random(3)
    for index in range(count - 1):
        source.put(f"pr.file.{index:05d}", filler(rng.randint(100, 400), index), RELEASE)


# -- DataUSA ------------------------------------------------------------------------------------------------
# The bench's answer has the newer years too; same shape as the tests' (bls_loopback.population).
POPULATION = {**BASE_POPULATION, 2022: 333287557, 2023: 334914895}
POPULATION_ANSWER = population_json(POPULATION)


def start_source(latency: float, bandwidth: float | None) -> BenchSource:
    source = BenchSource(latency=latency, bandwidth=bandwidth).start()
    source.route(POPULATION_PATH, POPULATION_ANSWER)
    return source


def tree_and_survey(url: str) -> tuple[str, str | None]:
    """A survey directory's URL (http://host/pub/time.series/pr/) -> (the tree's URL, "pr"); a tree's URL -> (it,
    None). The template takes the tree (SourceTreeUrl) and the surveys (Surveys) apart."""
    head, name = url.rstrip("/").rsplit("/", 1)
    return (head + "/", name) if head.endswith("/time.series") else (url, None)


def population_url(source: BlsServer) -> str:
    return source.root + POPULATION_PATH + "?cube=acs_yg_total_population_1"
