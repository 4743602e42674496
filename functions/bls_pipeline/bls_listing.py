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


def parse_listing(page: str, base_url: str) -> list[SourceFile]:
    """File rows of the listing, in listing order; directories and links outside base_url are skipped."""
    base = urlsplit(base_url)
    files: dict[str, SourceFile] = {}
    for match in _ROW.finditer(page):
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
