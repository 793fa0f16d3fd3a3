"""Keyset pages in a chosen order, which the console's lists sort by (hub/ui/lists.py): the order a caller names
and the clauses that page through it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sort:
    """The order of a keyset page: by ``key`` (a name the query module maps to an indexed column), then the row's
    unique id, both descending or both ascending, so one index walks the whole order. ``after`` is the (key value,
    id) of the previous page's last row: the cursor carries the value, so a row whose key changed between two pages
    (a finding seen again) cannot make the next page skip or repeat the others, and a deleted row is no problem."""

    key: str
    descending: bool = True
    after: tuple[Any, Any] | None = None


def keyset(column: str, tiebreak: str, sort: Sort) -> tuple[list[str], list[Any], str]:
    """The WHERE clause (none on the first page), its arguments and the ORDER BY of a page in ``sort`` order by
    ``column`` then ``tiebreak``. A row value comparison, which PostgreSQL has too, and which SQLite turns into a
    seek in an index on (column, tiebreak): a deep page costs what the first does."""
    op, way = ("<", "DESC") if sort.descending else (">", "ASC")
    if column == tiebreak:
        where, args = ([f"{tiebreak} {op} ?"], [sort.after[1]]) if sort.after else ([], [])
        return where, args, f"{tiebreak} {way}"
    where, args = ([f"({column}, {tiebreak}) {op} (?, ?)"], list(sort.after)) if sort.after else ([], [])
    return where, args, f"{column} {way}, {tiebreak} {way}"
