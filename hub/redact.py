"""Which header values are secrets, and copies of headers with those values replaced."""

from __future__ import annotations

import re
from collections.abc import Mapping

REDACTED = "[redacted]"
_SECRET_HEADER = re.compile(r"auth|token|secret|signature|passw|api-?key|cookie|session|hmac|credential", re.IGNORECASE)
_known: dict[str, bool] = {}


def is_secret_header(name: str) -> bool:
    """True for authorization, cookies, tokens, signatures, API keys and the like (any case)."""
    name = name.lower()
    known = _known.get(name)
    if known is None:
        known = bool(_SECRET_HEADER.search(name))
        if len(_known) < 4096:
            _known[name] = known
    return known


def redact_headers(headers: Mapping[str, str], extra: frozenset[str] = frozenset()) -> dict[str, str]:
    """Copy of the headers with every secret-bearing value replaced (names are kept, for debugging)."""
    return {k: REDACTED if k in extra or is_secret_header(k) else v for k, v in headers.items()}


CLIP = 256


def clip(value: object, limit: int = CLIP) -> str:
    """A client-controlled value as it may be logged or echoed: at most ``limit`` characters, then how many more.

    Paths, header values, user agents and error reasons come from whoever connects; logged whole, one request
    with a 64 MiB header wrote 64 MiB of log. Every such value goes through here."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more]"


def loggable_headers(headers: Mapping[str, str], extra: frozenset[str] = frozenset(), limit: int = 4096) -> str:
    """Headers for a log line: secrets redacted, each value clipped, the whole line bounded by ``limit``."""
    return clip(str({clip(k, 64): clip(v) for k, v in redact_headers(headers, extra).items()}), limit)
