"""docs/architecture.md walks one event through the code naming ``file:function``: every such name must exist, so
the walk cannot drift from the code without this test failing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"`((?:hub|connectors)/[\w/]+\.py):([\w.]+)`")


def defined(path: Path) -> set[str]:
    """Top-level functions and classes of a module, and ``Class.method`` for their methods."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{item.name}" for item in node.body
                      if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)}
    return names


def references(text: str) -> list[tuple[str, str]]:
    return REFERENCE.findall(text)


@pytest.mark.slow
def test_every_file_and_function_the_architecture_walk_names_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    found = references(text)
    assert len(found) >= 30, "the walk names the functions it goes through"
    missing = [f"{path}:{name}" for path, name in found
               if not (ROOT / path).is_file() or name not in defined(ROOT / path)]
    assert not missing, f"docs/architecture.md names what the code does not have: {missing}"


def test_a_renamed_function_is_caught():
    names = defined(ROOT / "hub" / "pipeline.py")
    assert "Pipeline.apply" in names and "Pipeline.applied" not in names
    assert references("see `hub/pipeline.py:Pipeline.apply` and `hub/x.py:f`") == [
        ("hub/pipeline.py", "Pipeline.apply"), ("hub/x.py", "f")]
