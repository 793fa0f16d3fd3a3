"""What a poll run hands the pipeline besides its pages, and the one place that knows how it is stored.

A poll run stores each page it reads as an event of its source (``verified_by: poll``); a page of a full import
carries its scope. A complete full import ends with a ``PollComplete`` mark, stored as an event of its own kind
(``verified_by: poll.complete``) so that it is processed in commit order, after every page of the run: the
findings of the scope that no page of the run reported are then resolved. No sender can store either kind: the
receiver's events carry the name of the signature scheme that verified them, the API's ``api``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from hub.store.events import NewEvent, StoredEvent

PAGE = "poll"
COMPLETE = "poll.complete"
_URL, _SCOPE = "x-hub-poll-url", "x-hub-poll-scope"


def page(source: str, now: str, key: str, body: bytes, url: str, scope: str | None) -> NewEvent:
    """A page read by a poll run; ``scope`` when the run is a full import (its findings are the whole set)."""
    headers = orjson.dumps({_URL: url, **({_SCOPE: scope} if scope else {})}).decode()
    return NewEvent(source, now, key, "application/json", headers, body, PAGE)


def page_scope(event: StoredEvent) -> str | None:
    """The full-import scope a stored page belongs to, if any."""
    return event.headers.get(_SCOPE) if event.verified_by == PAGE else None


@dataclass(frozen=True, slots=True)
class PollComplete:
    """A full import of ``scope`` that started at ``since`` has stored its last page."""

    scope: str
    since: str

    def event(self, source: str, now: str) -> NewEvent:
        body = orjson.dumps({"scope": self.scope, "since": self.since})
        return NewEvent(source, now, f"{COMPLETE}:{self.since}", "application/json", "{}", body, COMPLETE)

    @classmethod
    def of(cls, event: StoredEvent) -> PollComplete | None:
        """The mark a stored event is, or None for any other event."""
        if event.verified_by != COMPLETE:
            return None
        doc = event.data
        return cls(str(doc["scope"]), str(doc["since"]))
