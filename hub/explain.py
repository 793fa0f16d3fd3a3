"""Explain routing: for an inbound event or a finding, which routes matched each step, which did not and why.

The answer an operator needs when "it did not reach Linear": the kind was not in the route's ``on``, the
source not in its ``from``, its ``when`` was false (with the values of the fields it read), or its ``when``
failed; and the targets each step would deliver to. The result is plain typed data (``Explanation``,
``to_json``) so the CLI prints it and a web console can render the same answer.

Routes are evaluated exactly as the pipeline does (``hub.routing.Route``), against the context the pipeline
gives them: ``event`` for ``event.received``; ``finding``, ``changes`` and ``kind`` for finding steps. A finding
step is evaluated with the finding as it is now (the store keeps each step's changes, not the whole finding at
that time), so a ``when`` on a field that changed since may answer differently than it did then.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.parser import Parser

from hub import templating
from hub.errors import TemplateError
from hub.models import FINDING_EVENTS, SYNCED_KINDS
from hub.registry import connector_class
from hub.routing import Route, Router
from hub.settings import Settings
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store.conn import Conn

MAX_STEPS = 20  # a finding's most recent routable steps explained (a long-lived finding has hundreds)
MISSING = "<missing>"  # a field the `when` read that the context does not have


@dataclass(frozen=True)
class RouteVerdict:
    route: str
    matched: bool
    reason: str  # why, in a sentence: "matched", "kind ... is not in on [...]", "`when` is false", ...
    targets: list[str]  # where this route delivers this step (empty when it did not match)
    read: dict[str, Any] = field(default_factory=dict)  # the fields the `when` read, and their values


@dataclass(frozen=True)
class Step:
    """One routable thing that happened: an event received, or one lifecycle step of a finding."""

    kind: str
    subject: str  # evt_N or fnd_X
    source: str
    at: str | None
    routes: list[RouteVerdict]
    targets: list[str]  # every target this step delivers to, in route order


@dataclass(frozen=True)
class Explanation:
    subject: str
    steps: list[Step]
    note: str | None = None  # e.g. "no route takes finding.updated"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def explain(conn: Conn, config: Settings, ident: str) -> Explanation | None:
    """``evt_N`` or ``fnd_X``; None when no such event or finding is stored."""
    router = Router(config.routes)
    if ident.startswith("evt_"):
        return _event(conn, config, router, ident)
    return _finding(conn, config, router, ident)


def _event(conn: Conn, config: Settings, router: Router, event_id: str) -> Explanation | None:
    row = event_rows.by_ids(conn, [event_id]).get(event_id)
    if row is None:
        return None
    event = row.event()
    steps = [judge(router, "event.received", event.id, event.source, event.received_at,
                   {"event": event.public(), "kind": "event.received"})]
    for h in finding_rows.history_of_event(conn, event.id):
        if h["event_type"] in FINDING_EVENTS:
            steps.append(_finding_step(conn, config, router, h["finding_id"], h, event.source))
    note = None if len(steps) > 1 else "the event made no finding step a route could take (see `hub events show`)"
    return Explanation(event.id, steps, note)


def _finding(conn: Conn, config: Settings, router: Router, finding_id: str) -> Explanation | None:
    found = finding_rows.get(conn, finding_id)
    if found is None:
        return None
    history = [h for h in finding_rows.history(conn, finding_id) if h["event_type"] in FINDING_EVENTS]
    steps = [_finding_step(conn, config, router, finding_id, h, found.source or "") for h in history[-MAX_STEPS:]]
    note = f"the last {MAX_STEPS} of {len(history)} steps" if len(history) > MAX_STEPS else None
    return Explanation(finding_id, steps, note)


def _finding_step(conn: Conn, config: Settings, router: Router, finding_id: str, h: dict[str, Any],
                  source: str) -> Step:
    found = finding_rows.get(conn, finding_id)
    data = found.model_dump(mode="json") if found else {"id": finding_id}
    source = (found.source if found else None) or source
    kind = h["event_type"]
    step = judge(router, kind, finding_id, source, h["at"], {"finding": data, "changes": h["changes"], "kind": kind})
    return _with_linked(conn, config, router, step)


def judge(router: Router, kind: str, subject: str, source: str, at: str | None, context: dict[str, Any]) -> Step:
    """Every route's verdict on one step, as ``Router.match`` would decide it."""
    verdicts: list[RouteVerdict] = []
    targets: list[str] = []
    for route in router.routes:
        verdict = _verdict(route, kind, source, context)
        verdicts.append(verdict)
        targets.extend(t for t in verdict.targets if t not in targets)
    return Step(kind, subject, source, at, verdicts, targets)


