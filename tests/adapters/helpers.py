"""Build stored events the way the receiver stores them, and parse them with an adapter."""

from __future__ import annotations

from typing import Any

import orjson

from hub.adapters import Parsed, StoredEvent, adapter_class


def stored(body: Any, source: str = "test") -> StoredEvent:
    """A StoredEvent whose body is ``body`` as JSON bytes (or the bytes given)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return StoredEvent(id="evt_test", source=source, received_at="2026-03-10T09:14:23.000Z",
                       content_type="application/json", headers={}, body=raw, verified_by="hmac-sha256")


def parse(adapter: str, body: Any) -> Parsed:
    """Parse ``body`` with the built-in adapter called ``adapter`` (looked up through BUILTIN)."""
    return adapter_class(adapter)("test", None).parse(stored(body))
