"""NEURO (pentest management): webhooks and the ``{success, data, meta}`` API envelope.

Payloads handled:

- webhooks ``{"event", "timestamp", "data": {"id", "title", "project_id", "severity"?, ...}}``:
  ``finding.created`` and ``finding.updated`` give the finding, ``finding.deleted`` gives it resolved;
  ``project.created``, ``report.generated`` and unknown events give none.
- API responses ``{"success": true, "data": [finding, ...] | finding, "meta": {...}}`` (``GET /findings``,
  ``GET /projects/{id}/findings``, ``GET /findings/{id}``); ``"success": false`` is an AdapterError.
- one finding object as posted to ``POST /findings`` (``project_id``, ``title``, ``severity``, ...).

Severities are title case (``Critical`` ... ``Info``); statuses such as ``Open``, ``Confirmed`` stay
open, ``Remediated``/``Fixed``/``Closed`` resolve, ``False Positive``/``Accepted Risk`` dismiss.

Enrichment (a source's ``enrich:``, hub/enrichment.py): a ``finding.created`` or ``finding.updated`` whose data lacks
the severity, description or remediation (NEURO's documented webhook carries only id, title and project) is built
from ``GET /findings/{id}``, the record a poll lists; ``finding.deleted`` needs nothing more.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hub.adapters import Parsed, StoredEvent
from hub.adapters._util import finding as build
from hub.adapters._util import first, ids, obj, objects, present, score, severity, status, strings, text
from hub.enrichment import Fetch
from hub.errors import AdapterError
from hub.models import Finding
from hub.strict import StrictModel
from hub.urlpath import segment

SCANNER = "NEURO"
FINDING_EVENTS = ("finding.created", "finding.updated", "finding.deleted")
ENRICHED_EVENTS = ("finding.created", "finding.updated")
COMPLETE = ("severity", "description", "remediation")  # a webhook with all of these needs no GET


class NeuroAdapter:
    """NEURO webhooks and API pages -> Findings (tool_id = the NEURO finding id)."""

    name: ClassVar[str] = "neuro"
    Options: ClassVar[type[StrictModel] | None] = None
    fingerprint: ClassVar[str] = "tool_id"  # its resolve/delete webhooks carry only the finding id

    def __init__(self, source: str, options: StrictModel | None = None):
        self.source = source

    def lookups(self, event: StoredEvent) -> dict[str, list[Fetch]]:
        """A created or updated finding's record, when the webhook lacks its details."""
        return _lookups(event)

    def enriched(self, event: StoredEvent, records: dict[str, list[Any]]) -> Parsed:
        """The finding as the poll gives it: from its record."""
        return _enriched(records)

    def parse(self, event: StoredEvent) -> Parsed:
        """One stored webhook body or API response -> its findings."""
        body = obj(event.data, "NEURO body")
        if "event" in body:
            name = body["event"]
            if name not in FINDING_EVENTS:
                return Parsed([])  # project.created, report.generated, later events: stored only
            if "data" not in body:
                raise AdapterError(f"NEURO {name}: the `data` object is missing")
            data = obj(body["data"], f"NEURO {name}: data")
            return Parsed([to_finding(data, f"{name} data", body, deleted=name == "finding.deleted")])
        if body.get("success") is False:
            error = body.get("error")
            code, message = (error.get("code"), error.get("message")) if isinstance(error, dict) else (None, error)
            raise AdapterError(f"NEURO error response{f' {code}' if code else ''}: {message}")
        if "data" in body:
            data = body["data"]
            if isinstance(data, dict):
                return Parsed([to_finding(data, "data", data)])
            items = objects(data, "NEURO data")
            return Parsed([to_finding(item, f"data[{i}]", item) for i, item in enumerate(items)])
        if "title" in body or "id" in body:
            return Parsed([to_finding(body, "body", body, require_id=False)])
        raise AdapterError('NEURO body: expected a webhook ("event" and "data"), an API envelope '
                           '("success", "data") or a finding object')


def _lookups(event: StoredEvent) -> dict[str, list[Fetch]]:
    body = event.data
    if not (isinstance(body, dict) and body.get("event") in ENRICHED_EVENTS and isinstance(body.get("data"), dict)):
        return {}
    data = body["data"]
    tool_id = text(first(data, "id", "finding_id"))
    if tool_id is None or all(present(data.get(key)) for key in COMPLETE):
        return {}
    return {tool_id: [Fetch(f"/findings/{segment(tool_id)}")]}


def _enriched(records: dict[str, list[Any]]) -> Parsed:
    found = []
    for tool_id, (doc,) in records.items():
        body = obj(doc, f"NEURO GET /findings/{tool_id}")
        if body.get("success") is False:
            error = body.get("error")
            raise AdapterError(f"NEURO error response: {error.get('code') if isinstance(error, dict) else error}")
        item = obj(body["data"], "NEURO finding data") if "data" in body else body
        found.append(to_finding(item, f"GET /findings/{tool_id}", item))
    return Parsed(found)


def to_finding(item: dict[str, Any], where: str, raw: dict[str, Any], deleted: bool = False,
               require_id: bool = True) -> Finding:
    """One NEURO finding as a Finding; a deleted finding is reported resolved."""
    where = f"NEURO {where}"
    tool_id = text(first(item, "id", "finding_id"))
    if tool_id is None and require_id:
        raise AdapterError(f"{where}: id is missing")
    if tool_id is None and not text(item.get("title")):
        raise AdapterError(f"{where}: a finding without an id needs a title")
    cvss = score(first(item, "cvss_score", "cvss"), where)
    return build(where, {
        "scanner": SCANNER, "tool_id": tool_id, "title": text(item.get("title")),
        **severity(item.get("severity"), cvss, where),
        "cve": ids(first(item, "cve", "cves")), "cwe": ids(first(item, "cwe", "cwes")),
        "description": text(item.get("description")),
        "remediation": text(first(item, "remediation", "recommendation")),
        "location": text(first(item, "location", "url", "endpoint", "affected_url")),
        "asset": asset(first(item, "asset", "affected_asset", "asset_name", "host", "target")),
        "references": strings(item.get("references")),
        "status": "resolved" if deleted else status(item.get("status")), "raw": raw,
    })


def asset(value: Any) -> dict[str, Any]:
    """Finding.asset from an asset name or ``{"id", "name", "hostname", "ip", "url"}``."""
    if isinstance(value, dict):
        hostname, ip = text(value.get("hostname")), text(value.get("ip"))
        name = text(first(value, "name", "hostname", "ip", "url", "id"))
        return {"identifier": name, "hostname": hostname, "ip": ip,
                "environment": text(value.get("environment"))}
    return {"identifier": text(value)}
