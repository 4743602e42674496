-- Report 2: for each series, the year with the largest sum of value over the quarters Q01-Q04 (pr.period: Q05 is
-- the annual average, not a quarter), ties to the earliest year; ordered by series_id.
-- Rendered by bls_pipeline.catalog with {data} = the reports' data file's _clean view (value DECIMAL(38, 6), so the
-- sums are exact, as the Lambda's Decimal sums). Same rows as the Analytics Lambda's best_year_by_series.
-- Runs unchanged on Athena engine v3 (Trino) and DuckDB. Dialect points:
-- * SUM of DECIMAL(38, 6) is DECIMAL(38, 6) in both (not DOUBLE).
-- * ROW_NUMBER() with an explicit ORDER BY value DESC, year ASC decides ties the same way in both; the final
--   ORDER BY series_id compares strings by code point in both (the Lambda's sorted()).
WITH sums AS (
    SELECT "series_id", "year", SUM("value") AS "value"
    FROM {data}
    WHERE "period" IN ('Q01', 'Q02', 'Q03', 'Q04') AND "year" IS NOT NULL AND "value" IS NOT NULL
    GROUP BY "series_id", "year"
),
ranked AS (
    SELECT "series_id", "year", "value",
           ROW_NUMBER() OVER (PARTITION BY "series_id" ORDER BY "value" DESC, "year" ASC) AS place
    FROM sums
)
SELECT "series_id", "year", "value"
FROM ranked
WHERE place = 1
ORDER BY "series_id"
