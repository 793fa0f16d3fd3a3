"""Ids from vendor answers put into URL paths, one segment each.

A ticket id, page id or scan id comes from another system's response and is then interpolated into the
next request's path. Unescaped, an id like ``../x``, ``a/b`` or ``1?q=1`` changes which resource that
request reaches (or adds a query); ``..`` alone is even resolved away by httpx before sending. ``segment``
makes the id exactly one path segment, whatever it holds.
"""

from __future__ import annotations

from urllib.parse import quote


def segment(value: object) -> str:
    """``value`` as one URL path segment: every reserved character and ``%`` escaped, and a segment of only
    dots (``.``/``..``, which clients and servers resolve as path steps) spelt with ``%2E``. An empty id has
    no segment (it would address the collection): ValueError."""
    text = quote(str(value), safe="")
    if not text:
        raise ValueError("an empty id from the vendor cannot name a resource in a URL path")
    return text.replace(".", "%2E") if text.strip(".") == "" else text
