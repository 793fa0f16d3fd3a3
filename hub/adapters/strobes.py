"""Strobes (vulnerability management): the bulk findings ingestion payload, or one finding.

Payloads handled:

- ``{"scanner_name", "project_id", "findings": [{"title", "severity", "description",
  "asset_identifier", "file", ...}]}`` as posted to ``/api/v1/findings``;
- one finding object on its own (no ``findings`` list), or a bare list of them.

Items may carry ``cve``/``cves`` (string, comma list or list), ``cwe``/``cwes`` ("CWE-79", 79 or a
list), ``qid`` (used as rule_id when there is no ``rule_id``), ``cvss``/``cvss_score``, remediation
notes (``remediation``, ``remediation_notes``, ``solution``), asset metadata (``business_unit``,
``environment``, ``exposure``/``network_visibility``, ``tags``), a ``status`` (delta updates:
``resolved`` resolves) and the tool's id (``id``, ``finding_id`` or ``external_id``). The first
detection timestamp (``first_detected``, ``detected_at``, ``first_seen``) becomes the finding's
``first_seen`` when the hub sees it for the first time, so SLA dates run from the tool's detection.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hub.adapters import Parsed, StoredEvent
from hub.adapters._util import finding as build
from hub.adapters._util import first, ids, obj, objects, score, severity, status, strings, text
from hub.errors import AdapterError
from hub.ids import iso, parse_iso
from hub.models import Finding
from hub.strict import StrictModel

SCANNER = "Strobes"


class StrobesAdapter:
    """Strobes bulk ingestion payloads -> Findings (scanner = ``scanner_name``, location = ``file``)."""

    name: ClassVar[str] = "strobes"
    Options: ClassVar[type[StrictModel] | None] = None

    def __init__(self, source: str, options: StrictModel | None = None):
        self.source = source

    def parse(self, event: StoredEvent) -> Parsed:
        """One stored ingestion payload -> its findings."""
        body = event.data
        if isinstance(body, list):
            items = objects(body, "Strobes body")
            return Parsed([to_finding(item, f"[{i}]", None) for i, item in enumerate(items)])
        body = obj(body, "Strobes body")
        if "findings" not in body:
            return Parsed([to_finding(body, "body", None)])
        scanner = text(body.get("scanner_name"))
        items = objects(body["findings"], "Strobes findings")
        return Parsed([to_finding(item, f"findings[{i}]", scanner) for i, item in enumerate(items)])


def to_finding(item: dict[str, Any], where: str, scanner: str | None) -> Finding:
    """One Strobes finding; ``scanner`` is the payload's ``scanner_name``."""
    where = f"Strobes {where}"
    title = text(first(item, "title", "name"))
    if title is None:
        raise AdapterError(f"{where}: title is missing")
    cvss = score(first(item, "cvss_score", "cvss"), where)
    return build(where, {
        "scanner": text(first(item, "scanner_name", "scanner")) or scanner or SCANNER,
        "tool_id": text(first(item, "id", "finding_id", "external_id")), "title": title,
        **severity(item.get("severity"), cvss, where),
        "cve": ids(first(item, "cves", "cve")), "cwe": ids(first(item, "cwes", "cwe")),
        "rule_id": text(first(item, "rule_id", "qid")),
        "location": text(first(item, "file", "location", "path", "url")),
        "description": text(item.get("description")),
        "remediation": text(first(item, "remediation", "remediation_notes", "solution")),
        "references": strings(item.get("references")), "asset": asset(item),
        "status": status(first(item, "status", "state")), "raw": item,
        "first_seen": detected(first(item, "first_detected", "detected_at", "first_seen", "first_found")),
    })


def detected(value: Any) -> str | None:
    """An ISO 8601 detection time normalized to the hub's format; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return iso(parse_iso(value))
    except ValueError:
        return None


def asset(item: dict[str, Any]) -> dict[str, Any]:
    """Finding.asset from ``asset_identifier`` (or an ``asset`` object) and the asset metadata keys."""
    nested = isinstance(item.get("asset"), dict)
    src = item["asset"] if nested else item
    names = ("asset_identifier", "identifier", "name") if nested else ("asset_identifier", "asset")
    return {"identifier": text(first(src, *names)),
            "hostname": text(src.get("hostname")), "ip": text(first(src, "ip", "ip_address")),
            "environment": text(src.get("environment")), "business_unit": text(src.get("business_unit")),
            "exposure": text(first(src, "exposure", "network_visibility")),
            "tags": strings(first(src, "tags", "asset_tags"))}