def _verdict(route: Route, kind: str, source: str, context: dict[str, Any]) -> RouteVerdict:
    if kind not in route.on:
        return RouteVerdict(route.name, False, f"kind {kind} is not in on [{', '.join(sorted(route.on))}]", [])
    if route.sources is not None and source not in route.sources:
        return RouteVerdict(route.name, False, f"source {source} is not in from [{', '.join(sorted(route.sources))}]",
                            [])
    if route.when is None or route.when_text is None:
        return RouteVerdict(route.name, True, "matched (no when)", list(route.targets))
    read = {path: value_at(context, path) for path in fields_read(route.when_text)}
    try:
        matched = route.matches(kind, source, context)
    except TemplateError as exc:
        reason = str(exc).removeprefix(f"route {route.name}: `when` failed: ")
        return RouteVerdict(route.name, False, f"`when` failed: {reason}", [], read)
    if matched:
        return RouteVerdict(route.name, True, f"matched: `{route.when_text}` is true", list(route.targets), read)
    return RouteVerdict(route.name, False, f"`{route.when_text}` is false", [], read)


def _with_linked(conn: Conn, config: Settings, router: Router, step: Step) -> Step:
    """Once linked, always synced (hub.pipeline): a finding with a ticket at a target keeps getting its lifecycle
    there through the first route from its source to that target that takes the kind, whatever the `when`."""
    if step.kind not in SYNCED_KINDS:
        return step
    tickets = {name for name, cfg in config.targets.items() if connector_class(cfg.type).work_items}
    verdicts = list(step.routes)
    targets = list(step.targets)
    for route_name, target in router.reaching(step.kind, step.source):
        if target in targets or target not in tickets or not finding_rows.linked(conn, step.subject, target):
            continue
        targets.append(target)
        i = next(n for n, v in enumerate(verdicts) if v.route == route_name)
        v = verdicts[i]
        verdicts[i] = RouteVerdict(v.route, v.matched, f"{v.reason}; the finding has a ticket at {target}, so it "
                                   f"is synced there through this route (once linked, always synced)",
                                   [*v.targets, target], v.read)
    return Step(step.kind, step.subject, step.source, step.at, verdicts, targets)


def fields_read(expression: str) -> list[str]:
    """The context fields a ``when`` reads, as written chains (``finding.severity``, ``finding.asset.tags``,
    ``kind``), outermost chain only, in the order they appear. Dynamic subscripts end a chain."""
    env = templating.expression_env
    try:
        expr = Parser(env, expression, state="variable").parse_expression()
    except jinja2.TemplateSyntaxError:
        return []
    out: list[str] = []

    def walk(node: nodes.Node) -> None:
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):  # finding.title.startswith(..)
            for child in (node.node.node, *node.args, *node.kwargs):
                walk(child)
            return
        path = _chain(node)
        if path is not None:
            if path not in out:
                out.append(path)
            return
        for child in node.iter_child_nodes():
            walk(child)

    walk(expr)
    return out


def _chain(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name if node.ctx == "load" else None
    if isinstance(node, nodes.Getattr):
        inner = _chain(node.node)
        return f"{inner}.{node.attr}" if inner is not None else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
        inner = _chain(node.node)
        return f"{inner}.{node.arg.value}" if inner is not None else None
    return None


def value_at(context: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (list indexes as numbers), or ``MISSING``."""
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value
