"""Obexum (endpoint audit portal): the ``generic`` SIEM webhook / scan upload, and STIX 2.1 bundles.

Payloads handled:

- the ``generic`` findings payload (the SIEM webhook fired on scan upload, ``report.json``, the
  engagement findings list): ``{"engagement_id"?, "scan_id"?, "host"?, "findings": [{"id", "name" or
  "title", "severity", "status", "rule_id", "description", "remediation", "cves", "mitre", "host"}]}``,
  also under ``data`` or as a bare list. ``host`` on the payload applies to findings without their own.
- STIX 2.1 bundles (``report.stix``): each ``x-obexum-finding`` object is a finding; ``vulnerability``
  objects (CVE) and ``attack-pattern`` objects (ATT&CK technique) joined to it by ``relationship``
  objects (``exposes``, ``uses``; either direction) fill ``cve`` and ``attack_techniques``.
- anything else with an ``event`` and no findings (e.g. a test ping): no findings.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, ClassVar

from hub.adapters import Parsed, StoredEvent
from hub.adapters._util import finding as build
from hub.adapters._util import first, ids, listify, obj, objects, present, score, severity, status, strings, text
from hub.errors import AdapterError
from hub.models import Finding
from hub.strict import StrictModel

SCANNER = "Obexum"
FINDING_TYPE = "x-obexum-finding"
CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
TECHNIQUE = re.compile(r"T\d{4}(?:\.\d{3})?")


class ObexumAdapter:
    """Obexum generic webhooks and STIX 2.1 bundles -> Findings."""

    name: ClassVar[str] = "obexum"
    Options: ClassVar[type[StrictModel] | None] = None

    def __init__(self, source: str, options: StrictModel | None = None):
        self.source = source

    def parse(self, event: StoredEvent) -> Parsed:
        """One stored webhook body, scan upload or STIX bundle -> its findings."""
        body = event.data
        if isinstance(body, list):
            return Parsed([generic(item, f"[{i}]", None) for i, item in enumerate(objects(body, "Obexum body"))])
        body = obj(body, "Obexum body")
        if body.get("type") == "bundle":
            return Parsed(stix(body))
        for key in ("findings", "data"):
            if key in body:
                items = objects(body[key], f"Obexum {key}")
                return Parsed([generic(item, f"{key}[{i}]", body.get("host")) for i, item in enumerate(items)])
        if "event" in body:
            return Parsed([])  # a ping or an event without findings: stored, nothing to normalize
        if first(body, "name", "title") is not None:
            return Parsed([generic(body, "body", None)])
        raise AdapterError('Obexum body: expected a STIX bundle ("type": "bundle") or a findings payload '
                           '("findings" list)')


def remediation_text(value: Any) -> str | None:
    """``x_obexum_remediation`` (commands, verification, risk_of_fix) as readable text; strings as they are."""
    if not isinstance(value, dict):
        return text(value)
    lines = [t] if (t := text(first(value, "summary", "text", "guidance", "description"))) else []
    if commands := strings(value.get("commands")):
        lines += ["Run:", *(f"    {c}" for c in commands)]
    if verify := text(value.get("verification")):
        lines.append(f"Verify: {verify}")
    if risk := text(value.get("risk_of_fix")):
        lines.append(f"Risk of fix: {risk}")
    return "\n".join(lines) or None


def host_asset(value: Any) -> dict[str, Any]:
    """Finding.asset from a host name string or ``{"hostname", "ip", "os", ...}``."""
    if isinstance(value, dict):
        hostname, ip = text(first(value, "hostname", "name")), text(value.get("ip"))
        return {"identifier": hostname or ip or text(value.get("id")), "hostname": hostname, "ip": ip,
                "os": text(value.get("os")), "environment": text(value.get("environment"))}
    name = text(value)
    return {"identifier": name, "hostname": name}


def common(item: dict[str, Any], where: str) -> dict[str, Any]:
    """Fields a generic finding and an ``x-obexum-finding`` object share."""
    cvss = score(first(item, "cvss", "cvss_score"), where)
    return {"scanner": SCANNER, "title": text(first(item, "name", "title")),
            **severity(item.get("severity"), cvss, where), "rule_id": text(first(item, "rule_id", "check_id")),
            "description": text(item.get("description")), "status": status(item.get("status")), "raw": item}


def generic(item: dict[str, Any], where: str, host: Any) -> Finding:
    """One finding of the generic payload."""
    where = f"Obexum {where}"
    if first(item, "name", "title") is None:
        raise AdapterError(f"{where}: name (or title) is missing")
    rem = first(item, "remediation", "x_obexum_remediation")
    return build(where, {
        **common(item, where), "tool_id": text(first(item, "id", "finding_id")),
        "remediation": remediation_text(rem), "cve": ids(first(item, "cves", "cve")),
        "cwe": ids(first(item, "cwes", "cwe")),
        "attack_techniques": ids(first(item, "attack_techniques", "mitre", "mitre_attack", "techniques")),
        "asset": host_asset(first(item, "host", "hostname", "asset", "endpoint") or host),
        "references": strings(item.get("references")),
    })


def stix(bundle: dict[str, Any]) -> list[Finding]:
    """The findings of a STIX 2.1 bundle, with CVE and ATT&CK ids joined through relationships."""
    objs = objects(bundle.get("objects", []), "Obexum bundle.objects")
    by_id = {o["id"]: o for o in objs if isinstance(o.get("id"), str)}
    cves: dict[str, list[str]] = defaultdict(list)
    techniques: dict[str, list[str]] = defaultdict(list)
    for rel in (o for o in objs if o.get("type") == "relationship"):
        ends = (str(rel.get("source_ref")), str(rel.get("target_ref")))
        for mine, other in (ends, ends[::-1]):
            if by_id.get(mine, {}).get("type") != FINDING_TYPE or other not in by_id:
                continue  # dangling or unrelated references are ignored
            linked = by_id[other]
            if linked.get("type") == "vulnerability":
                cves[mine] += external_ids(linked, "cve", CVE)
            elif linked.get("type") == "attack-pattern":
                techniques[mine] += external_ids(linked, "mitre-attack", TECHNIQUE)
    out = []
    for i, o in enumerate(objs):
        if o.get("type") != FINDING_TYPE:
            continue
        where = f"Obexum bundle.objects[{i}]"
        if not isinstance(o.get("id"), str) or not present(o.get("name")):
            raise AdapterError(f"{where}: an {FINDING_TYPE} needs an id and a name")
        refs = strings([r for r in listify(o.get("external_references")) if isinstance(r, dict)])
        out.append(build(where, {
            **common(o, where), "tool_id": o["id"], "remediation": remediation_text(o.get("x_obexum_remediation")),
            "cve": cves[o["id"]], "attack_techniques": techniques[o["id"]], "references": refs,
            "asset": host_asset(first(o, "x_obexum_host", "x_obexum_hostname", "x_obexum_asset")),
        }))
    return out


def external_ids(sdo: dict[str, Any], source_name: str, pattern: re.Pattern[str]) -> list[str]:
    """Ids from ``external_references`` with this ``source_name``, else the object's name if it is one."""
    refs = [r for r in listify(sdo.get("external_references")) if isinstance(r, dict)]
    found = [str(r["external_id"]) for r in refs
             if str(r.get("source_name", "")).lower() == source_name and present(r.get("external_id"))]
    name = str(sdo.get("name", "")).strip()
    return found or ([name] if pattern.fullmatch(name) else [])
