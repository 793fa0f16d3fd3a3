"""What the query modules share: cursor rows as dicts, and the WHERE clauses of the filters a caller gave."""

from __future__ import annotations

from typing import Any

from hub.store.conn import Cursor


def rows(cur: Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def given(*filters: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """The ``(clause, value)`` filters whose value is not None, as WHERE clauses and their arguments."""
    chosen = [(clause, value) for clause, value in filters if value is not None]
    return [c for c, _ in chosen], [v for _, v in chosen]
