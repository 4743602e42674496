"""One measurement of the three reports: `python bench/reports_child.py pipeline|pandas DATA POPULATION`.

Run as a script, not as part of the bench package, so that it imports nothing but what the implementation
under test needs. Prints a digest of the answers and the process's peak RSS (VmHWM) as JSON.
"""

import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SERIES, PERIOD = "PRS30006032", "Q01"


def pipeline_reports(data_path: str, population_path: str) -> dict:
    from bls_pipeline.analytics import load_reports_from_files

    reports = load_reports_from_files(data_path, population_path, SERIES, PERIOD)
    return {
        "mean": reports.population_stats["mean"],
        "stddev": reports.population_stats["stddev"],
        "best": {r["series_id"]: (r["year"], r["value"]) for r in reports.best_year_by_series},
        "series": {r["year"]: (r["value"], r["Population"]) for r in reports.series_population},
    }


def pandas_reports(data_path: str, population_path: str) -> dict:
    """The three reports as most pandas users would write them."""
    import pandas as pd

    data = pd.read_csv(data_path, sep="\t", dtype=str)
    data.columns = data.columns.str.strip()
    data = data.apply(lambda column: column.str.strip())
    data["year"] = data["year"].astype(int)
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    data = data.dropna(subset=["value"])

    with open(population_path, "rb") as handle:
        records = json.load(handle)["data"]
    population = pd.DataFrame(records)
    population["Year"] = population["ID Year"] if "ID Year" in population else population["Year"]
    population["Year"] = population["Year"].astype(int)
    population["Population"] = population["Population"].round().astype("int64")

    window = population[(population["Year"] >= 2013) & (population["Year"] <= 2018)]["Population"]

    quarters = data[data["period"].isin(["Q01", "Q02", "Q03", "Q04"])]
    sums = quarters.groupby(["series_id", "year"], as_index=False)["value"].sum()
    best = sums.sort_values(["series_id", "value", "year"], ascending=[True, False, True]).drop_duplicates("series_id")

    chosen = data[(data["series_id"] == SERIES) & (data["period"] == PERIOD)]
    joined = chosen.merge(population[["Year", "Population"]], left_on="year", right_on="Year", how="left")
    return {
        "mean": float(window.mean()),
        "stddev": float(window.std()),
        "best": {row.series_id: (int(row.year), float(row.value)) for row in best.itertuples()},
        "series": {int(row.year): (float(row.value), None if pd.isna(row.Population) else int(row.Population))
                   for row in joined.itertuples()},
    }


def digest(answer: dict) -> str:
    """A rounding-tolerant fingerprint of the three reports, to check the two implementations agree."""
    best = sorted((s, y, round(float(v), 6)) for s, (y, v) in answer["best"].items())
    series = sorted((y, round(float(v), 6), p) for y, (v, p) in answer["series"].items())
    return json.dumps([round(answer["mean"], 3), round(answer["stddev"], 3), best, series])


def peak_rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


if __name__ == "__main__":
    kind, data_path, population_path = sys.argv[1:4]
    answer = (pipeline_reports if kind == "pipeline" else pandas_reports)(data_path, population_path)
    print(json.dumps({"digest": digest(answer), "peak_rss": peak_rss()}))
