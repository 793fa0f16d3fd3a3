"""Golden examples of a mapping: render each ``examples/<case>.finding.json`` and compare with the
expected ``<case>.<payload>.<ext>`` files. Used by ``hub test-mappings`` and tests/test_mappings.py.

``examples/target.yaml`` (optional) is the target config the examples render with, so templates
that read ``target.*`` (team ids, board ids) have values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from hub.connector import Connector, Item, Ref
from hub.errors import HubError
from hub.mappings import Example, Mapping, examples
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
                bad.append(Mismatch(ex.case, payload, "differs from " + expected_file.name + ":\n  got:  "
                                    + orjson.dumps(got).decode()[:2000] + "\n  want: " + orjson.dumps(want).decode()[:2000]))
    return compared, bad


def _render(mapping: Mapping, payload: str, ctx: dict[str, Any], expected: Path) -> tuple[Any, Any]:
    if expected.suffix == ".ndjson":
        want = [orjson.loads(line) for line in expected.read_text().splitlines() if line.strip()]
        return mapping.render_ndjson(payload, ctx), want
    if expected.suffix == ".json":
        return mapping.render_json(payload, ctx), orjson.loads(expected.read_bytes())
    return mapping.render_text(payload, ctx).strip(), expected.read_text().strip()
