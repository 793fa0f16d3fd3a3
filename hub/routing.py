"""Routes compiled once at load: ``match(kind, source, context)`` -> the (route, target) pairs to deliver to.

A route whose ``when`` fails on an event (a type error, a field missing from this event) is skipped for
that event alone: the other routes still match and deliver. Each skip is counted in
``hub_route_errors_total{route}`` and logged at WARNING, at most once a minute per route (a broken route
fails on every event; the log would otherwise grow as fast as the traffic).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from hub import templating
from hub.config import RouteConfig
from hub.errors import TemplateError

log = logging.getLogger("hub.routing")

LOG_EVERY_SECS = 60.0
_ID_KEYS = {"evt": "event_id", "fnd": "finding_id", "dlv": "delivery_id"}  # id prefix -> JSON log field (hub/logs.py)


@dataclass(frozen=True)
class Route:
    name: str
    on: frozenset[str]
    sources: frozenset[str] | None
    when: Callable[..., Any] | None
    when_text: str | None
    targets: tuple[str, ...]

    @classmethod
    def compile(cls, cfg: RouteConfig) -> Route:
        when = templating.compile_expression(cfg.when) if cfg.when else None
        return cls(cfg.name, frozenset(cfg.on), frozenset(cfg.from_) if cfg.from_ is not None else None, when,
                   cfg.when, tuple(cfg.to))

    def matches(self, kind: str, source: str, context: dict[str, Any]) -> bool:
        if kind not in self.on or (self.sources is not None and source not in self.sources):
            return False
        if self.when is None:
            return True
        try:
            return bool(templating.evaluate(self.when, **context))
        except TemplateError as exc:
            raise TemplateError(f"route {self.name}: `when` failed: {exc}") from None


class Router:
    def __init__(self, routes: list[RouteConfig], errors: Counter | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.routes = [Route.compile(r) for r in routes]
        self.kinds = frozenset(k for r in self.routes for k in r.on)
        self.errors, self.clock = errors, clock
        self._logged: dict[str, float] = {}  # route -> when its last skip was logged
        self._quiet: dict[str, int] = {}  # route -> skips not logged since

    def wants(self, kind: str) -> bool:
        return kind in self.kinds

    def match(self, kind: str, source: str, context: dict[str, Any]) -> list[tuple[str, str]]:
        """(route, target) pairs, in config order, each pair once; a route whose ``when`` fails is skipped."""
        out: list[tuple[str, str]] = []
        for route in self.routes:
            try:
                matched = route.matches(kind, source, context)
            except TemplateError as exc:
                self._skipped(route.name, kind, context, exc)
                continue
            if matched:
                out.extend((route.name, t) for t in route.targets if (route.name, t) not in out)
        return out

    def reaching(self, kind: str, source: str) -> list[tuple[str, str]]:
        """(route, target) pairs of the routes that take ``kind`` from ``source``, whatever their ``when``."""
        out: list[tuple[str, str]] = []
        for route in self.routes:
            if kind in route.on and (route.sources is None or source in route.sources):
                out.extend((route.name, t) for t in route.targets if (route.name, t) not in out)
        return out

    def _skipped(self, route: str, kind: str, context: dict[str, Any], exc: TemplateError) -> None:
        if self.errors is not None:
            self.errors.labels(route).inc()
        now = self.clock()
        last = self._logged.get(route)
        if last is not None and now - last < LOG_EVERY_SECS:
            self._quiet[route] = self._quiet.get(route, 0) + 1
            return
        self._logged[route] = now
        quiet = self._quiet.pop(route, 0)
        more = f" ({quiet} more skip(s) of this route not logged in the last {LOG_EVERY_SECS:g} s)" if quiet else ""
        subject = _subject(context)
        key = _ID_KEYS.get(subject.partition("_")[0])
        log.warning("route %s skipped for %s of %s: %s%s", route, kind, subject, exc, more,
                    extra={"route": route, **({key: subject} if key else {})})


def _subject(context: dict[str, Any]) -> str:
    """The finding, event or delivery a route was matched for, for the log line."""
    for key in ("finding", "event", "delivery"):
        if isinstance(value := context.get(key), dict) and value.get("id"):
            return str(value["id"])
    return "-"
