from __future__ import annotations

import pytest

from bls_pipeline.bls_listing import ListingError, SourceFile, parse_listing, require_files
from bls_loopback.server import BlsServer

BASE = "https://download.bls.gov/pub/time.series/pr/"

# Rows as download.bls.gov serves them: one <pre>, rows joined by <br>, a parent link first, a <dir> row.
REAL_SHAPE = (
    '<html><head><title>download.bls.gov - /pub/time.series/pr/</title></head><body><H1>download.bls.gov - '
    '/pub/time.series/pr/</H1><hr>\r\n\r\n<pre><A HREF="/pub/time.series/">[To Parent Directory]</A><br><br>'
    ' 8/6/2026  8:30 AM          102 <A HREF="/pub/time.series/pr/pr.class">pr.class</A><br>'
    ' 9/13/2022 10:01 AM          562 <A HREF="/pub/time.series/pr/pr.contacts">pr.contacts</A><br>'
    ' 8/6/2026  8:30 AM      1613575 <A HREF="/pub/time.series/pr/pr.data.0.Current">pr.data.0.Current</A><br>'
    ' 1/7/1994  3:53 PM          146 <A HREF="/pub/time.series/pr/pr.period">pr.period</A><br>'
    '11/18/2011  4:05 PM        &lt;dir&gt; <A HREF="/pub/time.series/pr/old/">old</A><br>'
    "</pre><hr></body></html>\r\n"
)


def test_real_row_shapes_give_name_absolute_url_size_and_stamp():
    files = parse_listing(REAL_SHAPE, BASE)

    assert files == [
        SourceFile("pr.class", BASE + "pr.class", 102, "8/6/2026 8:30 AM"),
        SourceFile("pr.contacts", BASE + "pr.contacts", 562, "9/13/2022 10:01 AM"),
        SourceFile("pr.data.0.Current", BASE + "pr.data.0.Current", 1613575, "8/6/2026 8:30 AM"),
        SourceFile("pr.period", BASE + "pr.period", 146, "1/7/1994 3:53 PM"),
    ]


def test_dir_rows_and_the_parent_link_are_skipped():
    names = [f.name for f in parse_listing(REAL_SHAPE, BASE)]
    assert "old" not in names and "[To Parent Directory]" not in names and "time.series" not in names


def test_odd_spacing_lowercase_tags_and_one_row_per_line_parse_the_same():
    page = (
        "<pre>\n"
        '8/6/2026 8:30 AM 102 <a href="/pub/time.series/pr/pr.class">pr.class</a><br>\n'
        '   12/25/2025    11:59   PM      7    <A  HREF = "pr.txt">pr.txt</A><BR>\n'
        "</pre>"
    )
    assert parse_listing(page, BASE) == [
        SourceFile("pr.class", BASE + "pr.class", 102, "8/6/2026 8:30 AM"),
        SourceFile("pr.txt", BASE + "pr.txt", 7, "12/25/2025 11:59 PM"),
    ]


def test_links_outside_the_source_directory_are_ignored():
    page = (
        ' 8/6/2026  8:30 AM          102 <A HREF="/pub/time.series/ce/ce.class">ce.class</A><br>'
        ' 8/6/2026  8:30 AM          102 <A HREF="https://example.org/pub/time.series/pr/x">x</A><br>'
    )
    assert parse_listing(page, BASE) == []


def test_an_escaped_href_is_resolved_and_its_name_decoded():
    page = ' 8/6/2026  8:30 AM          5 <A HREF="/pub/time.series/pr/pr%20notes&amp;x.txt">pr notes&amp;x.txt</A><br>'
    [file] = parse_listing(page, BASE)
    assert file.name == "pr notes&x.txt"
    assert file.url == BASE + "pr%20notes&x.txt"


def test_the_test_servers_listing_parses_like_the_real_one():
    server = BlsServer()
    server.put("pr.class", b"x" * 102)
    server.put("pr.series", b"y" * 15657)
    files = parse_listing(server.listing_html(), "http://127.0.0.1:1/pub/time.series/pr/")
    assert [(f.name, f.size, f.stamp) for f in files] == [
        ("pr.class", 102, "8/6/2026 8:30 AM"),
        ("pr.series", 15657, "8/6/2026 8:30 AM"),
    ]


@pytest.mark.parametrize(
    "page,reason",
    [
        ("", "no file rows"),
        ("<html><body>Service Unavailable</body></html>", "no file rows"),
        ('<pre><A HREF="/pub/time.series/">[To Parent Directory]</A></pre>', "lists no files at all"),
    ],
)
def test_a_page_without_file_rows_is_an_error_that_quotes_the_page(page, reason):
    with pytest.raises(ListingError, match=f"{reason}.*nothing was copied or deleted") as raised:
        require_files(parse_listing(page, BASE), page, BASE)
    assert "Page starts" in str(raised.value)


@pytest.mark.parametrize(
    "row",
    [
        ' 8/6/2026  8:30 AM          5 <A HREF="/pub/time.series/pr/pr.class">pr.class</A><br>',
        '08/06/2026\t08:30AM\t5\t<a href="/pub/time.series/pr/pr.class">pr.class</a>',
        '8/6/2026 8:30 am 5 <a  href = "/pub/time.series/pr/pr.class" >pr.class</a>',
    ],
)
def test_the_stamp_is_the_same_whatever_the_rows_padding_and_spacing(row):
    [file] = parse_listing(row, BASE)
    assert (file.name, file.size, file.stamp) == ("pr.class", 5, "8/6/2026 8:30 AM")
