"""Routes compiled once at load: ``match(kind, source, context)`` -> the (route, target) pairs to deliver to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub import templating
from hub.config import RouteConfig
from hub.errors import TemplateError


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
    def __init__(self, routes: list[RouteConfig]):
        self.routes = [Route.compile(r) for r in routes]
        self.kinds = frozenset(k for r in self.routes for k in r.on)

    def wants(self, kind: str) -> bool:
        return kind in self.kinds

    def match(self, kind: str, source: str, context: dict[str, Any]) -> list[tuple[str, str]]:
        """(route, target) pairs, in config order, each pair once."""
        out: list[tuple[str, str]] = []
        for route in self.routes:
            if route.matches(kind, source, context):
                out.extend((route.name, t) for t in route.targets if (route.name, t) not in out)
        return out
