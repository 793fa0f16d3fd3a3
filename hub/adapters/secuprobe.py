"""SecuProbe (web scanner): a completed scan and its vulnerabilities, as one full result per URL.

Payloads handled:

- ``{"scan": {"scanId", "url", "status", "completedAt", ...}, "vulnerabilities": [...]}``: what the
  poll job stores and a webhook relay posts; ``vulnerabilities`` may also be the whole
  ``GET /scans/{id}/vulnerabilities`` response ``{"total", "vulnerabilities": [...]}``.
- that response on its own, with the scanned URL next to it (``url``, ``scanUrl`` or ``targetUrl``).
- a scan object on its own (``GET /scans/{id}``), or a scan that is not ``completed``: no findings.
- an error body ``{"error": "..."}`` is an AdapterError.

A completed scan replaces the previous result for its URL: ``full_scope`` is ``secuprobe:<url>``
(trailing ``/`` removed), so open findings of that URL missing from it resolve. When ``total`` says the
list is longer than what was sent, the list is partial and nothing is resolved.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hub.adapters import Parsed, StoredEvent
from hub.adapters._util import finding as build
from hub.adapters._util import first, host_of, ids, kind, obj, objects, score, severity, strings, text
from hub.errors import AdapterError
from hub.models import Finding
from hub.strict import StrictModel

SCANNER = "SecuProbe"


class SecuProbeAdapter:
    """SecuProbe scan results -> Findings, scoped to the scanned URL."""

    name: ClassVar[str] = "secuprobe"
    Options: ClassVar[type[StrictModel] | None] = None

    def __init__(self, source: str, options: StrictModel | None = None):
        self.source = source

    def parse(self, event: StoredEvent) -> Parsed:
        """One stored scan result -> its findings and the scope they replace."""
        body = obj(event.data, "SecuProbe body")
        if "error" in body and not {"scan", "scanId", "vulnerabilities"} & body.keys():
            raise AdapterError(f"SecuProbe error response: {body['error']}")
        scan = obj(body["scan"], "SecuProbe scan") if "scan" in body else body if "scanId" in body else {}
        state = text(scan.get("status"))
        if state is not None and state.lower() != "completed":
            return Parsed([])  # queued, running or failed: never resolve anything on it
        listed, total = body.get("vulnerabilities"), body.get("total")
        if isinstance(listed, dict):
            inner = listed
            listed, total = inner.get("vulnerabilities"), inner.get("total")
        if listed is None:
            return Parsed([])  # a status without its list: nothing to compare against
        vulns = objects(listed, "SecuProbe vulnerabilities")
        url = text(first(scan, "url") or first(body, "url", "scanUrl", "targetUrl"))
        if url is None:
            raise AdapterError("SecuProbe: the scanned URL is missing: expected scan.url, or url next to "
                               "the vulnerabilities list")
        findings = [to_finding(v, i, url) for i, v in enumerate(vulns)]
        partial = isinstance(total, int) and not isinstance(total, bool) and total > len(vulns)
        return Parsed(findings, None if partial else "secuprobe:" + url.rstrip("/"))


def to_finding(vuln: dict[str, Any], index: int, url: str) -> Finding:
    """One SecuProbe vulnerability found at ``url`` as a Finding."""
    where = f"SecuProbe vulnerabilities[{index}]"
    title = text(vuln.get("title"))
    if title is None:
        raise AdapterError(f"{where}: title is missing (got {kind(vuln.get('title'))})")
    category = text(vuln.get("category"))
    location = text(vuln.get("url")) or url
    host = host_of(location) or host_of(url)
    cvss = score(first(vuln, "cvssScore", "cvss"), where)
    return build(where, {
        "scanner": SCANNER, "tool_id": text(vuln.get("id")), "title": title,
        **severity(vuln.get("severity"), cvss, where),
        # category alone is shared by several checks (all "Security Headers"), and the id may be per scan
        "rule_id": f"{category}: {title}" if category else title,
        "cwe": ids(vuln.get("cwe")), "references": strings(vuln.get("references")),
        "description": text(vuln.get("description")), "remediation": text(vuln.get("remediationGuide")),
        "location": location, "asset": {"identifier": host or url, "hostname": host}, "raw": vuln,
    })
