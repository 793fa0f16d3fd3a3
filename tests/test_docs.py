"""Docs cannot drift: every config key and every command is documented."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from hub import config
from hub.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"


def models() -> list[type[BaseModel]]:
    return [m for m in vars(config).values()
            if isinstance(m, type) and issubclass(m, config.StrictModel) and m is not config.StrictModel]


def test_every_config_key_is_in_the_reference():
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    missing = {f"{m.__name__}.{name}" for m in models() for name in m.model_fields
               if name not in documented and name not in ("server", "storage", "sources")}
    assert not missing, f"undocumented config keys: {sorted(missing)}"


def test_every_config_field_has_help_text():
    for m in models():
        for name, field in m.model_fields.items():
            assert field.description, f"{m.__name__}.{name} has no description"


def test_every_command_is_documented():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text() + "".join(
        p.read_text() for p in DOCS.rglob("*.md"))

    def names(group, prefix=""):
        for name, cmd in group.commands.items():
            yield f"{prefix}{name}"
            if hasattr(cmd, "commands"):
                yield from names(cmd, f"{prefix}{name} ")

    missing = [n for n in names(main) if f"hub {n}" not in text]
    assert not missing, f"commands missing from README/docs: {missing}"
