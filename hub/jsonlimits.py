"""The one nesting limit for JSON the hub accepts, so that what intake stores the pipeline can always encode.

orjson parses up to 1,024 levels but encodes at most 254, and a stored body is encoded again inside
bigger documents (a finding's ``raw``, a delivery snapshot, a template context). A body deeper than
``MAX_DEPTH`` is refused at the door (400 ``too_deep``), where the sender still sees the error; the
margin between ``MAX_DEPTH`` and the encoder's 254 is the room those wrappers need.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 64
ENCODER_DEPTH = 254  # orjson's own limit when encoding (its recursion limit); tests hold MAX_DEPTH well below it


class TooDeepError(ValueError):
    """A JSON document nests deeper than ``MAX_DEPTH``."""

    def __init__(self, limit: int = MAX_DEPTH):
        self.limit = limit
        super().__init__(f"JSON nests deeper than {limit} levels")


def depth(doc: Any) -> int:
    """Nesting depth of a parsed document (a scalar is 0, ``[]`` and ``{}`` are 1). Iterative: never recurses."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def check(doc: Any, limit: int = MAX_DEPTH) -> Any:
    """``doc`` itself, or TooDeepError when it nests deeper than ``limit``."""
    if depth(doc) > limit:
        raise TooDeepError(limit)
    return doc


def loads(data: bytes | str, limit: int = MAX_DEPTH) -> Any:
    """``orjson.loads`` with the nesting limit. The walk is skipped when the text has too few brackets to be
    that deep (one C-speed count; a typical 1 KB event has a dozen)."""
    doc = orjson.loads(data)
    raw = data.encode() if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") > limit:
        check(doc, limit)
    return doc


def parsed_or_text(body: bytes) -> Any:
    """For showing a stored body: the document when it is JSON the hub can encode again, else its text (a body
    stored before this limit existed, or one that is not JSON, is shown as it is instead of crashing the view)."""
    try:
        return loads(body)
    except (orjson.JSONDecodeError, TooDeepError):
        return body.decode("utf-8", "replace")
