"""A SecureEndpoint-shaped paged list API for bench/sources.py: GET /v1/findings?page=&per_page=.

FAKE_LIST_TOTAL findings (default 5000), built once; answers carry X-RateLimit-* headers.
"""

from __future__ import annotations

import os
import time

import orjson

TOTAL = int(os.environ.get("FAKE_LIST_TOTAL", "5000"))
ROWS = [{"id": f"fnd_{i:06d}", "cve": f"CVE-2024-{i % 90000:05d}", "severity": ["critical", "high", "medium"][i % 3],
         "cvss_score": 9.1, "affected_assets": 2, "software": f"pkg-{i} 1.0", "eol_date": "2020-01-01",
         "status": "open", "ticket_id": None} for i in range(TOTAL)]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
    page, per_page = int(query.get("page", 1)), min(int(query.get("per_page", 25)), 100)
    body = orjson.dumps({"data": ROWS[(page - 1) * per_page: page * per_page],
                         "meta": {"total": TOTAL, "page": page, "per_page": per_page}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-ratelimit-limit", b"100000"), (b"x-ratelimit-remaining", b"99999"),
               (b"x-ratelimit-reset", str(int(time.time()) + 60).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
