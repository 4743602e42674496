"""A small generated directory shaped like BLS's `pr` (same file names, columns, padding and line ends), so the
pipeline can be tried offline without a copy of the real files. The numbers are made up, deterministically."""

from __future__ import annotations

import random

SERIES = ("PRS30006011", "PRS30006012", "PRS30006031", "PRS30006032", "PRS85006092", "PRS85006152")
YEARS = range(2010, 2026)


def sample_pr_files(seed: int = 2026) -> dict[str, bytes]:
    rng = random.Random(seed)
    data = ["series_id        \tyear\tperiod\t       value\tfootnote_codes"]
    for series in SERIES:
        for year in YEARS:
            quarters = [round(rng.uniform(-4.0, 6.0), 1) for _ in range(4)]
            for quarter, value in enumerate(quarters, start=1):
                data.append(f"{series:<17}\t{year}\tQ0{quarter}\t{value:>12}\t")
            data.append(f"{series:<17}\t{year}\tQ05\t{round(sum(quarters) / 4, 1):>12}\t")
    series_rows = ["series_id        \tsector_code\tclass_code\tmeasure_code\tduration_code\tseasonal"]
    series_rows += [f"{s:<17}\t{s[3:7]}\t{s[7]}\t{s[8:10]}\t{s[10]}\tS" for s in SERIES]
    files = {
        "pr.data.0.Current": data,
        "pr.series": series_rows,
        "pr.period": ["period\tperiod_abbr\tperiod_name", *(f"Q0{q}\tQTR{q}\tQuarter {q}" for q in range(1, 5)),
                      "Q05\tAN AV\tAnnual Average"],
        "pr.class": ["class_code\tclass_text\tdisplay_level\tselectable\tsort_sequence", "6\tAll workers\t0\tT\t1"],
        "pr.footnote": ["footnote_code\tfootnote_text"],
        "pr.txt": ["A generated sample shaped like https://download.bls.gov/pub/time.series/pr/ (made-up numbers)."],
    }
    return {name: ("\r\n".join(lines) + "\r\n").encode() for name, lines in files.items()}


def sample_survey_files(survey: str, seed: int = 2026) -> dict[str, bytes]:
    """A tiny generated directory for any other survey (e.g. ce): a readme, a series file and a data file."""
    rng = random.Random(f"{seed}-{survey}")
    series = [f"{survey.upper()}U{n:08d}" for n in range(1, 4)]
    data = ["series_id        \tyear\tperiod\t       value\tfootnote_codes"]
    data += [f"{s:<17}\t{year}\tM{month:02d}\t{round(rng.uniform(50, 150), 1):>12}\t"
             for s in series for year in range(2024, 2026) for month in range(1, 13)]
    files = {
        f"{survey}.data.0.Current": data,
        f"{survey}.series": ["series_id        \tseries_title", *(f"{s:<17}\tgenerated series {s}" for s in series)],
        f"{survey}.txt": [f"A generated sample standing for the BLS {survey} survey (made-up numbers)."],
    }
    return {name: ("\r\n".join(lines) + "\r\n").encode() for name, lines in files.items()}
