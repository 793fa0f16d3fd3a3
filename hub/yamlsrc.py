"""YAML with line numbers and ``${VAR}`` interpolation.

Files are composed into nodes first, so every value keeps its line; strings are interpolated on the
nodes (an unset variable is a problem at the line that uses it), and the data is then constructed by
PyYAML's safe constructor. ``lines`` maps every path (tuple of keys and indexes) to its line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hub.errors import Problem, format_path


class Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads on/off/yes/no as booleans, which would
    turn a route's ``on:`` key into ``True``."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                             list("tTfF"))

_VAR = re.compile(r"\$(\$)|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^}\\]|\\.)*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class YamlDoc:
    file: str
    data: Any
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unset: set[tuple[str | int, ...]] = field(default_factory=set)  # paths whose variable was unset
    defaulted: dict[tuple[str | int, ...], list[str]] = field(default_factory=dict)  # unset, default used

    def line_of(self, loc: tuple[str | int, ...]) -> int:
        """Line of the deepest known node on ``loc`` (pydantic error locations may go deeper)."""
        for end in range(len(loc), -1, -1):
            if (line := self.lines.get(tuple(loc[:end]))) is not None:
                return line
        return 1

    def problem(self, loc: tuple[str | int, ...], message: str) -> Problem:
        return Problem(self.file, self.line_of(loc), format_path(loc), message)


def interpolate(text: str, env: Mapping[str, str], defaulted: list[str] | None = None) -> tuple[str, list[str]]:
    """Expand ``${VAR}`` / ``${VAR:-default}``; ``$$`` is a literal ``$``. Returns (text, unset names).

    Names of unset variables whose default was used are appended to ``defaulted``.
    """
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name, default = m.group(2), m.group(3)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            if defaulted is not None:
                defaulted.append(name)
            return default.replace("\\}", "}")
        return value

    if "$" not in text:
        return text, missing
    return _VAR.sub(sub, text), missing


def load(path: str | Path, env: Mapping[str, str] | None = None, display: str | None = None) -> YamlDoc:
    """Read and interpolate a YAML file. Problems are collected, never raised."""
    name = display or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return YamlDoc(name, None, problems=[Problem(name, 0, "", f"cannot read file: {exc.strerror}")])
    return loads(text, name, env)


def loads(text: str, name: str = "<string>", env: Mapping[str, str] | None = None) -> YamlDoc:
    env = os.environ if env is None else env
    doc = YamlDoc(name, None)
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        doc.problems.append(Problem(name, line, "", f"invalid YAML: {getattr(exc, 'problem', None) or exc}"))
        return doc
    if node is None:
        doc.data = {}
        return doc
    _walk(node, (), doc, env, set())
    if any(p.line == 0 or "duplicate key" in p.message for p in doc.problems):
        return doc
    try:
        doc.data = Loader("").construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        doc.problems.append(Problem(name, mark.line + 1 if mark else 0, "", f"invalid YAML: {exc}"))
    return doc


def _walk(
    node: yaml.Node, loc: tuple[str | int, ...], doc: YamlDoc, env: Mapping[str, str], seen_nodes: set[int]
) -> None:
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if id(node) in seen_nodes:  # an alias: already interpolated where its anchor stands
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _STR_TAG and "$" in node.value:
            used: list[str] = []
            value, missing = interpolate(node.value, env, used)
            if used:
                doc.defaulted[loc] = used
            if missing:
                doc.unset.add(loc)
            for var in missing:
                doc.problems.append(
                    doc.problem(loc, f"environment variable {var} is not set (set it, or write ${{{var}:-default}})")
                )
            node.value = value
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _walk(child, (*loc, i), doc, env, seen_nodes)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            if key == "<<":
                _walk(value_node, loc, doc, env, seen_nodes)
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                doc.problems.append(
                    Problem(doc.file, line, format_path((*loc, key)),
                            f"duplicate key (first defined on line {seen[key]})")
                )
            seen[key] = line
            doc.lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), doc, env, seen_nodes)
