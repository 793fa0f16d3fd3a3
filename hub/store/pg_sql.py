"""The query modules' SQL as psycopg takes it: they are written once, in SQLite's spelling, for both engines."""

from __future__ import annotations

import functools
import re

_TOKEN = re.compile(r"'(?:[^']|'')*'|\?|(?<!:):([A-Za-z_]\w*)|%|\bLIKE\b")


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """SQLite's placeholders as psycopg's: ``?`` -> ``%s``, ``:name`` -> ``%(name)s``, a literal ``%`` -> ``%%``;
    ``LIKE`` -> ``ILIKE`` (SQLite's LIKE ignores the case of ASCII letters). String literals keep their text."""

    def one(m: re.Match[str]) -> str:
        text = m.group(0)
        if text.startswith("'"):
            return text.replace("%", "%%")
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if text == "LIKE":
            return "ILIKE"
        return f"%({m.group(1)})s"

    return _TOKEN.sub(one, sql)


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's own ``$1``, ``$2``... (psycopg's raw cursors send the text as it is: a long
    statement with many parameters is not parsed again on every execution, as ``%s`` ones are)."""
    count = 0

    def one(m: re.Match[str]) -> str:
        nonlocal count
        if m.group(0) != "?":
            return m.group(0)
        count += 1
        return f"${count}"

    return _TOKEN.sub(one, sql)
