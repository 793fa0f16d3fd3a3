"""Cursor rows as dicts (column name -> value), shared by the query modules."""

from __future__ import annotations

import sqlite3
from typing import Any


def rows(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
