"""The error class of a failed delivery attempt: what groups failures that one fix ends (docs/console.md, Failures).

Two attempts belong together when the vendor refused them for the same reason, not when their texts are equal:
reasons carry record ids, counts, quoted field values and times. The class is the HTTP status plus the vendor's own
error code where a connector puts one in the reason (Splunk HEC ``HTTP 400 code 7 (...)``, SecureEndpoint and
Neuro ``HTTP 404 E404_NOT_FOUND: ...``); without a code it is the reason with quoted values, ids and numbers
replaced by placeholders, so ``item 1234 not found`` and ``item 98 not found`` are one class.
"""

from __future__ import annotations

import re

MAX_CLASS = 160  # characters: a reason's tail past this is detail, not what tells classes apart

_HEC_CODE = re.compile(r"^HTTP (\d{3}) code (\d+)\b")
_VENDOR_CODE = re.compile(r"^HTTP (\d{3}) ([A-Za-z][A-Za-z0-9_.-]*[A-Za-z0-9_]):")
_NORMALIZE = (  # in order: quoted values first (they may hold anything), then ids, then any number left
    (re.compile(r'"[^"]*"'), '"…"'),
    (re.compile(r"'[^']*'"), "'…'"),
    (re.compile(r"`[^`]*`"), "`…`"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<id>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ][0-9:.]+Z?"), "<time>"),
    (re.compile(r"\b(?:evt|fnd|dlv)_\w+"), "<id>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b"), "<id>"),
    (re.compile(r"(?<![\d.])(?<!HTTP )\d+(?:\.\d+)?"), "N"),  # not the status after "HTTP "
    (re.compile(r"\s+"), " "),
)


def error_class(status: int | None, reason: str | None) -> str:
    """The class of an attempt that failed with HTTP ``status`` (None: no answer) and ``reason``."""
    text = (reason or "").strip()
    if found := _HEC_CODE.match(text):
        return f"HTTP {found[1]} code {found[2]}"
    if found := _VENDOR_CODE.match(text):
        return f"HTTP {found[1]} {found[2]}"
    for pattern, placeholder in _NORMALIZE:
        text = pattern.sub(placeholder, text)
    text = text.strip()[:MAX_CLASS] or "no reason given"
    if status is not None and not text.startswith("HTTP "):
        return f"HTTP {status}: {text}"
    return text
