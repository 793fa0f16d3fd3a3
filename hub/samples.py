"""Sample events for ``hub send-test``: one realistic body per adapter, fresh ids on every call."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hub.ids import iso


def _suffix() -> str:
    return os.urandom(4).hex()


def _secureendpoint(now: float) -> dict[str, Any]:
    return {"event": "finding.created", "timestamp": iso(now)[:19] + "Z",
            "data": {"finding_id": f"fnd_test{_suffix()}", "severity": "critical", "cvss": 9.8,
                     "cve": "CVE-2024-21412", "software": "OpenSSL 1.0.2", "eol_date": "2020-01-01",
                     "hostname": "db-prod-02.internal", "ip": "10.0.14.22", "status": "open"}}


def _obexum(now: float) -> dict[str, Any]:
    return {"event": "scan.uploaded", "timestamp": iso(now), "engagement_id": f"eng_test{_suffix()}",
            "scan_id": f"scn_test{_suffix()}",
            "host": {"hostname": "WS-FIN-042", "ip": "10.20.4.42", "os": "Windows 11 23H2"},
            "findings": [{"id": f"obx_test{_suffix()}", "name": "Tamper Protection disabled", "severity": "high",
                          "status": "open", "rule_id": "WIN-DEF-002", "mitre": ["T1562.001"],
                          "remediation": {"commands": ["Set-MpPreference -DisableTamperProtection $false"],
                                          "verification": "Get-MpPreference | Select-Object -ExpandProperty "
                                                          "IsTamperProtected",
                                          "risk_of_fix": "low"}}]}


def _neuro(now: float) -> dict[str, Any]:
    return {"event": "finding.created", "timestamp": iso(now)[:19] + "Z",
            "data": {"id": f"find_test{_suffix()}", "title": "SQL Injection in Login", "project_id": "proj_123",
                     "severity": "High", "status": "Open", "description": "SQL injection vulnerability found in the "
                     "username parameter of /login.", "remediation": "Use parameterized queries."}}


def _secuprobe(now: float) -> dict[str, Any]:
    scan_id = f"550e8400-test-{_suffix()}"
    return {"scan": {"scanId": scan_id, "url": "https://your-domain.com", "status": "completed", "secuScore": 78,
                     "vulnerabilitiesCount": {"critical": 0, "high": 1, "medium": 0, "low": 0, "info": 0},
                     "completedAt": iso(now)[:19] + "Z", "reportUrl": f"https://secuprobe.io/scan/{scan_id}"},
            "vulnerabilities": {"total": 1, "vulnerabilities": [
                {"id": f"vuln-{_suffix()}", "title": "Missing Content-Security-Policy", "severity": "high",
                 "category": "Security Headers", "description": "No CSP header found on the home page.",
                 "remediationGuide": "1. Add a Content-Security-Policy header..."}]}}


def _strobes(now: float) -> dict[str, Any]:
    return {"scanner_name": "internal_binary_scanner", "project_id": "infra-prod", "findings": [
        {"id": f"sast-{_suffix()}", "title": "Buffer Overflow in auth_service", "severity": "critical",
         "description": "Exploitable input overflow in login module", "asset_identifier": "svc-auth-prod",
         "file": "/opt/auth_service/auth.py", "cwe": "CWE-120", "first_detected": iso(now)}]}


def _generic(now: float) -> dict[str, Any]:
    return {"id": f"evt_test{_suffix()}", "type": "finding", "created_at": iso(now),
            "finding": {"id": f"f-{_suffix()}", "title": "Test finding from hub send-test", "severity": "high",
                        "asset": "web-01.example.internal", "cve": ["CVE-2026-1234"]}}


def _linear(now: float) -> dict[str, Any]:
    """An Issue update as Linear sends it; its id is linked to no finding, so it is stored and changes nothing."""
    return {"action": "update", "type": "Issue", "createdAt": iso(now), "webhookTimestamp": int(now * 1000),
            "url": "https://linear.app/example/issue/SEC-1", "organizationId": "org-test",
            "data": {"id": f"00000000-0000-4000-8000-{os.urandom(6).hex()}", "identifier": "SEC-1",
                     "title": "Test issue from hub send-test", "state": {"type": "completed", "name": "Done"}}}


SAMPLES: dict[str, Callable[[float], dict[str, Any]]] = {
    "linear": _linear,
    "secureendpoint": _secureendpoint,
    "obexum": _obexum,
    "neuro": _neuro,
    "secuprobe": _secuprobe,
    "strobes": _strobes,
    "generic": _generic,
}


def sample_body(adapter: str, now: float) -> dict[str, Any]:
    return SAMPLES.get(adapter, _generic)(now)


def slack_form_body() -> bytes:
    return (b"token=unused&team_id=T0001&team_domain=example&channel_id=C1&user_id=U1&user_name=hub"
            b"&command=%2Ffinding&text=test+from+hub+send-test&trigger_id=" + _suffix().encode())
