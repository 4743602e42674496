"""The label views (bls_pipeline.catalog_labels) come from BLS's one convention for every survey, not from a file
per survey: the real pr files, and generated files with the header rows of cu (Consumer Price Index) and la (Local
Area Unemployment Statistics) as BLS documents them in cu.txt and la.txt, are labeled in DuckDB through
local_runner.sql.connect, and no join multiplies a data row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

duckdb = pytest.importorskip("duckdb", reason="DuckDB is in requirements-sql.txt (part of requirements-dev.txt)")

from bls_loopback.population import population_json  # noqa: E402
from bls_loopback.sample import sample_survey_files  # noqa: E402
from bls_pipeline import catalog, catalog_labels  # noqa: E402
from local_runner import sql as sql_command  # noqa: E402
from tests.test_sql import NEW_API, REAL_DATA, crlf, needs_real_data, state_dir  # noqa: E402


def rows(*lines: tuple[str, ...]) -> bytes:
    return crlf(*("\t".join(cells) for cells in lines))


def data_file(*values: tuple[str, int, str, str, str]) -> bytes:
    """A data file as BLS writes it: series_id right-padded, value left-padded."""
    return crlf("series_id                     \tyear\tperiod\t       value\tfootnote_codes",
                *(f"{s:<30}\t{y}\t{p}\t{v:>12}\t{f}" for s, y, p, v, f in values))


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
PERIOD = rows(("period", "period_abbr", "period_name"),
              *((f"M{m:02d}", name[:3].upper(), name) for m, name in enumerate(MONTHS, start=1)),
              ("M13", "AN AV", "Annual Average"))

# cu: the header rows of cu.txt's section 6 (mapping files) and section 4 (cu.series).
CU_FILES = {
    "cu.series": rows(
        ("series_id", "area_code", "item_code", "seasonal", "periodicity_code", "base_code", "base_period",
         "series_title", "footnote_codes", "begin_year", "begin_period", "end_year", "end_period"),
        ("CUUR0000SA0      ", "0000", "SA0", "U", "R", "S", "1982-84=100",
         "All items in U.S. city average, all urban consumers, not seasonally adjusted", "", "1913", "M01", "2026",
         "M06"),
        ("CUSR0000SAF1     ", "0000", "SAF1", "S", "R", "S", "1982-84=100",
         "Food in U.S. city average, all urban consumers, seasonally adjusted", "", "1967", "M01", "2026", "M06"),
        ("CUUR0100SEFV     ", "0100", "SEFV", "U", "R", "S", "1982-84=100",
         "Food away from home in Northeast, all urban consumers, not seasonally adjusted", "", "1997", "M12",
         "2026", "M06")),
    "cu.area": rows(("area_code", "area_name", "display_level", "selectable", "sort_sequence"),
                    ("0000", "U.S. city average", "0", "T", "1"), ("0100", "Northeast", "0", "T", "5")),
    "cu.item": rows(("item_code", "item_name", "display_level", "selectable", "sort_sequence"),
                    ("SA0", "All items", "0", "T", "2"), ("SAF1", "Food", "1", "T", "3"),
                    ("SEFV", "Food away from home", "2", "T", "70")),
    "cu.periodicity": rows(("periodicity_code", "periodicity_name"), ("R", "Monthly"), ("S", "Semi-Annual")),
    "cu.base": rows(("base_code", "base_name"), ("S", "Current"), ("A", "Alternate")),
    "cu.seasonal": rows(("seasonal_code", "seasonal_text"), ("S", "Seasonally Adjusted"),
                        ("U", "Not Seasonally Adjusted")),
    "cu.period": PERIOD,
    "cu.footnote": rows(("footnote_code", "footnote_text"), ("P", "Preliminary"), ("R", "revised")),
    "cu.data.0.Current": data_file(("CUUR0000SA0", 2026, "M05", "321.465", ""),
                                   ("CUUR0000SA0", 2026, "M06", "322.561", "P"),
                                   ("CUSR0000SAF1", 2026, "M06", "331.2", "P,R"),  # two codes (none in pr)
                                   ("CUUR0100SEFV", 2025, "M13", "402.7", "X"),  # a code without a text
                                   ("CUUR9999ZZZ", 2026, "M06", "1.0", "")),  # a series not in cu.series
    "cu.txt": crlf("Consumer Price Index - All Urban Consumers (CU)", "cu.txt"),
}

# la: la.area is keyed by area_type_code and area_code, and lists an area code under two area types here; srd_code
# has its labels in la.state_region_division (not la.srd), whose only code column is srd_code.
LA_FILES = {
    "la.series": rows(
        ("series_id", "area_type_code", "area_code", "measure_code", "seasonal", "srd_code", "series_title",
         "footnote_codes", "begin_year", "begin_period", "end_year", "end_period"),
        ("LAUST010000000000003", "A", "ST0100000000000", "03", "U", "01",
         "Unemployment Rate: Alabama (U)", "", "1976", "M01", "2026", "M06"),
        ("LAUCN010010000000004", "F", "CN0100100000000", "04", "U", "01",
         "Unemployment: Autauga County, AL (U)", "", "1990", "M01", "2026", "M06"),
        ("LAUST019999999999999", "A", "ST0199999999999", "99", "U", "01",  # codes without a label
         "A series whose area and measure codes have no label", "", "2020", "M01", "2026", "M06")),
    "la.area": rows(("area_type_code", "area_code", "area_text", "display_level", "selectable", "sort_sequence"),
                    ("A", "ST0100000000000", "Alabama", "0", "T", "1"),
                    ("F", "CN0100100000000", "Autauga County, AL", "1", "T", "2"),
                    ("G", "CN0100100000000", "Autauga County, AL (as a city)", "1", "T", "3")),  # repeated code
    "la.area_type": rows(("area_type_code", "areatype_text"), ("A", "Statewide"),
                         ("F", "Counties and equivalents")),
    "la.measure": rows(("measure_code", "measure_text"), ("03", "unemployment rate"), ("04", "unemployment"),
                       ("05", "employment"), ("06", "labor force")),
    "la.seasonal": rows(("seasonal_code", "seasonal_text"), ("S", "Seasonally Adjusted"),
                        ("U", "Not Seasonally Adjusted")),
    "la.state_region_division": rows(("srd_code", "srd_text"), ("01", "Alabama"), ("02", "Alaska")),
    "la.period": PERIOD,
    "la.footnote": rows(("footnote_code", "footnote_text"), ("P", "Preliminary.")),
    "la.data.0.CurrentU00-04": data_file(("LAUST010000000000003", 2026, "M05", "2.9", ""),
                                         ("LAUST010000000000003", 2026, "M06", "3.1", "P"),
                                         ("LAUCN010010000000004", 2026, "M06", "812", "P"),
                                         ("LAUST019999999999999", 2026, "M06", "1", "")),
    "la.txt": crlf("Local Area Unemployment Statistics (LA)", "la.txt"),
}


def two_surveys(root: Path) -> Path:
    state = state_dir(root, CU_FILES, population_json(), survey="cu")
    (state / "s3" / "bls" / "la").mkdir()
    for name, body in LA_FILES.items():
        (state / "s3" / "bls" / "la" / name).write_bytes(body)
    return state


def records(con, sql: str, parameters: list | None = None) -> list[dict]:
    cursor = con.execute(sql, parameters or [])
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


def count(con, view: str) -> int:
    return con.execute(f"SELECT count(*) FROM {catalog.quote(view)}").fetchone()[0]


def test_cu_data_rows_get_their_series_labels_from_the_convention(tmp_path: Path) -> None:
    notes: list[str] = []
    con = sql_command.connect(two_surveys(tmp_path), notes=notes)
    got = records(con, "SELECT * FROM cu_data_0_current_labeled ORDER BY series_id, year, period")
    assert list(got[0]) == [
        "series_id", "year", "period", "period_name", "value", "footnote_codes", "footnote_text",
        "area_code", "area_name", "item_code", "item_name", "seasonal", "seasonal_text", "periodicity_code",
        "periodicity_name", "base_code", "base_name", "series_title"]  # base_period: no cu.base_period, no label
    by_key = {(r["series_id"], r["period"]): r for r in got}
    june = by_key["CUUR0000SA0", "M06"]
    assert (june["area_name"], june["item_name"], june["seasonal_text"], june["periodicity_name"], june["base_name"],
            june["period_name"], june["footnote_text"]) == (
        "U.S. city average", "All items", "Not Seasonally Adjusted", "Monthly", "Current", "June", "Preliminary")
    assert june["series_title"].startswith("All items in U.S. city average")
    assert by_key["CUSR0000SAF1", "M06"]["footnote_text"] == "Preliminary; revised"  # each code decoded
    assert by_key["CUUR0100SEFV", "M13"]["footnote_text"] is None  # X has no text: NULL, never a wrong one
    assert by_key["CUUR0100SEFV", "M13"]["period_name"] == "Annual Average"
    orphan = by_key["CUUR9999ZZZ", "M06"]  # not in cu.series: the row is kept, unlabeled
    assert orphan["area_name"] is None and orphan["period_name"] == "June"
    assert len(got) == count(con, "cu_data_0_current_clean") == 5
    assert not [n for n in notes if n.startswith("cu:")]


def test_la_labels_come_from_repeated_codes_and_an_otherwise_named_file_multiplying_no_row(tmp_path: Path) -> None:
    con = sql_command.connect(two_surveys(tmp_path))
    view = "la_data_0_currentu00_04_labeled"
    got = records(con, f"SELECT * FROM {view} ORDER BY series_id, period")
    assert list(got[0]) == [
        "series_id", "year", "period", "period_name", "value", "footnote_codes", "footnote_text",
        "area_type_code", "areatype_text", "area_code", "area_text", "measure_code", "measure_text", "seasonal",
        "seasonal_text", "srd_code", "srd_text", "series_title"]
    assert len(got) == count(con, "la_data_0_currentu00_04_clean") == 4  # la.area lists CN0100100000000 twice
    county = next(r for r in got if r["series_id"] == "LAUCN010010000000004")
    assert (county["areatype_text"], county["area_text"], county["measure_text"], county["seasonal_text"],
            county["srd_text"], county["period_name"], county["footnote_text"]) == (
        "Counties and equivalents", "Autauga County, AL", "unemployment", "Not Seasonally Adjusted", "Alabama",
        "June", "Preliminary.")  # the least of the repeated code's labels
    unknown = next(r for r in got if r["series_id"] == "LAUST019999999999999")
    assert (unknown["areatype_text"], unknown["area_text"], unknown["measure_text"]) == ("Statewide", None, None)
    assert count(con, "la_series_search") == 3


def test_a_repeated_series_id_multiplies_no_row(tmp_path: Path) -> None:
    files = dict(LA_FILES)
    files["la.series"] = LA_FILES["la.series"] + LA_FILES["la.series"].split(b"\r\n", 1)[1]  # every series twice
    con = sql_command.connect(state_dir(tmp_path, files, population_json(), survey="la"))
    assert count(con, "la_data_0_currentu00_04_labeled") == 4 and count(con, "la_series_search") == 3


def test_the_series_search_view_has_every_label_in_words_and_a_lower_case_search_text(tmp_path: Path) -> None:
    con = sql_command.connect(two_surveys(tmp_path))
    got = records(con, "SELECT * FROM cu_series_search WHERE series_id = 'CUUR0100SEFV'")
    assert got == [{
        "series_id": "CUUR0100SEFV", "area_name": "Northeast", "item_name": "Food away from home",
        "seasonal_text": "Not Seasonally Adjusted", "periodicity_name": "Monthly", "base_name": "Current",
        "series_title": "Food away from home in Northeast, all urban consumers, not seasonally adjusted",
        "search_text": "northeast food away from home not seasonally adjusted monthly current food away from home in "
                       "northeast, all urban consumers, not seasonally adjusted"}]
    found = con.execute(sql_command.find_sql("la_series_search", 2), ["autauga", "unemployment"]).fetchall()
    assert [r[0] for r in found] == ["LAUCN010010000000004"]


def test_missing_mapping_files_are_named_and_their_columns_left_out(tmp_path: Path) -> None:
    files = {n: b for n, b in LA_FILES.items() if n not in ("la.area", "la.state_region_division", "la.footnote")}
    tables = catalog.survey_tables("la", "bls/la/", {n: b.split(b"\n", 1)[0].decode() for n, b in files.items()})
    assert catalog.missing_for_labels("la", tables) == ["la.area", "la.footnote", "la.srd"]
    notes: list[str] = []
    con = sql_command.connect(state_dir(tmp_path, files, population_json(), survey="la"), notes=notes)
    columns = [d[0] for d in con.execute("SELECT * FROM la_data_0_currentu00_04_labeled").description]
    assert "area_text" not in columns and "srd_text" not in columns and "footnote_text" not in columns
    assert {"areatype_text", "measure_text", "period_name"} <= set(columns)
    assert "la: the label views leave out the labels of la.area, la.footnote, la.srd: those files are not mirrored" \
        in notes


def test_a_survey_without_a_series_file_gets_no_label_views(tmp_path: Path) -> None:
    files = {n: b for n, b in CU_FILES.items() if n != "cu.series"}
    tables = catalog.survey_tables("cu", "bls/cu/", {n: b.split(b"\n", 1)[0].decode() for n, b in files.items()})
    assert catalog_labels.label_views("cu", tables) == []
    assert catalog.missing_for_labels("cu", tables) == ["cu.series"]
    notes: list[str] = []
    con = sql_command.connect(state_dir(tmp_path, files, population_json(), survey="cu"), notes=notes)
    names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "cu_data_0_current_clean" in names and not {"cu_data_0_current_labeled", "cu_series_search"} & names
    assert "cu: no _labeled or _series_search views: cu.series is not mirrored" in notes


def test_a_series_file_with_only_a_title_labels_its_data_with_the_title(tmp_path: Path) -> None:
    con = sql_command.connect(state_dir(tmp_path, sample_survey_files("ce"), population_json(), survey="ce"))
    row = records(con, "SELECT * FROM ce_data_0_current_labeled ORDER BY series_id, year, period LIMIT 1")[0]
    assert list(row) == ["series_id", "year", "period", "value", "footnote_codes", "series_title"]
    assert row["series_title"] == "generated series CEU00000001"
    assert count(con, "ce_data_0_current_labeled") == count(con, "ce_data_0_current_clean")
    assert records(con, "SELECT search_text FROM ce_series_search WHERE series_id = 'CEU00000001'") == [
        {"search_text": "generated series ceu00000001"}]


def test_a_survey_whose_name_is_no_bls_code_gets_its_views_under_its_escaped_name(tmp_path: Path) -> None:
    files = {n.replace("cu.", "c-u.", 1): b for n, b in CU_FILES.items()}
    con = sql_command.connect(state_dir(tmp_path, files, population_json(), survey="c-u"))
    part = catalog.survey_part("c-u")
    assert part == "sc_2du_"
    assert count(con, f"{part}_data_0_current_labeled") == 5
    assert count(con, part + catalog.SERIES_SEARCH_SUFFIX) == 3


# The functions the label views call: each is in Trino (Athena engine v3) and DuckDB with the same meaning for these
# arguments (catalog_labels' docstring says why CONCAT is not among them).
PORTABLE_FUNCTIONS = {"MIN", "NULLIF", "TRIM", "SPLIT_PART", "SUBSTR", "COALESCE", "LOWER"}


def test_the_label_views_quote_every_identifier_and_call_only_portable_functions() -> None:
    for survey, files in (("cu", CU_FILES), ("la", LA_FILES)):
        tables = catalog.survey_tables(survey, f"bls/{survey}/", {n: b.split(b"\n", 1)[0].decode()
                                                                   for n, b in files.items()})
        views = catalog_labels.label_views(survey, tables)
        assert [n for n, _ in views][0] == catalog.survey_part(survey) + catalog.SERIES_SEARCH_SUFFIX
        made = {t.clean_view for t in tables}
        for name, select in views:
            assert set(catalog.read_names(select)) <= made, name  # only the _clean views, made before them
            assert set(re.findall(r"\b([A-Za-z_]+)\(", select)) <= PORTABLE_FUNCTIONS, name
            bare = re.sub(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'', "", select)  # identifiers and literals out
            words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", bare))
            assert words <= PORTABLE_FUNCTIONS | {"SELECT", "FROM", "AS", "LEFT", "JOIN", "ON", "GROUP", "BY"}, name
            assert " WITH " not in select and "CONCAT" not in select


@needs_real_data
@pytest.mark.parametrize("snapshot", ["bls_pr_2024-06-06", "bls_pr_2026-08-06"])
def test_every_real_pr_row_is_labeled_once(tmp_path: Path, snapshot: str) -> None:
    files = {p.name: p.read_bytes() for p in (REAL_DATA / snapshot).glob("pr.*")}
    con = sql_command.connect(state_dir(tmp_path, files, NEW_API.read_bytes()))
    labels = ("period_name", "sector_name", "class_text", "measure_text", "duration_text", "seasonal_text")
    for data in ("pr_data_0_current", "pr_data_1_alldata"):
        assert count(con, data + "_labeled") == count(con, data + "_clean")
        unlabeled = con.execute(f"SELECT count(*) FROM {data}_labeled WHERE "
                                + " OR ".join(f"{c} IS NULL" for c in labels)).fetchone()
        assert unlabeled == (0,)
        footnotes = con.execute(f"SELECT DISTINCT footnote_codes, footnote_text FROM {data}_labeled "
                                "ORDER BY footnote_codes NULLS FIRST").fetchall()
        assert footnotes == [(None, None), ("R", "revised")]  # one code, or none, in every real row
    assert count(con, "pr_series_search") == count(con, "pr_series_clean") == 282
    found = con.execute(sql_command.find_sql("pr_series_search", 4), ["output", "per", "hour", "nonfarm"]).fetchall()
    assert "PRS85006092" in [r[0] for r in found]
    assert all("nonfarm" in r[-1] and "output per hour" in r[-1] for r in found)
