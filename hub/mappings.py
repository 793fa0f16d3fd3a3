"""Mappings ops edit: ``hub/builtin_mappings/<type>/mapping.yaml`` names a template per payload; templates render JSON.

    payloads:
      issue: {template: issue.json.j2}                         # rendered for every kind
      comment: {template: comment.md.j2, kinds: [finding.updated, finding.reopened]}
    vars: {default_label: security}                             # constants templates see as ``vars``

Loading compiles every template, so syntax errors surface at ``check-config`` with file and line.
Golden examples live in ``examples/<case>.finding.json`` with expected ``<case>.<payload>.<ext>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import orjson

from hub import templating
from hub.errors import ConfigError, Problem, TemplateError
from hub.models import EVENT_TYPES, Finding
from hub.yamlsrc import load as load_yaml

# Package data (pyproject's package-data ships it in the wheel), so an installed hub and a checkout find the same
# folder; the templates' loader has it on its search path, so ``{% import "_shared/finding.j2" %}`` resolves there.
BUILTIN_ROOT = Path(__file__).resolve().parent / "builtin_mappings"


@dataclass(frozen=True)
class Payload:
    name: str
    template: str  # file name inside the mapping folder
    kinds: tuple[str, ...] | None = None  # None: every kind


@dataclass
class Mapping:
    type: str
    folder: Path
    payloads: dict[str, Payload]
    vars: dict[str, Any] = field(default_factory=dict)
    root: Path = BUILTIN_ROOT
    public_url: str | None = None  # console.public_url: where templates' links point (Connector.context)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for the render process without its compiled templates (they are compiled again there)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("env", "_templates")}

    @cached_property
    def env(self) -> jinja2.Environment:
        return templating.environment([self.folder, self.root])

    def template(self, payload: str) -> jinja2.Template:
        spec = self.payloads.get(payload)
        if spec is None:
            raise TemplateError(f"mapping {self.folder / 'mapping.yaml'} has no payload {payload!r}")
        return self._templates[spec.template]

    @cached_property
    def _templates(self) -> dict[str, jinja2.Template]:
        return {p.template: self.env.get_template(p.template) for p in self.payloads.values()}

    def applies(self, payload: str, kind: str) -> bool:
        spec = self.payloads.get(payload)
        return spec is not None and (spec.kinds is None or kind in spec.kinds)

    def render_text(self, payload: str, context: dict[str, Any]) -> str:
        return templating.render(self.template(payload), context)

    def render_json(self, payload: str, context: dict[str, Any]) -> Any:
        return templating.render_json(self.template(payload), context)

    def render_ndjson(self, payload: str, context: dict[str, Any]) -> list[Any]:
        """Each non-empty output line must be a JSON document."""
        text = self.render_text(payload, context)
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise TemplateError(f"output line {n} is not valid JSON ({exc.msg})",
                                        str(self.folder / self.payloads[payload].template)) from None
        return out


def folder_for(type_name: str, custom: str | Path | None = None) -> Path:
    return Path(custom) if custom else BUILTIN_ROOT / type_name


def load_mapping(type_name: str, folder: Path, required: tuple[str, ...] = ()) -> Mapping:
    """Load and compile; raises ConfigError listing every problem (file:line)."""
    spec_file = folder / "mapping.yaml"
    doc = load_yaml(spec_file, env={})
    problems = list(doc.problems)
    payloads: dict[str, Payload] = {}
    data = doc.data if isinstance(doc.data, dict) else {}
    if doc.data is not None and not isinstance(doc.data, dict):
        problems.append(Problem(str(spec_file), 1, "", "mapping.yaml must be a mapping with `payloads`"))
    for key in set(data) - {"payloads", "vars"}:
        problems.append(doc.problem((key,), "unknown key (expected payloads, vars)"))
    raw_payloads = data.get("payloads") or {}
    if not isinstance(raw_payloads, dict):
        problems.append(doc.problem(("payloads",), "must map payload names to {template: file}"))
        raw_payloads = {}
    for name, spec in raw_payloads.items():
        if isinstance(spec, str):
            spec = {"template": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("template"), str):
            problems.append(doc.problem(("payloads", name), "needs `template: <file>.j2`"))
            continue
        kinds = spec.get("kinds")
        for i, kind in enumerate(kinds or []):
            if kind not in EVENT_TYPES:
                problems.append(doc.problem(("payloads", name, "kinds", i), f"unknown kind {kind!r}"))
        for key in set(spec) - {"template", "kinds"}:
            problems.append(doc.problem(("payloads", name, key), "unknown key (expected template, kinds)"))
        if not (folder / spec["template"]).is_file():
            problems.append(doc.problem(("payloads", name, "template"), f"template file {spec['template']} not found"))
            continue
        payloads[name] = Payload(name, spec["template"], tuple(kinds) if kinds else None)
    for name in required:
        if name not in raw_payloads:
            problems.append(doc.problem(("payloads",),
                                        f"missing payload {name!r} (the {type_name} connector needs it)"))
    mapping = Mapping(type_name, folder, payloads, dict(data.get("vars") or {}))
    for payload in payloads.values():
        try:
            mapping.env.get_template(payload.template)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(Problem(str(folder / payload.template), exc.lineno, "", exc.message or "syntax error"))
    if problems:
        raise ConfigError(problems)
    return mapping


@dataclass(frozen=True)
class Example:
    case: str
    kind: str
    finding: Finding | None
    event: dict[str, Any] | None
    changes: dict[str, Any]
    expected: dict[str, Path]  # payload name -> expected output file
    dead: dict[str, Any] | None = None  # delivery.dead: the delivery that gave up


def example_from(case: str, doc: Any, expected: dict[str, Path] | None = None) -> Example:
    """A bare Finding, or ``{kind, finding, changes}`` / ``{kind: event.received, event}`` /
    ``{kind: delivery.dead, finding, dead}``; raises ValueError when the finding does not validate."""
    wrapped = isinstance(doc, dict) and ("finding" in doc or "event" in doc or "dead" in doc) and "title" not in doc
    finding_doc = doc.get("finding") if wrapped else doc
    return Example(case, doc.get("kind", "finding.created") if wrapped else "finding.created",
                   Finding.model_validate(finding_doc) if finding_doc else None,
                   doc.get("event") if wrapped else None, doc.get("changes", {}) if wrapped else {},
                   expected or {}, doc.get("dead") if wrapped else None)


def examples(mapping: Mapping) -> list[Example]:
    """Golden pairs in ``<folder>/examples``: ``<case>.finding.json`` + ``<case>.<payload>.<ext>``."""
    folder = mapping.folder / "examples"
    out = []
    for source in sorted(folder.glob("*.finding.json")):
        case = source.name.removesuffix(".finding.json")
        expected = {}
        for f in folder.glob(f"{case}.*"):
            payload = f.name[len(case) + 1:].split(".")[0]
            if f != source and payload in mapping.payloads:
                expected[payload] = f
        out.append(example_from(case, orjson.loads(source.read_bytes()), expected))
    return out
