"""SecureEndpoint (end-of-life software findings): signed webhooks and pages of its REST API.

Payloads handled:

- webhooks ``{"event", "timestamp", "data": {"finding_id", "severity", "cvss", ...}}``:
  ``finding.created`` and ``finding.severity_changed`` give the finding, ``finding.resolved`` gives it
  resolved; ``scan.completed``, ``ticket.created``, ``ticket.closed`` and unknown events give none.
- ``GET /v1/findings`` pages ``{"data": [{"id", "cve", "severity", "cvss_score", "software", ...}],
  "meta": {...}}``, and one finding object (``GET /v1/findings/{id}``).
- the asset shape (``hostname``, ``ip``, ``os``, ``risk_score``) fills ``Finding.asset``: nested as
  ``asset``, as a one-element ``affected_assets`` list, or flat in the finding. Asset records on
  their own (``ast_...`` ids, ``os_eol``) are inventory, not findings: they give none.
- an error body ``{"code", "message"}`` is an AdapterError.

Enrichment (a source's ``enrich:``, hub/enrichment.py): ``finding.created`` and ``finding.severity_changed`` carry
only the id, severity and CVSS, so the finding is built from ``GET /findings/{id}`` (the record a poll lists) and
``GET /findings/{id}/assets`` (every page): the same finding the poll gives, with the host filled in when the
finding has exactly one, and the assets listed in ``raw.assets``. ``finding.resolved`` needs nothing more.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hub.adapters import Parsed, StoredEvent
from hub.adapters._util import finding as build
from hub.adapters._util import first, ids, obj, objects, score, severity, status, text
from hub.enrichment import Fetch
from hub.errors import AdapterError
from hub.models import Finding
from hub.strict import StrictModel
from hub.urlpath import segment

SCANNER = "SecureEndpoint"
FINDING_EVENTS = ("finding.created", "finding.severity_changed", "finding.resolved")
ENRICHED_EVENTS = ("finding.created", "finding.severity_changed")


class SecureEndpointAdapter:
    """SecureEndpoint webhooks and ``/v1/findings`` pages -> Findings (tool_id = the ``fnd_...`` id)."""

    name: ClassVar[str] = "secureendpoint"
    Options: ClassVar[type[StrictModel] | None] = None
    fingerprint: ClassVar[str] = "tool_id"  # its resolve/delete webhooks carry only the finding id

    def __init__(self, source: str, options: StrictModel | None = None):
        self.source = source

    def parse(self, event: StoredEvent) -> Parsed:
        """One stored webhook body or API response -> its findings."""
        body = obj(event.data, "SecureEndpoint body")
        if "event" in body:
            return Parsed(self._webhook(body))
        if "data" in body:
            data = body["data"]
            if isinstance(data, dict):
                return Parsed([] if is_asset(data) else [to_finding(data, "data", data)])
            items = objects(data, "SecureEndpoint data")
            return Parsed([to_finding(item, f"data[{i}]", item) for i, item in enumerate(items) if not is_asset(item)])
        if "code" in body and "message" in body:
            raise AdapterError(f"SecureEndpoint error response {body['code']}: {body['message']}")
        if is_asset(body):
            return Parsed([])
        if first(body, "id", "finding_id") is None:
            raise AdapterError('SecureEndpoint body: expected a webhook ("event" and "data"), '
                               'a findings page ("data" list) or a finding object with "id"')
        return Parsed([to_finding(body, "body", body)])

    def lookups(self, event: StoredEvent) -> dict[str, list[Fetch]]:
        """A created or re-scored finding's record and its assets; nothing for other events."""
        body = event.data
        if not (isinstance(body, dict) and body.get("event") in ENRICHED_EVENTS and isinstance(body.get("data"), dict)):
            return {}
        tool_id = text(first(body["data"], "finding_id", "id"))
        if tool_id is None:
            return {}
        path = f"/findings/{segment(tool_id)}"
        return {tool_id: [Fetch(path), Fetch(f"{path}/assets", paged=True)]}

    def enriched(self, event: StoredEvent, records: dict[str, list[Any]]) -> Parsed:
        """The finding as the poll gives it (its record), with its host when it has one and its assets in raw."""
        found = []
        for tool_id, (record, assets) in records.items():
            doc = obj(record, f"SecureEndpoint GET /findings/{tool_id}")
            if "code" in doc and "message" in doc:
                raise AdapterError(f"SecureEndpoint error response {doc['code']}: {doc['message']}")
            item = obj(doc["data"], "SecureEndpoint finding data") if isinstance(doc.get("data"), dict) else doc
            hosts = [a for a in assets if isinstance(a, dict)]
            shaped = {**item, "affected_assets": hosts} if len(hosts) == 1 else item
            found.append(to_finding(shaped, f"GET /findings/{tool_id}", {**item, "assets": hosts}))
        return Parsed(found)

    def _webhook(self, body: dict[str, Any]) -> list[Finding]:
        name = body["event"]
        if not isinstance(name, str):
            raise AdapterError(f"SecureEndpoint webhook: event must be a string, got {name!r}")
        if name not in FINDING_EVENTS:
            return []  # scan.completed, ticket.*, and events added later: stored, nothing to normalize
        if "data" not in body:
            raise AdapterError(f"SecureEndpoint {name}: the `data` object is missing")
        data = obj(body["data"], f"SecureEndpoint {name}: data")
        return [to_finding(data, f"{name} data", body, resolved=name == "finding.resolved")]


