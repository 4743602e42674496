"""Catalog names (bls_pipeline.catalog): unique across surveys by construction, within Glue's 255 bytes, and a
file or header that cannot have its name is a warning, never an error that stops the catalog."""

from __future__ import annotations

import itertools

from bls_pipeline import catalog

# Directory names the mirror accepts (config._SURVEY: [a-z0-9][a-z0-9_.-]*) chosen to normalise alike.
SURVEYS = ["pr", "pr-", "pr_", "pr.", "pr__", "pr-.", "p-r", "p_r", "spr", "spr_2d", "spr_2d_", "s", "sp", "1a",
           "s1a", "s1a_", "1a_", "la", "l-a", "la2", "a", "a_2d"]
FILES = ["data.0.Current", "data_0_current", "series", "2d.data.0.Current", "_2d_data", "x"]


def test_two_surveys_never_share_a_table_name() -> None:
    names = {}
    for survey, rest in itertools.product(SURVEYS, FILES):
        name = catalog.table_name(survey, f"{survey}.{rest}")
        names.setdefault(name, set()).add(survey)
    assert all(len(surveys) == 1 for surveys in names.values()), {n: s for n, s in names.items() if len(s) > 1}


def test_a_survey_part_is_reversible_and_only_odd_surveys_have_a_double_underscore() -> None:
    parts = {catalog.survey_part(s): s for s in SURVEYS}
    assert len(parts) == len(SURVEYS)
    assert catalog.survey_part("pr") == "pr" and catalog.survey_part("pr-") == "spr_2d_"
    for survey in SURVEYS:
        name = catalog.table_name(survey, f"{survey}.data.0.Current")
        assert ("__" in name) == (survey != catalog.survey_part(survey)), name


def test_long_names_fit_glue_with_room_for_every_view_and_stay_distinct() -> None:
    long_a, long_b = "pr." + "x" * 249, "pr." + "x" * 248 + "y"
    a, b = catalog.table_name("pr", long_a), catalog.table_name("pr", long_b)
    assert a != b and a == catalog.table_name("pr", long_a)
    for name in (a, b):
        assert len(name.encode()) == catalog.TABLE_NAME_BYTES
        assert all(len((name + suffix).encode()) <= catalog.MAX_NAME_BYTES for suffix in catalog.VIEW_SUFFIXES)
    assert catalog.table_name("pr", "pr.data.0.Current") == "pr_data_0_current"  # short names are as they were


def test_odd_header_columns_get_positional_names_and_a_warning_each() -> None:
    warnings: list[str] = []
    columns = catalog.header_columns("series_id\t\tfrom\tvalue\tVALUE\tcolumn_2\t" + "c" * 300 + "\r\n", warnings, "pr.x")
    assert columns == ("series_id", "column_2_2", "column_3", "value", "column_5", "column_2", "column_7")
    assert len(warnings) == 4 and all(w.startswith("'pr.x': column ") for w in warnings)
    assert catalog.header_columns("Seasonal_code\tSeasonal_text\r\n") == ("seasonal_code", "seasonal_text")


def test_a_file_that_cannot_be_a_table_is_a_warning_and_every_other_file_gets_its_table() -> None:
    headers = {"pr.series": "series_id\tx", "pr.SERIES": "series_id\ty", "pr.series.clean": "a\tb",
               "pr.series_search": "a\tb", "pr.--": "a\tb", "pr.class": "class_code\tclass_text",
               "pr.data.0.Current": "series_id\tyear\tperiod\tvalue\tfootnote_codes"}
    found = catalog.survey_catalog("pr", "bls/pr/", headers)
    assert [t.file for t in found.tables] == ["pr.class", "pr.data.0.Current", "pr.series"]
    assert [t.kind for t in found.tables] == ["mapping", "data", "mapping"]
    text = "\n".join(found.warnings)
    assert "'pr.SERIES': no table: it would take the name pr_series, which 'pr.series' has" in text
    assert "'pr.series.clean': no table: it would take the name pr_series_clean" in text
    assert "'pr.series_search': no table: it would take the name pr_series_search, which the pr survey's" in text
    assert "'pr.--': no table: 'pr.--' has no letter or digit" in text


def test_no_survey_file_can_take_a_name_the_catalog_or_another_survey_holds() -> None:
    found = catalog.survey_catalog("datausa", "bls/datausa/", {"datausa.population": "year\tpopulation"},
                                   taken={catalog.POPULATION_TABLE: "the population table"})
    assert found.tables == [] and "which the population table has" in found.warnings[0]


def test_every_identifier_in_a_view_is_quoted() -> None:
    found = catalog.survey_catalog("pr", "bls/pr/", {"pr.odd": "code\torder group\tselect\r\n"})
    (name, select), = catalog.views("pr", found.tables)
    assert name == "pr_odd_clean"
    assert catalog.view_ddl(name, select).startswith('CREATE OR REPLACE VIEW "pr_odd_clean" AS')
    assert 'AS "order_group"' in select and 'FROM "pr_odd"' in select and 'AS "column_3"' in select
    assert catalog.read_names(select) == ["pr_odd"]
