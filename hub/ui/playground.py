"""The mapping playground: a stored finding or event rendered through a target's mapping exactly as ``hub render``
renders it (the same ``example_from`` and ``item_for``, a connector built as the CLI builds it, the same sandboxed
templates), optionally with one template's text replaced by an edit that is never saved, and the target's golden
examples checked against that mapping (``hub test-mappings``'s comparison and diff).

An edit lives only in the request: the edited mapping is a copy whose loader answers the edited file's name with
the posted text (and that file's path, so an error names the file and line the operator is editing) and everything
else (``{% import "_shared/..." %}``) from disk. No secret reaches the page: secret headers are masked as ``hub
render`` masks them, and every secret value of the target's config (its ``SecretStr`` fields and the values of the
headers the connector marks secret) is replaced wherever an edited template printed it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, SecretStr

from hub import goldens
from hub.connector import Connector
from hub.errors import HubError
from hub.mappings import Example, Mapping, example_from
from hub.models import EVENT_TYPES
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store.conn import Conn

MASK = "********"
KINDS = tuple(k for k in EVENT_TYPES if k != "delivery.dead")  # a dead letter needs a delivery, not a subject


@dataclass(frozen=True)
class Rendered:
    requests: list[dict[str, Any]]  # method, url, headers (masked), body: as `hub render --json`
    problem: str | None  # a template error ("file:line: message") or why nothing can be rendered


@dataclass(frozen=True)
class Goldens:
    compared: int
    failed: list[goldens.Mismatch]


def subject(conn: Conn, ident: str, kind: str) -> Example | None:
    """A stored finding (``fnd_``) at lifecycle step ``kind``, or a stored event (``evt_``) as ``event.received``,
    as ``hub render`` reads its ``--finding`` file; None when no such object is stored."""
    if ident.startswith("evt_"):
        row = event_rows.by_ids(conn, [ident]).get(ident)
        return None if row is None else example_from("preview", {"kind": "event.received",
                                                                  "event": row.event().public()})
    found = finding_rows.get(conn, ident) if ident.startswith("fnd_") else None
    if found is None:
        return None
    return replace(example_from("preview", found.model_dump(mode="json")), kind=kind)


def template_names(mapping: Mapping) -> list[str]:
    return sorted({p.template for p in mapping.payloads.values()})


def source(mapping: Mapping, name: str) -> str:
    text, _, _ = mapping.env.loader.get_source(mapping.env, name)  # type: ignore[union-attr]
    return text


def edited(mapping: Mapping, name: str, text: str) -> Mapping:
    """A copy of ``mapping`` whose template ``name`` is ``text`` (in memory only)."""
    copy = replace(mapping)
    path = str(mapping.folder / name)
    copy.env.loader = jinja2.ChoiceLoader([
        jinja2.FunctionLoader(lambda asked: (text, path, lambda: True) if asked == name else None),
        mapping.env.loader,  # type: ignore[list-item]
    ])
    return copy


def _secrets(connector: Connector) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(connector.config)
    return found


def _scrub(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def render(connector: Connector, mapping: Mapping, example: Example) -> Rendered:
    """The request(s) the connector sends for ``example`` with ``mapping``, as ``hub render --json`` prints them."""
    fresh = type(connector)(connector.target, connector.config, mapping, connector.base_dir)
    try:
        out = fresh.render(goldens.item_for(example, connector.target))
    except jinja2.TemplateSyntaxError as exc:
        return Rendered([], f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}")
    except (HubError, ValueError) as exc:
        return Rendered([], str(exc))
    masked = {v for r in out for h, v in r.headers.items() if h.lower() in {s.lower() for s in r.secret_headers}}
    secrets = {s for s in _secrets(connector) | masked if len(s) >= 4}  # not "", not a stray "x"
    return Rendered([{"method": r.method, "url": _scrub(r.url, secrets),
                      "headers": {k: _scrub(v, secrets) for k, v in r.masked_headers().items()},
                      "body": _scrub(r.body.decode("utf-8", "replace"), secrets)} for r in out], None)


def check(connector: Connector, mapping: Mapping) -> Goldens | str:
    """The golden examples of ``mapping`` (``examples/`` beside its templates), or why they cannot be checked."""
    if not (Path(mapping.folder) / "examples").is_dir():
        return f"{mapping.folder} has no examples/ folder"
    try:
        compared, bad = goldens.check(type(connector).name, mapping)
    except jinja2.TemplateSyntaxError as exc:
        return f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}"
    except (HubError, ValueError) as exc:
        return str(exc)
    return Goldens(compared, bad)

