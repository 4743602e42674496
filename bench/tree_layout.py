"""A BLS time.series tree of 60 surveys and 3,000 files for the "tree" bench row (issue 17), with sizes drawn from
real BLS directories.

Sizes, by kind of file:
* the real `pr` directory (bls_pr_2024-06-06, the complete 12-file set in ../shared/data/real): its mapping files
  (pr.class ... pr.sector, 40 B to 745 B), its series file (15,657 B), its documentation (pr.txt, 18,343 B) and its
  data files (1.5 MB and 3.1 MB). Each generated file of a kind takes one of its kind's real sizes, times a factor
  drawn log-uniformly from 1/4 to 4 (surveys differ in series counts), data files from 1/64 to 1/4: the real tree is
  tens of GB, more than this machine can push through twice per contender, so the ~2,900 ordinary data files are
  kept smaller than real ones (the tree is about 1.6 GB, 1.0 GB of it in the three large files);
* the largest files: sizes the BLS listings showed on 2026-09-30, as published in a public measurement of LABSTAT
  (ce.data.0.AllCESSeries 351.1 MB, la.data.64.County 337.1 MB, oe.data.0.Current 331.5 MB; and, in the same
  surveys, cu.data.0.Current 49.0 MB, wp.data.0.Current 71.8 MB, pc.data.0.Current 64.5 MB, jt.data.1.AllItems 34.5 MB).
The bodies are generated on the fly (bench/source.py GeneratedBody), never held in memory.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# bls_pr_2024-06-06 (../shared/data/real/SOURCES.md), bytes.
PR_SIZES = {
    "mapping": (102, 562, 176, 40, 745, 146, 79, 263),  # class, contacts, duration, footnote, measure, period, ...
    "series": (15_657,),
    "doc": (18_343,),
    "data": (1_504_795, 3_128_389),
}
MB = 1_000_000
# The largest files of the tree: (survey, name, bytes), from the 2026-09-30 listings.
LARGE_FILES = (
    ("ce", "ce.data.0.AllCESSeries", int(351.1 * MB)),
    ("la", "la.data.64.County", int(337.1 * MB)),
    ("oe", "oe.data.0.Current", int(331.5 * MB)),
)
MEDIUM_FILES = (
    ("cu", "cu.data.0.Current", int(49.0 * MB)),
    ("wp", "wp.data.0.Current", int(71.8 * MB)),
    ("pc", "pc.data.0.Current", int(64.5 * MB)),
    ("jt", "jt.data.1.AllItems", int(34.5 * MB)),
)
# LABSTAT's directory names (68 in all); the first 60.
SURVEYS = (
    "ap", "bd", "bg", "bp", "cc", "cd", "ce", "cf", "ch", "ci", "cm", "cs", "cu", "cw", "cx", "ec", "ei", "en", "ep",
    "fm", "fw", "gg", "gp", "hc", "ii", "in", "ip", "is", "jl", "jt", "la", "le", "li", "ln", "lu", "mp", "mw", "nb",
    "nc", "nw", "oe", "or", "pc", "pd", "pr", "sa", "sh", "si", "sm", "su", "tu", "wd", "wm", "wp", "ws", "nd", "nl",
    "ni", "ml", "fi",
)
MAPPING_NAMES = ("area", "area_type", "class", "contacts", "duration", "footnote", "industry", "item", "measure",
                 "occupation", "period", "product", "seasonal", "sector", "state", "supersector", "datatype", "base",
                 "characteristic", "component", "group", "ownership", "size", "race", "sex", "age")


@dataclass(frozen=True)
class TreeFile:
    survey: str
    name: str
    size: int


def tree_layout(surveys: int = 60, files: int = 3000, scale: float = 1.0, seed: int = 17) -> list[TreeFile]:
    """`files` files over `surveys` surveys: each survey has its documentation, series, mapping and data files;
    the named large files keep their real sizes times `scale` (the quick mode's smaller tree), the others their
    kind's real sizes times a random factor."""
    if not 1 <= surveys <= len(SURVEYS) or files < 4 * surveys:
        raise ValueError(f"at most {len(SURVEYS)} surveys, and at least 4 files per survey")
    rng = random.Random(seed)
    names = sorted(SURVEYS[:surveys])
    counts = _split(files, len(names), rng)
    fixed = {(s, n): size for s, n, size in (*LARGE_FILES, *MEDIUM_FILES) if s in names}
    layout: list[TreeFile] = []
    for survey, count in zip(names, counts):
        own = [(n, int(size * scale)) for (s, n), size in fixed.items() if s == survey]
        plan = [(f"{survey}.txt", _drawn(rng, "doc")), (f"{survey}.series", _drawn(rng, "series"))] + own
        mappings = min(len(MAPPING_NAMES), max(1, (count - len(plan)) // 3))
        plan += [(f"{survey}.{m}", _drawn(rng, "mapping")) for m in rng.sample(MAPPING_NAMES, mappings)]
        index = 0
        while len(plan) < count:
            name = f"{survey}.data.{index}.Part{index:03d}"
            index += 1
            if all(name != n for n, _ in plan):
                plan.append((name, _drawn(rng, "data")))
        layout += [TreeFile(survey, name, size) for name, size in plan]
    return layout


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` as `parts` whole numbers of at least 4, spread unevenly as BLS directories are."""
    weights = [rng.lognormvariate(0, 0.6) for _ in range(parts)]
    spare = total - 4 * parts
    counts = [4 + int(spare * w / sum(weights)) for w in weights]
    for i in range(total - sum(counts)):
        counts[i % parts] += 1
    return counts


FACTORS = {"data": (1 / 64, 1 / 4)}  # every other kind: (1/4, 4)


def _drawn(rng: random.Random, kind: str) -> int:
    low, high = FACTORS.get(kind, (0.25, 4.0))
    return max(1, int(rng.choice(PR_SIZES[kind]) * math.exp(rng.uniform(math.log(low), math.log(high)))))
