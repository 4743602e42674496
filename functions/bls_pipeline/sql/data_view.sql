-- <data file>_clean: one BLS data file (series_id, year, period, value, footnote_codes), trimmed and typed.
-- Rendered by bls_pipeline.catalog with {table} = the file's table (all columns strings, as read from the file).
-- Runs unchanged on Athena engine v3 (Trino) and DuckDB. Dialect points:
-- * TRIM: Trino removes all whitespace, DuckDB only spaces. BLS pads with spaces, and the CR of a CRLF line end
--   can only reach the last column (DuckDB's CSV reader ends lines at CRLF; Hive text readers at LF), so the last
--   column also loses CHR(13) through REPLACE, which both engines have.
-- * An empty field is '' in Athena's LazySimpleSerDe and NULL in DuckDB's read_csv: NULLIF(TRIM(x), '') makes it
--   NULL in both.
-- * year: DuckDB's CAST('2013.5' AS INTEGER) rounds to 2014 where Trino's fails, so the cast is made only when
--   the field is digits alone (TRANSLATE, in both), as the Lambda's int() requires.
-- * value: TRY_CAST(... AS DECIMAL(38, 6)), never DOUBLE, so that sums are exact as the Lambda's Decimal sums are;
--   a malformed value ('-', '') becomes NULL, where the Lambda counts the row as bad and skips it. Six decimals
--   hold every pr value (at most 3 decimals); a value with more would be rounded by both engines.
SELECT
    NULLIF(TRIM("series_id"), '') AS "series_id",
    CASE WHEN TRIM("year") <> '' AND LENGTH(TRIM("year")) <= 9 AND TRANSLATE(TRIM("year"), '0123456789', '') = ''
         THEN CAST(TRIM("year") AS INTEGER) END AS "year",
    NULLIF(TRIM("period"), '') AS "period",
    TRY_CAST(TRIM("value") AS DECIMAL(38, 6)) AS "value",
    NULLIF(TRIM(REPLACE("footnote_codes", CHR(13), '')), '') AS "footnote_codes"
FROM {table}
WHERE TRIM("series_id") <> ''
