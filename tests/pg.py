"""PostgreSQL for tests: a fresh schema per test on the server ``HUB_TEST_PG_URL`` names, dropped afterwards.

Without the variable the PostgreSQL tests skip, saying how to run them; ``.ci/run`` sets it (and fails when the
server cannot be reached there). ``HUB_TEST_STORE=postgres`` runs the tests that build a hub from the shared
config fixture on PostgreSQL too (see tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

PG_URL = os.environ.get("HUB_TEST_PG_URL", "")
SKIP_REASON = ("PostgreSQL tests need a server: set HUB_TEST_PG_URL=postgresql://127.0.0.1:5432/test (a user that "
               "may create schemas), as .ci/run does")
requires_pg = pytest.mark.skipif(not PG_URL, reason=SKIP_REASON)
ALL_ON_PG = os.environ.get("HUB_TEST_STORE") == "postgres"
current: list[str] = []  # under ALL_ON_PG, the running test's schema URL (conftest sets it): base_config uses it


def schema_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose connections see only a new, empty schema."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield schema_url(PG_URL, name)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
