"""Parse the IIS-style directory listing that download.bls.gov serves."""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass
from urllib.parse import unquote, urljoin, urlsplit

# One listing row: "  8/6/2026  8:30 AM          102 <A HREF="/pub/time.series/pr/pr.class">pr.class</A>"
_ROW = re.compile(
    r"(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})\s+"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?\s*(?P<half>[AP]M)\s+"
    r"(?P<size>&lt;dir&gt;|<dir>|\d+)\s+"
    r"<a\s+href\s*=\s*\"(?P<href>[^\"]+)\"\s*>(?P<text>.*?)</a>",
    re.IGNORECASE,
)


class ListingError(Exception):
    """The listing page holds no file rows: an error page, or a format this parser does not know."""


@dataclass(frozen=True)
class SourceFile:
    name: str
    url: str
    size: int
    stamp: str  # the listing's date and time, an opaque version string (server-local, no zone)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SourceFile":
        return cls(name=data["name"], url=data["url"], size=int(data["size"]), stamp=data["stamp"])


# One row of a listing is far shorter than this; a longer piece is not a row (and is not searched, so that a crafted
# page cannot make the parser's time grow with the square of its size).
_MAX_ROW_CHARS = 4096
_ROW_BREAK = re.compile(r"<br\s*/?>|\n", re.IGNORECASE)
# What a mirror file name may be: a single path segment that S3 and the local state directory (Linux, macOS) can
# hold: not "." or "..", no control characters, at most 255 bytes in UTF-8 (a file name's limit on both systems,
# well inside S3's 1,024-byte keys).
MAX_NAME_BYTES = 255


def name_problem(name: str) -> str | None:
    """Why a listed name cannot be a mirror file name, or None."""
    if name in (".", ".."):
        return "is a relative path segment"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
        return "contains control characters"
    if len(name.encode("utf-8", errors="surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def printable(text: str) -> str:
    """Text as it may reach a terminal or a log: control characters escaped, nothing else changed."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def parse_listing(page: str, base_url: str) -> list[SourceFile]:
    """File rows of the listing, in listing order; directories and links outside base_url are skipped."""
    base = urlsplit(base_url)
    files: dict[str, SourceFile] = {}
    rows = (_ROW.search(piece) for piece in _ROW_BREAK.split(page) if len(piece) <= _MAX_ROW_CHARS)
    for match in filter(None, rows):
        size = match["size"]
        if not size.isdigit():
            continue
        url = urljoin(base_url, html.unescape(match["href"]))
        parts = urlsplit(url)
        if parts.netloc != base.netloc or not parts.path.startswith(base.path) or parts.path.endswith("/"):
            continue
        name = unquote(parts.path[len(base.path):])
        if not name or "/" in name:
            continue
        files[name] = SourceFile(name=name, url=url, size=int(size), stamp=_stamp(match))
    return list(files.values())


def parse_directories(page: str, base_url: str) -> list[str]:
    """Names of the sub-directories (<dir> rows) of the listing directly under base_url, in listing order: the
    surveys of the time.series tree."""
    base = urlsplit(base_url)
    found: dict[str, None] = {}
    rows = (_ROW.search(piece) for piece in _ROW_BREAK.split(page) if len(piece) <= _MAX_ROW_CHARS)
    for match in filter(None, rows):
        if match["size"].isdigit():
            continue
        parts = urlsplit(urljoin(base_url, html.unescape(match["href"])))
        if parts.netloc != base.netloc or not parts.path.startswith(base.path):
            continue
        name = unquote(parts.path[len(base.path):]).rstrip("/")
        if name and "/" not in name:
            found[name] = None
    return list(found)


def _stamp(row: re.Match) -> str:
    """The row's date and time written one way ("8/6/2026 8:30 AM"), whatever the padding and spacing of the page,
    so that a listing that only changes its layout does not make every file look changed."""
    seconds = f":{row['second']}" if row["second"] else ""
    return (f"{int(row['month'])}/{int(row['day'])}/{row['year']} "
            f"{int(row['hour'])}:{row['minute']}{seconds} {row['half'].upper()}")


def require_files(files: list[SourceFile], page: str, url: str) -> list[SourceFile]:
    """A listing without files is never taken to mean that the source removed everything."""
    if files:
        return files
    snippet = " ".join(re.sub(r"<[^>]+>", " ", page).split())[:160]
    if re.search(r"<pre>", page, re.IGNORECASE) and "To Parent Directory" in page:
        reason = ("lists no files at all; the pipeline does not take that to mean that every file was removed. "
                  "If the directory really is empty now, delete the mirror prefix by hand")
    else:
        reason = "has no file rows (an error page or a changed format?)"
    raise ListingError(f"the listing at {url} {reason}; nothing was copied or deleted. Page starts: {snippet!r}")
