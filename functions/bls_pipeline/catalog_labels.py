"""The label views of a survey's data tables (<data table>_labeled): each data row with its series' labels in words.

For now only a survey with a hand-written sql/labels_<survey>.sql (pr) has them.
"""

from __future__ import annotations

from typing import Iterable

from . import catalog


def label_views(survey: str, tables: Iterable[catalog.Table]) -> list[tuple[str, str]]:
    """(view name, SELECT) of the survey's label views, each after the views it reads; a view whose mapping files
    are not all mirrored is left out."""
    tables = list(tables)
    labels_file = catalog.SQL_DIR / f"labels_{survey}.sql"
    if not labels_file.is_file():
        return []
    names = {t.clean_view for t in tables}
    found = []
    for table in (t for t in tables if t.kind == "data"):
        select = catalog.sql_text(labels_file.stem).format(data=catalog.quote(table.clean_view))
        if set(catalog.read_names(select)) <= names:
            found.append((table.name + catalog.LABELED_SUFFIX, select))
    return found


def missing_for_labels(survey: str, tables: Iterable[catalog.Table]) -> list[str]:
    """The views the survey's label views read that its tables do not give (empty: the label views exist)."""
    labels_file = catalog.SQL_DIR / f"labels_{survey}.sql"
    if not labels_file.is_file():
        return []
    have = {t.clean_view for t in tables}
    select = catalog.sql_text(labels_file.stem).format(data=catalog.quote("data"))
    return sorted(n for n in catalog.read_names(select) if n not in have | {"data"})
