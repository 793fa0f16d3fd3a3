"""What a route's ``when`` and a mapping's templates read, checked against what they will really be given.

A misspelt field (``finding.severty``) compiles fine and then fails every event at run time. Here each
expression and template is parsed once at load and every ``name.attr`` / ``name["key"]`` chain rooted at a
context variable is walked against a ``Shape`` of that variable: the Finding model's fields (and its nested
models), ``event``'s public fields, the dead delivery's, the target's config as templates see it (secrets
removed), the mapping's ``vars``. Only what is certainly wrong is reported, as ``(line, chain, message)``:

- dict-typed values (``finding.raw``, ``changes``, ``event.body``) and lists take any key or index;
- a chain tested with ``is defined`` / ``is undefined`` or read through ``| default`` is a guard, not a use;
- a name bound in the template (``set``, ``for``, macro arguments, imports) is not the context variable,
  except a name ``set`` exactly once to a chain, which is followed (``{% set a = finding.asset %}``);
- filters, tests and macros are never names to check; Jinja's globals (``range``, ``namespace``, ...) are known.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

import jinja2
from jinja2 import meta, nodes
from jinja2.parser import Parser
from pydantic import BaseModel

from hub.models import FINDING_EVENTS, Finding

if TYPE_CHECKING:
    from hub.connector import TargetConfig
    from hub.mappings import Mapping


@dataclass(frozen=True)
class Shape:
    """What a value holds. ``fields`` None: any key (then each value is ``item``, None: not known)."""

    label: str
    fields: dict[str, Shape | None] | None = None
    item: Shape | None = None
    hidden: frozenset[str] = frozenset()  # fields the value never shows (secrets of a target config)


GUARD_TESTS = frozenset({"defined", "undefined"})  # `x.y is defined`: a guard, not a use
GUARD_FILTERS = frozenset({"default", "d"})  # `x.y | default(..)`: an undefined x.y is fine
DICT_METHODS = frozenset(n for n in dir(dict) if not n.startswith("_"))
ANY = Shape("value")
Found = tuple[int, str, str]  # (line, chain, message)


def model_shape(model: type[BaseModel], label: str) -> Shape:
    return Shape(label, {name: _annotation(f.annotation, f"{label}.{name}") for name, f in model.model_fields.items()})


def _annotation(tp: Any, label: str) -> Shape | None:
    origin, args = get_origin(tp), get_args(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return model_shape(tp, label)
    if origin in (Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        return _annotation(real[0], label) if len(real) == 1 else None
    if origin is dict and len(args) == 2:
        return Shape(label, None, _annotation(args[1], f"{label}[...]"))
    if origin is list and args:
        return Shape(label, None, _annotation(args[0], f"{label}[...]"))
    return None


def _value(value: Any, label: str) -> Shape | None:
    """A constant's shape (a mapping's ``vars``): dicts by their keys, lists and scalars unchecked."""
    if isinstance(value, dict):
        return Shape(label, {str(k): _value(v, f"{label}.{k}") for k, v in value.items()})
    return None


def _fields(label: str, names: tuple[str, ...]) -> Shape:
    return Shape(label, dict.fromkeys(names))


FINDING = model_shape(Finding, "finding")
EVENT_FIELDS = ("id", "source", "received_at", "verified_by", "content_type", "body")  # StoredEvent.public()
DEAD_FIELDS = ("id", "target", "route", "kind", "reason", "attempts", "finding_id", "event_id")  # Pipeline.route_dead
EVENT = _fields("event", EVENT_FIELDS)

# What a route's `when` sees, by kind (Pipeline.route, Pipeline.apply, Pipeline.route_dead).
WHEN_CONTEXT: dict[str, dict[str, Shape | None]] = {
    **{kind: {"finding": FINDING, "changes": None, "kind": None} for kind in FINDING_EVENTS},
    "event.received": {"event": EVENT, "kind": None},
    "delivery.dead": {"delivery": _fields("delivery", DEAD_FIELDS), "finding": FINDING, "kind": None},
}


def template_context(target: str, config: TargetConfig, mapping: Mapping) -> dict[str, Shape | None]:
    """What a template sees (Connector.context)."""
    from hub.connector import Ref

    return {"kind": None, "finding": FINDING, "event": EVENT, "changes": None,
            "ref": _fields("ref", tuple(f.name for f in dataclasses.fields(Ref))),
            "dead": _fields("dead", DEAD_FIELDS),
            "delivery": _fields("delivery", ("id", "idempotency_key", "route", "attempt")),
            "target": target_shape(config), "vars": _value(mapping.vars, "vars") or Shape("vars", {}),
            "links": _fields("links", ("finding", "event", "delivery"))}


def target_shape(config: TargetConfig) -> Shape:
    """``{"name": .., **config.public()}``: nested config blocks by their fields, secrets hidden."""
    shown = config.public()
    shape = _public(config, shown, "target")
    assert shape.fields is not None
    return dataclasses.replace(shape, fields={"name": None, **shape.fields})


def _public(model: Any, shown: Any, label: str) -> Shape:
    if not (isinstance(model, BaseModel) and isinstance(shown, dict)):
        return ANY
    fields: dict[str, Shape | None] = {}
    for name, value in shown.items():
        inner = getattr(model, name, None)
        fields[name] = _public(inner, value, f"{label}.{name}") if isinstance(inner, BaseModel) else None
    return Shape(label, fields, hidden=frozenset(type(model).model_fields) - set(shown))


# --- checks ---------------------------------------------------------------------------------------------


def when_problems(expression: str, kinds: list[str], env: jinja2.Environment) -> list[Found]:
    """A route's ``when`` against the union of what its ``on`` kinds provide (a guard like
    ``kind == "finding.created" and ...`` makes a name of one kind safe in a route of several)."""
    roots: dict[str, Shape | None] = {}
    for kind in kinds:
        for name, shape in WHEN_CONTEXT.get(kind, {}).items():
            roots.setdefault(name, shape)
    expr = Parser(env, expression, state="variable").parse_expression()
    tree = nodes.Template([nodes.Output([expr])], lineno=1)
    tree.set_environment(env)
    found = Walker(tree).problems(roots, env)
    elsewhere = {n for k, ctx in WHEN_CONTEXT.items() if k not in kinds for n in ctx} - set(roots)
    return [(line, chain, f"{msg} (only {_kinds_with(chain)} routes see it)" if chain in elsewhere else msg)
            for line, chain, msg in found]


def _kinds_with(name: str) -> str:
    return "/".join(k for k, ctx in WHEN_CONTEXT.items() if name in ctx and k not in FINDING_EVENTS) or "other"


def template_problems(mapping: Mapping, roots: dict[str, Shape | None]) -> Iterator[tuple[str, Found]]:
    """(template file, problem) for every payload template and what it imports or includes."""
    env = mapping.env
    todo = [(p.template, True) for p in mapping.payloads.values()]
    seen: dict[str, bool] = {}
    while todo:
        name, with_context = todo.pop(0)
        if name in seen and (seen[name] or not with_context):
            continue
        seen[name] = with_context
        try:
            source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
            key = (name, filename, source)
            if (walker := _parsed.get(key)) is None:
                walker = _parsed[key] = Walker(env.parse(source, name, filename))
        except jinja2.TemplateError:
            continue  # a missing or broken template is reported where the mapping loads
        for found in walker.problems(roots if with_context else {}, env):
            yield filename or name, found
        todo += walker.references


# Parsed templates by (name, file, source): every load of a config (each test's hub, each serve) checks the same
# built-in templates; parsing and Jinja's undeclared-variable pass cost ~10 ms a template, the walk itself little.
_parsed: dict[tuple[str, str | None, str], Walker] = {}


class Walker:
    """One parsed template (or expression): what it binds, guards and imports; ``problems`` for given roots."""

    def __init__(self, tree: nodes.Template):
        self.tree = tree
        self.bound: dict[str, int] = {}  # names the template binds, and how many times
        self.aliases: dict[str, nodes.Node] = {}
        self.guarded: set[str] = set()
        self.references: list[tuple[str, bool]] = []
        for node in tree.find_all(nodes.Node):
            self._note(node)
        self.aliases = {k: v for k, v in self.aliases.items() if self.bound.get(k) == 1}
        self.undeclared = meta.find_undeclared_variables(tree)

    def _note(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Name) and node.ctx == "store":  # macro arguments shadow only inside (``_uses``)
            self.bound[node.name] = self.bound.get(node.name, 0) + 1
        elif isinstance(node, nodes.Import):
            self.bound[node.target] = 2
        elif isinstance(node, nodes.FromImport):
            for entry in node.names:
                self.bound[entry[1] if isinstance(entry, tuple) else entry] = 2
        if isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
            self.aliases[node.target.name] = node.node
        elif isinstance(node, (nodes.Test, nodes.Filter)) and node.name in GUARD_TESTS | GUARD_FILTERS and node.node:
            self._guard(node.node)
        if isinstance(node, (nodes.Import, nodes.FromImport, nodes.Include)) and isinstance(node.template, nodes.Const):
            context = True if isinstance(node, nodes.Include) else bool(node.with_context)
            self.references.append((str(node.template.value), context))

    def _guard(self, node: nodes.Node) -> None:
        while isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Name)):
            self.guarded.add(chain(node))
            if isinstance(node, nodes.Name):
                return
            node = node.node

    def problems(self, roots: dict[str, Shape | None], env: jinja2.Environment) -> list[Found]:
        out: list[Found] = []
        known = set(roots) | set(env.globals) | set(self.bound) | self.guarded
        for name in sorted(self.undeclared - known):
            line = next((n.lineno for n in self.tree.find_all(nodes.Name) if n.name == name), 1)
            out.append((line, name, _unknown("name", name, list(roots), "")))
        for node, shadow in _uses(self.tree, frozenset()):
            key = node.attr if isinstance(node, nodes.Getattr) else _const_key(node.arg)
            if key is None or chain(node) in self.guarded:
                continue
            base = self.shape(node.node, {k: v for k, v in roots.items() if k not in shadow})
            if base is None or base.fields is None or key in base.fields or key in DICT_METHODS:
                continue
            hint = " (a secret: templates never see secrets)" if key in base.hidden else ""
            unknown = _unknown("field", key, list(base.fields), f" of {base.label}")
            out.append((node.lineno, chain(node), unknown + hint))
        return out

    def shape(self, node: nodes.Node, roots: dict[str, Shape | None], depth: int = 0) -> Shape | None:
        if depth > 20:
            return None
        if isinstance(node, nodes.Name):
            if node.name in self.aliases:
                return self.shape(self.aliases[node.name], roots, depth + 1)
            return None if node.name in self.bound else roots.get(node.name)
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            base = self.shape(node.node, roots, depth + 1)
            if base is None:
                return None
            key = node.attr if isinstance(node, nodes.Getattr) else _const_key(node.arg)
            if base.fields is not None:
                return base.fields.get(key) if key is not None else None
            if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice):
                return base
            return base.item
        return None


def _uses(node: nodes.Node, shadow: frozenset[str]) -> Iterator[tuple[nodes.Getattr | nodes.Getitem, frozenset[str]]]:
    """Every attribute or item read, with the names a macro's arguments or a loop's target shadow there."""
    if isinstance(node, (nodes.Getattr, nodes.Getitem)):
        yield node, shadow
    if isinstance(node, (nodes.Macro, nodes.CallBlock)):
        shadow = shadow | {a.name for a in node.args} | {"caller", "varargs", "kwargs"}
    elif isinstance(node, nodes.For):
        yield from _uses(node.iter, shadow)
        shadow = shadow | {n.name for n in node.target.find_all(nodes.Name)} | \
            ({node.target.name} if isinstance(node.target, nodes.Name) else set())
        for child in (*node.body, *node.else_, *([node.test] if node.test else [])):
            yield from _uses(child, shadow)
        return
    for child in node.iter_child_nodes():
        yield from _uses(child, shadow)


def _const_key(arg: nodes.Node) -> str | None:
    return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None


def chain(node: nodes.Node) -> str:
    """``finding.asset.tags``, ``f["title"]``: the chain as written (``…`` for what is not a plain chain)."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{chain(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        key = _const_key(node.arg)
        return f"{chain(node.node)}[{key!r}]".replace("'", '"') if key is not None else f"{chain(node.node)}[…]"
    return "…"


def _unknown(what: str, name: str, known: list[str], of: str) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f'unknown {what} "{name}"{of}; did you mean "{close[0]}"?'
    listed = ", ".join(sorted(known)) if known else "none"
    return f'unknown {what} "{name}"{of} (known: {listed})'

