-- Report 3: one series' value in one period, by year, with that year's US population (NULL for a year DataUSA does
-- not have, e.g. 2020). The two ? are the series and the period (the settings REPORT_SERIES_ID and REPORT_PERIOD,
-- by default PRS30006032 and Q01): Athena takes them as --execution-parameters "'PRS30006032'" "'Q01'", DuckDB as
-- execute(sql, [series, period]).
-- Rendered by bls_pipeline.catalog with {data} = the reports' data file's _clean view and {population} = the
-- normalized population table. Same rows as the Analytics Lambda's series_population.
-- Runs unchanged on Athena engine v3 (Trino) and DuckDB. Dialect points:
-- * Output column names: Trino lower-cases every identifier, so the Lambda's "Population" is population here.
SELECT d."series_id", d."year", d."period", d."value", p."population"
FROM {data} AS d
LEFT JOIN {population} AS p ON p."year" = d."year"
WHERE d."series_id" = ? AND d."period" = ? AND d."year" IS NOT NULL AND d."value" IS NOT NULL
ORDER BY d."year"
