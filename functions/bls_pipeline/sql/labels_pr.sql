-- <pr data file>_labeled: each row of a pr data file with its series' readable labels, from pr.series and the
-- mapping files it names (pr.sector, pr.class, pr.measure, pr.duration, pr.seasonal) and pr.period.
-- Rendered by bls_pipeline.catalog with {data} = the data file's _clean view; the mapping views are the _clean
-- views of the real files' header rows (lower-cased: pr.seasonal's header says Seasonal_code, pr.series's column
-- is seasonal). LEFT JOINs: a code without a label keeps its row, with a NULL label.
-- Runs unchanged on Athena engine v3 (Trino) and DuckDB: plain joins on trimmed strings, no dialect points.
SELECT
    d."series_id",
    d."year",
    d."period",
    period."period_name",
    d."value",
    d."footnote_codes",
    series."sector_code",
    sector."sector_name",
    series."class_code",
    class."class_text",
    series."measure_code",
    measure."measure_text",
    series."duration_code",
    duration."duration_text",
    series."seasonal",
    seasonal."seasonal_text"
FROM {data} AS d
LEFT JOIN "pr_series_clean" AS series ON series."series_id" = d."series_id"
LEFT JOIN "pr_sector_clean" AS sector ON sector."sector_code" = series."sector_code"
LEFT JOIN "pr_class_clean" AS class ON class."class_code" = series."class_code"
LEFT JOIN "pr_measure_clean" AS measure ON measure."measure_code" = series."measure_code"
LEFT JOIN "pr_duration_clean" AS duration ON duration."duration_code" = series."duration_code"
LEFT JOIN "pr_seasonal_clean" AS seasonal ON seasonal."seasonal_code" = series."seasonal"
LEFT JOIN "pr_period_clean" AS period ON period."period" = d."period"
