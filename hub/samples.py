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


def _generic(now: float) -> dict[str, Any]:
    return {"id": f"evt_test{_suffix()}", "type": "finding", "created_at": iso(now),
            "finding": {"id": f"f-{_suffix()}", "title": "Test finding from hub send-test", "severity": "high",
                        "asset": "web-01.example.internal", "cve": ["CVE-2026-1234"]}}


SAMPLES: dict[str, Callable[[float], dict[str, Any]]] = {
    "secureendpoint": _secureendpoint,
    "generic": _generic,
}


def sample_body(adapter: str, now: float) -> dict[str, Any]:
    return SAMPLES.get(adapter, _generic)(now)


def slack_form_body() -> bytes:
    return (b"token=unused&team_id=T0001&team_domain=example&channel_id=C1&user_id=U1&user_name=hub"
            b"&command=%2Ffinding&text=test+from+hub+send-test&trigger_id=" + _suffix().encode())