def is_asset(item: dict[str, Any]) -> bool:
    """An inventory record (``ast_...`` id or ``os_eol``) rather than a finding."""
    return str(item.get("id", "")).startswith("ast_") or ("os_eol" in item and "finding_id" not in item)


def to_finding(item: dict[str, Any], where: str, raw: dict[str, Any], resolved: bool = False) -> Finding:
    """One SecureEndpoint finding (webhook ``data`` or list item) as a Finding."""
    tool_id = first(item, "finding_id", "id")
    if tool_id is None:
        raise AdapterError(f"SecureEndpoint {where}: finding_id (or id) is missing")
    software = text(first(item, "software", "software_name", "product"))
    cves = ids(first(item, "cve", "cves"))
    eol = text(first(item, "eol_date", "eos_date"))
    cvss = score(first(item, "cvss", "cvss_score"), f"SecureEndpoint {where}")
    description: str | None
    remediation: str | None
    if software:
        title = f"End-of-life software: {software}"
        description = f"{software} reached end of life on {eol}." if eol else f"{software} is end-of-life software."
        if cves:
            description += f" Known vulnerabilities: {', '.join(cves)}."
        remediation = f"Upgrade {software} to a supported release, or remove it."
    else:
        title = f"{', '.join(cves)} in end-of-life software" if cves else ""
        description = remediation = None
    return build(f"SecureEndpoint {where}", {
        "scanner": SCANNER, "tool_id": tool_id, "title": text(first(item, "title", "name")) or title,
        **severity(item.get("severity"), cvss, f"SecureEndpoint {where}"),
        "cve": cves, "location": software, "description": text(item.get("description")) or description,
        "remediation": text(item.get("remediation")) or remediation, "asset": asset(item),
        "status": "resolved" if resolved else status(item.get("status")), "raw": raw,
    })


def asset(item: dict[str, Any]) -> dict[str, Any]:
    """Finding.asset from a nested ``asset``, a single ``affected_assets`` entry, or flat host fields."""
    affected = item.get("affected_assets")
    if isinstance(item.get("asset"), dict):
        src, own_id = item["asset"], item["asset"].get("id")
    elif isinstance(affected, list) and len(affected) == 1 and isinstance(affected[0], dict):
        src, own_id = affected[0], affected[0].get("id")
    else:
        src, own_id = item, item.get("asset_id")
    hostname, ip = text(src.get("hostname")), text(src.get("ip"))
    return {"identifier": hostname or ip or text(own_id), "hostname": hostname, "ip": ip,
            "os": text(src.get("os")), "risk_score": score_or_none(src.get("risk_score"))}


def score_or_none(value: Any) -> float | None:
    """A numeric risk score, or None (risk is context: a bad value must not fail the finding)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
