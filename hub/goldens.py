"""Golden examples of a mapping: render each ``examples/<case>.finding.json`` and compare with the
expected ``<case>.<payload>.<ext>`` files. Used by ``hub test-mappings`` and tests/test_mappings.py.

``examples/target.yaml`` (optional) is the target config the examples render with, so templates
that read ``target.*`` (team ids, board ids) have values.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from hub import templating
from hub.connector import Connector, Item, Ref, TargetConfig
from hub.errors import HubError, Problem, TemplateError
from hub.mappings import Example, Mapping, example_from, examples
from hub.registry import connector_class


@dataclass(frozen=True)
class Mismatch:
    case: str
    payload: str
    message: str

    def __str__(self) -> str:
        return f"{self.case}.{self.payload}: {self.message}"


def connector_for_examples(type_name: str, mapping: Mapping, base_dir: Path | None = None) -> Connector:
    cls = connector_class(type_name)
    spec = mapping.folder / "examples" / "target.yaml"
    raw: dict[str, Any] = yaml.safe_load(spec.read_text()) if spec.is_file() else {}
    config = cls.Config.model_validate({"type": type_name, **(raw or {})})
    return cls("example", config, mapping, base_dir)


def item_for(example: Example, target: str = "example", remote_id: str | None = None) -> Item:
    finding = example.finding.model_dump(mode="json") if example.finding else None
    ref = Ref(finding["id"] if finding else "", target, remote_id, None, None, "linked") if remote_id else None
    return Item("dlv_1", example.kind, "fh_example", "example-route", target, finding, example.event,
                example.changes, ref, dead=example.dead)


def check(type_name: str, mapping: Mapping) -> tuple[int, list[Mismatch]]:
    """(examples compared, mismatches)."""
    connector = connector_for_examples(type_name, mapping)
    compared, bad = 0, []
    for ex in examples(mapping):
        ctx = connector.context(item_for(ex))
        for payload, expected_file in sorted(ex.expected.items()):
            compared += 1
            try:
                got, want = _render(mapping, payload, ctx, expected_file)
            except HubError as exc:
                bad.append(Mismatch(ex.case, payload, str(exc)))
                continue
            if got != want:
                bad.append(Mismatch(ex.case, payload, f"differs from {expected_file.name}:\n"
                                    + diff(want, got, expected_file.name)))
    return compared, bad


def diff(want: Any, got: Any, name: str, context: int = 3) -> str:
    """A unified diff from the expected file to the rendered output: JSON pretty-printed with sorted keys and an
    indent of 2 (one field per line, so the diff points at the field), text line by line. Two 2 KB lines
    side by side hid a one-field difference."""
    def lines(value: Any) -> list[str]:
        if isinstance(value, str):
            return value.splitlines()
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()

    return "\n".join(difflib.unified_diff(lines(want), lines(got), f"{name} (expected)", "rendered", n=context,
                                         lineterm=""))


def render_all(target: str, type_name: str, config: TargetConfig, mapping: Mapping,
               base_dir: Path | None = None) -> tuple[int, list[Problem]]:
    """check-config: (examples rendered, problems). Every golden example of a target's mapping is rendered with
    that target's own config, through every payload that applies to its kind. A render error, or output that
    is not JSON where JSON is due (a ``.json.j2`` template, or the expected file's ``.json``/``.ndjson``), is a
    problem naming the template file and the line that wrote the bad output. Output that differs from the
    expected file is not: that is ``hub test-mappings``'s question (a mapping edited on purpose renders
    differently until its goldens are updated, and the hub must still start)."""
    connector = connector_class(type_name)(target, config, mapping, base_dir)
    folder = mapping.folder / "examples"
    rendered, problems = 0, []
    for source in sorted(folder.glob("*.finding.json")):
        case = source.name.removesuffix(".finding.json")
        try:
            ex = example_from(case, orjson.loads(source.read_bytes()),
                              {p: f for f in folder.glob(f"{case}.*") if (p := f.name[len(case) + 1:].split(".")[0])
                               in mapping.payloads and f != source})
        except (ValueError, orjson.JSONDecodeError) as exc:
            problems.append(Problem(str(source), 0, "", f"golden example does not load: {exc}"))
            continue
        rendered += 1
        ctx = connector.context(item_for(ex, target))
        for payload in sorted(mapping.payloads):
            if not mapping.applies(payload, ex.kind):
                continue
            expected = ex.expected.get(payload)
            suffix = expected.suffix if expected else Path(mapping.payloads[payload].template).suffixes[0]
            try:
                if suffix in (".json", ".ndjson"):
                    error = templating.json_problem(mapping.template(payload), ctx, lines=suffix == ".ndjson")
                else:
                    mapping.render_text(payload, ctx)
                    error = None
            except TemplateError as exc:
                error = exc
            if error is not None:
                message = str(error).removeprefix(f"{error.file}:{error.line}: ").removeprefix(f"{error.file}: ")
                problems.append(Problem(error.file or str(mapping.folder / mapping.payloads[payload].template),
                                        error.line, "", f"golden example {source.name} ({ex.kind}): {message}"))
    return rendered, problems


def _render(mapping: Mapping, payload: str, ctx: dict[str, Any], expected: Path) -> tuple[Any, Any]:
    if expected.suffix == ".ndjson":
        want = [orjson.loads(line) for line in expected.read_text().splitlines() if line.strip()]
        return mapping.render_ndjson(payload, ctx), want
    if expected.suffix == ".json":
        return mapping.render_json(payload, ctx), orjson.loads(expected.read_bytes())
    return mapping.render_text(payload, ctx).strip(), expected.read_text().strip()
