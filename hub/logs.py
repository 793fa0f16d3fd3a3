"""Logging setup: text or JSON lines, the ids a line is about, and a quiet scheduler.

``logging: {format: json}`` writes one JSON object per line: ``ts, level, logger, message`` and, when the line is
about one, ``event_id``, ``delivery_id``, ``finding_id``, ``target``, ``source``, ``route``. A line gets them
from ``extra=`` or from the context (``about(...)``), which the pipeline sets around each event and the
delivery worker around its target and each delivery: so ``grep evt_12`` or a log query on ``event_id`` finds
an event's lines, and its deliveries' lines carry the finding and delivery ids that link them. With
``console.public_url`` set, a JSON line also carries each of those three ids' console page (``event_url``,
``delivery_url``, ``finding_url``): made here from the ids, so no call site knows about them.

APScheduler logs two INFO lines per job run ("Running job", "executed successfully"): with a job every 5 s
they were 255 of 267 lines in seven minutes. Below DEBUG its loggers keep only warnings and errors (a
missed or failed run still shows).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

import orjson

FIELDS = ("event_id", "delivery_id", "finding_id", "target", "source", "route")
PAGES = {"event_id": ("event_url", "events"), "delivery_id": ("delivery_url", "deliveries"),
         "finding_id": ("finding_url", "findings")}
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("hub_log_context", default={})  # noqa: B039
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("apscheduler",)  # loggers whose INFO is per-run noise


@contextlib.contextmanager
def about(**ids: str | None) -> Iterator[None]:
    """Lines logged inside (in this task and the tasks it starts) carry these ids."""
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**ids: str | None) -> None:
    """Like ``about``, for the rest of the current task (a worker's loop binds its target once)."""
    _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})


class ContextFilter(logging.Filter):
    """Copies the context's ids onto each record (``extra=`` wins): both formatters read them from there."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Values are the already formatted message and the ids: nothing else of the
    record (its args may hold whole payloads), so what the text format keeps out stays out here too."""

    def __init__(self, public_url: str | None = None):
        super().__init__()
        self.public_url = public_url

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = str(value)
        if self.public_url:
            for key, (url_key, page) in PAGES.items():
                if key in doc:
                    doc[url_key] = f"{self.public_url}/ui/{page}/{quote(doc[key], safe='')}"
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def setup(level: str = "info", fmt: str = "text", stream: IO[str] | None = None,
          public_url: str | None = None) -> logging.Handler:
    """Replace the root handlers with one writing ``fmt`` to ``stream`` (stderr); returns it. ``public_url``
    (``console.public_url``) adds the ids' console pages to JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(public_url) if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    for name in QUIET:
        logging.getLogger(name).setLevel(quiet)
    return handler
