"""Finds connector classes: the built-in table plus the ``hub.connectors`` entry point group.

Built-ins register the way plugins do and load lazily by name, so an unused connector costs
nothing. An unknown type gets a "did you mean".
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from connectors import BUILTIN
from hub.errors import RegistryError
from hub.strict import unknown_message

if TYPE_CHECKING:
    from hub.connector import Connector


@cache
def connector_paths() -> dict[str, str]:
    """Type name -> "module:Class"; third parties add ``[project.entry-points."hub.connectors"]``."""
    paths = dict(BUILTIN)
    for ep in entry_points(group="hub.connectors"):
        if paths.setdefault(ep.name, ep.value) != ep.value:
            raise RegistryError(f'connector type "{ep.name}" is provided by {paths[ep.name]} and {ep.value}')
    return paths


@cache
def connector_class(type_name: str) -> type[Connector]:
    paths = connector_paths()
    if type_name not in paths:
        raise RegistryError(unknown_message("connector type", type_name, list(paths)))
    module_name, _, class_name = paths[type_name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f'connector type "{type_name}" cannot be loaded from {paths[type_name]}: {exc}') from exc
    return cls
