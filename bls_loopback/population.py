"""DataUSA's population answer, in its current tesseract shape, for the loopback server, the tests and the bench."""

from __future__ import annotations

import json

POPULATION_PATH = "/tesseract/data.jsonrecords"

# US population by year as DataUSA gives it; 2020 is absent, as in the real API.
POPULATION = {2013: 316128839, 2014: 318857056, 2015: 321418821, 2016: 323127515, 2017: 325719178,
              2018: 327167439, 2019: 328239523, 2021: 331893745}


def population_json(years: dict[int, int] = POPULATION) -> bytes:
    return json.dumps({
        "annotations": {"source_name": "Census Bureau"},
        "page": {"limit": 0, "offset": 0, "total": len(years)},
        "columns": ["Nation ID", "Nation", "Year", "Population"],
        "data": [{"Nation ID": "01000US", "Nation": "United States", "Year": y, "Population": float(p)}
                 for y, p in sorted(years.items())],
    }).encode()
