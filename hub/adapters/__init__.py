"""Adapters turn a stored event into findings: one module per source platform, plus ``generic`` (YAML only).

An adapter is a class with ``name``, an optional ``Options`` model (the source's ``options:`` block)
and ``parse(event) -> Parsed``. Events that carry no finding (a scan started, a ticket opened)
parse to no findings: they are still stored and can still be forwarded as ``event.received``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from hub.connector import RemoteStatus
from hub.errors import RegistryError
from hub.models import Finding
from hub.store.events import StoredEvent
from hub.strict import StrictModel, unknown_message

__all__ = ["BUILTIN", "Adapter", "Parsed", "StoredEvent", "adapter_class"]

BUILTIN: dict[str, str] = {
    "generic": "hub.adapters.generic:GenericAdapter",
    "linear": "hub.adapters.linear:LinearAdapter",
    "neuro": "hub.adapters.neuro:NeuroAdapter",
    "obexum": "hub.adapters.obexum:ObexumAdapter",
    "secureendpoint": "hub.adapters.secureendpoint:SecureEndpointAdapter",
    "secuprobe": "hub.adapters.secuprobe:SecuProbeAdapter",
    "strobes": "hub.adapters.strobes:StrobesAdapter",
}


@dataclass
class Parsed:
    findings: list[Finding] = field(default_factory=list)
    full_scope: str | None = None  # the findings are the complete set for this scope: others in it resolve
    # Ticket states a vendor webhook reported (target name -> statuses): closed tickets resolve findings.
    statuses: dict[str, list[RemoteStatus]] = field(default_factory=dict)
    # A completed full-import poll: open findings of ``full_scope`` not seen since this time resolve.
    unseen_since: str | None = None


class Adapter(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type[StrictModel] | None]
    # Optional: the fingerprint strategy a source gets when its config sets none ("tool_id" when the
    # platform's own id is the only thing its follow-up events carry). Read with getattr.

    def __init__(self, source: str, options: StrictModel | None) -> None: ...

    def parse(self, event: StoredEvent) -> Parsed: ...


def adapter_class(name: str) -> type[Adapter]:
    if name not in BUILTIN:
        raise RegistryError(unknown_message("adapter", name, list(BUILTIN)))
    module_name, _, class_name = BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
