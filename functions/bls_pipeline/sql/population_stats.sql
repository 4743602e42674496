-- Report 1: the mean and the sample standard deviation of the US population, 2013-2018 inclusive.
-- Rendered by bls_pipeline.catalog with {population} = the table over the normalized population copy
-- (JSON lines {"year": ..., "population": ...}). Same numbers as the Analytics Lambda's population_stats.
-- Runs unchanged on Athena engine v3 (Trino) and DuckDB. Dialect points:
-- * Not AVG or STDDEV_SAMP: AVG of a DECIMAL is a DECIMAL of the input's scale in Trino (so rounded to a whole
--   person) and a DOUBLE in DuckDB, and STDDEV_SAMP runs a floating-point update per row in both, which misses the
--   Lambda's figure by a few units in the last place (DuckDB: 4158441.040908092 for the Lambda's ...095).
--   The Lambda (statistics.fmean, statistics.stdev) sums exactly and rounds once; so does this query: the sums
--   are exact DECIMAL(38, 0) integers, the mean is one DOUBLE division (bit-identical to fmean), and the
--   variance n*sum(p^2) - sum(p)^2 over n(n-1) is exact before its one division and SQRT. That is two roundings
--   where statistics.stdev makes one: the stddev equals the Lambda's on the real and the sample populations, and
--   is at most one unit in the last place off on others (tests/test_sql.py measures both).
-- * Division of DECIMALs is a DOUBLE in DuckDB and a DECIMAL in Trino: every division here is of a DOUBLE.
-- * missing_years is an array in both (ARRAY_AGG with ORDER BY and FILTER); NULL when no year is missing.
WITH wanted AS (
    SELECT "year" FROM (VALUES (2013), (2014), (2015), (2016), (2017), (2018)) AS years ("year")
),
window_years AS (
    SELECT wanted."year", CAST(p."population" AS DECIMAL(38, 0)) AS "population"
    FROM wanted
    LEFT JOIN {population} AS p ON p."year" = wanted."year"
),
sums AS (
    SELECT
        COUNT("population") AS n,
        SUM("population") AS total,
        SUM("population" * "population") AS total_of_squares,
        ARRAY_AGG("year" ORDER BY "year") FILTER (WHERE "population" IS NULL) AS missing_years
    FROM window_years
)
SELECT
    2013 AS first_year,
    2018 AS last_year,
    n AS years_used,
    missing_years,
    CASE WHEN n > 0 THEN CAST(total AS DOUBLE) / n END AS mean,
    CASE WHEN n > 1 THEN SQRT(CAST(n * total_of_squares - total * total AS DOUBLE) / (n * (n - 1))) END AS stddev
FROM sums
