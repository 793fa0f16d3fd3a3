"""The base of every config model, pydantic errors turned into ``file:line: path: message`` problems, and the
"did you mean" of an unknown name.

Shared by hub/config.py, the connector contract and the adapters, so that a connector's own config
model reports problems exactly like the hub's.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from hub.errors import Problem
from hub.yamlsrc import YamlDoc

Loc = tuple[str | int, ...]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
NAME_RULE = "invalid name: use letters, digits, '_', '-' or '.', starting with a letter or digit"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def problems(self) -> Iterator[tuple[Loc, str]]:
        """Cross-field checks; yields (location relative to this model, message). Recurses into children."""
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) \
                else [(None, value)]
            key_name = info.alias or name
            for key, child in children:
                if isinstance(child, StrictModel):
                    prefix: Loc = (key_name,) if key is None else (key_name, key)
                    for loc, msg in child.problems():
                        yield (*prefix, *loc), msg


def translate(doc: YamlDoc, exc: ValidationError, model: type[BaseModel], prefix: Loc = ()) -> list[Problem]:
    """Each pydantic error as a Problem at its line, with friendlier messages and "did you mean"."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc: Loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if "[key]" in loc:
            loc = loc[: loc.index("[key]")]
            msg = NAME_RULE
        elif err["type"] == "extra_forbidden":
            msg = "unknown key" + hint(str(loc[-1]), allowed_keys(model, loc[:-1]))
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "literal_error":
            expected = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
            value = value_at(doc.data, (*prefix, *loc))
            msg = f"must be one of {', '.join(expected)}" + (hint(value, expected) if isinstance(value, str) else "")
        out.append(doc.problem((*prefix, *loc), msg))
    return out


def hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


def unknown_message(kind: str, name: str, known: list[str]) -> str:
    """``unknown target "x"``, then a "did you mean", or the known names when none is close."""
    return f'unknown {kind} "{name}"' + (hint(name, known) or f" (known: {', '.join(sorted(known))})")


def value_at(data: Any, loc: Loc) -> Any:
    for key in loc:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names (aliases where set) of the model that sits at ``loc`` below ``model``."""
    current: Any = model
    for key in loc:
        if is_model(current) and isinstance(key, str):
            field = next((f for n, f in current.model_fields.items() if (f.alias or n) == key), None)
            if field is None:
                return []
            args = [a for a in getattr(field.annotation, "__args__", ()) if a is not type(None)]
            current = args[0] if len(args) == 1 and is_model(args[0]) else field.annotation
        else:
            current = _inner(current)  # a dict key or list index: step into the element model
    return [f.alias or n for n, f in current.model_fields.items()] if is_model(current) else []


def is_model(x: Any) -> bool:
    return isinstance(x, type) and issubclass(x, BaseModel)


def _inner(annotation: Any) -> Any:
    """The model inside ``list[M]``, ``dict[str, M]`` or ``M | None``."""
    for arg in reversed(getattr(annotation, "__args__", ()) or ()):
        if is_model(arg):
            return arg
        if (found := _inner(arg)) is not None:
            return found
    return None
