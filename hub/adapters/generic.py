"""``generic``: any JSON source, configured in YAML only.

    sources:
      scanner:
        adapter: generic
        options:
          findings: body.results              # where the list sits (default: the body is one finding)
          fields:                              # Finding field <- sandboxed Jinja expression
            title: item.name
            severity: item.risk                # words, CVSS scores or levels 1-5
            tool_id: item.id
            asset.identifier: item.host
            cve: item.cves
          status: 'item.state == "fixed"'      # true/"resolved"/"fixed"/"closed" resolve the finding
          full_import: false                   # true: the list is complete; absent findings resolve
          scope: body.target                   # full imports only: which set the list replaces

Expressions see ``item`` (one element of the list), ``body`` (the whole event) and ``event``
(source, received_at, headers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from pydantic import Field, field_validator

from hub import templating
from hub.adapters import Parsed, StoredEvent
from hub.adapters._util import finding as build_finding
from hub.errors import AdapterError, TemplateError
from hub.models import Asset, Finding
from hub.strict import Loc, StrictModel

KEPT_BY_THE_HUB = ("id", "fingerprint", "external_refs", "status", "first_seen", "last_seen", "resolved_at",
                   "sla_due_at")
FINDING_FIELDS = {n for n in Finding.model_fields if n not in KEPT_BY_THE_HUB}
FIELD_NAMES = FINDING_FIELDS | {f"asset.{n}" for n in Asset.model_fields}
RESOLVED_WORDS = {"resolved", "fixed", "closed", "remediated", "done", "deleted", "false_positive", "true"}


class GenericOptions(StrictModel):
    findings: str | None = Field(None, description="Expression giving the list of findings (default: the body).")
    fields: dict[str, str] = Field(description="Finding field (asset.* allowed) -> expression over item/body/event.")
    status: str | None = Field(None, description="Expression; true or resolved/fixed/closed resolves the finding.")
    full_import: bool = Field(False, description="The list is complete: open findings of this scope not in it resolve.")
    scope: str | None = Field(None,
                              description="Expression naming the set a full import replaces (default: the source).")
    severity_scale: str = Field("auto", pattern="^(auto|cvss|level)$",
                                description="How numbers are read: auto, cvss (0-10) or level (1-5, 5 = critical).")

    @field_validator("fields")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - FIELD_NAMES)
        if unknown:
            raise ValueError(f"unknown Finding field(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELD_NAMES))}")
        if "title" not in value:
            raise ValueError("fields.title is required (every finding needs a title)")
        return value

    def problems(self) -> Iterator[tuple[Loc, str]]:
        for loc, source in self._expressions():
            try:
                templating.compile_expression(source, lenient=True)
            except TemplateError as exc:
                yield loc, f"invalid expression: {exc}"

    def _expressions(self) -> Iterator[tuple[Loc, str]]:
        for key in ("findings", "status", "scope"):
            if (value := getattr(self, key)) is not None:
                yield (key,), value
        for name, value in self.fields.items():
            yield ("fields", name), value


class GenericAdapter:
    name: ClassVar[str] = "generic"
    Options: ClassVar[type[StrictModel] | None] = GenericOptions

    def __init__(self, source: str, options: StrictModel | None):
        if not isinstance(options, GenericOptions):
            raise AdapterError(f"source {source}: the generic adapter needs `options` with `fields`")
        self.source, self.options = source, options
        def c(source: str) -> Callable[..., Any]:
            return templating.compile_expression(source, lenient=True)

        self._findings = c(options.findings) if options.findings else None
        self._status = c(options.status) if options.status else None
        self._scope = c(options.scope) if options.scope else None
        self._fields: dict[str, Callable[..., Any]] = {k: c(v) for k, v in options.fields.items()}

    def parse(self, event: StoredEvent) -> Parsed:
        body = event.data
        meta = {"source": event.source, "received_at": event.received_at, "headers": event.headers, "id": event.id}
        ctx: dict[str, Any] = {"body": body, "event": meta}
        items = templating.evaluate(self._findings, **ctx) if self._findings else body
        if items is None:
            items = []
        if isinstance(items, dict) or not isinstance(items, (list, tuple)):
            items = [items]
        findings = [self._one(i, item, ctx) for i, item in enumerate(items)]
        scope = None
        if self.options.full_import:
            scope = str(templating.evaluate(self._scope, **ctx)) if self._scope else self.source
        return Parsed(findings, scope)

    def _one(self, index: int, item: Any, ctx: dict[str, Any]) -> Finding:
        data: dict[str, Any] = {"asset": {}, "raw": item if isinstance(item, dict) else {"value": item}}
        try:
            for name, expr in self._fields.items():
                value = templating.evaluate(expr, item=item, **ctx)
                if name.startswith("asset."):
                    data["asset"][name[6:]] = value
                else:
                    data[name] = value
            if self._status is not None:
                data["status"] = "resolved" if _is_resolved(templating.evaluate(self._status, item=item, **ctx)) \
                    else "open"
        except TemplateError as exc:
            raise AdapterError(f"finding {index}: {exc}") from None
        if data.get("severity") is not None and self.options.severity_scale != "auto":
            from hub.models import normalize_severity

            try:
                data["severity"] = normalize_severity(data["severity"], self.options.severity_scale)  # type: ignore[arg-type]
            except ValueError as exc:
                raise AdapterError(f"finding {index}: severity: {exc}") from None
        return build_finding(f"finding {index}", data)


def _is_resolved(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in RESOLVED_WORDS
