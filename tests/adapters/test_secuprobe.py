"""secuprobe adapter, on the payloads of seeds/004_2e804e41623d4f81.txt (SecuProbe API reference)."""

from __future__ import annotations

import copy

import pytest

from hub.errors import AdapterError
from tests.adapters.helpers import parse

# seeds/004: GET /api/v1/scans/{id}, verbatim
SCAN = {
    "scanId": "550e8400-...",
    "url": "https://your-domain.com",
    "status": "completed",
    "secuScore": 78,
    "vulnerabilitiesCount": {"critical": 1, "high": 3, "medium": 5, "low": 8, "info": 12},
    "completedAt": "2026-03-10T12:00:00Z",
    "reportUrl": "https://secuprobe.io/scan/550e8400-...",
}

# seeds/004: GET /api/v1/scans/{id}/vulnerabilities, verbatim (the seed shows 1 of its 29 items)
VULNS = {
    "total": 29,
    "vulnerabilities": [
        {
            "id": "vuln-uuid",
            "title": "Missing Content-Security-Policy",
            "severity": "high",
            "category": "Security Headers",
            "description": "No CSP header found...",
            "remediationGuide": "1. Add a Content-Security-Policy header...",
        }
    ],
}

HSTS = {"id": "vuln-uuid-2", "title": "Missing Strict-Transport-Security", "severity": "Medium",
        "category": "Security Headers", "description": "No HSTS header.", "remediationGuide": "Send HSTS."}


def combined(*vulns: dict, **scan: object) -> dict:
    """The body the poll job stores: the scan and its complete vulnerabilities response."""
    return {"scan": {**SCAN, **scan}, "vulnerabilities": {"total": len(vulns), "vulnerabilities": list(vulns)}}


def test_seed_scan_and_vulnerabilities_map_to_findings():
    parsed = parse("secuprobe", {"scan": SCAN, "vulnerabilities": VULNS})
    [f] = parsed.findings
    assert (f.title, f.severity, f.tool_id, f.scanner) == ("Missing Content-Security-Policy", "high", "vuln-uuid",
                                                          "SecuProbe")
    assert f.rule_id == "Security Headers: Missing Content-Security-Policy"
    assert (f.description, f.remediation) == ("No CSP header found...", "1. Add a Content-Security-Policy header...")
    assert f.location == "https://your-domain.com"
    assert (f.asset.identifier, f.asset.hostname) == ("your-domain.com", "your-domain.com")
    assert f.raw == VULNS["vulnerabilities"][0]
    # total says 29 but 1 item came: a partial list never resolves the other 28
    assert parsed.full_scope is None


def test_a_complete_result_replaces_the_previous_one_for_its_url():
    parsed = parse("secuprobe", combined(VULNS["vulnerabilities"][0], HSTS))
    assert parsed.full_scope == "secuprobe:https://your-domain.com"
    assert [f.title for f in parsed.findings] == ["Missing Content-Security-Policy",
                                                  "Missing Strict-Transport-Security"]


def test_a_completed_scan_with_no_vulnerabilities_resolves_everything_for_the_url():
    parsed = parse("secuprobe", combined())
    assert parsed.findings == [] and parsed.full_scope == "secuprobe:https://your-domain.com"


def test_vulnerabilities_as_a_plain_list_is_complete():
    body = {"scan": SCAN, "vulnerabilities": [HSTS]}
    assert parse("secuprobe", body).full_scope == "secuprobe:https://your-domain.com"


def test_scope_drops_a_trailing_slash_and_asset_is_the_host():
    parsed = parse("secuprobe", combined(HSTS, url="https://shop.example.com:8443/"))
    assert parsed.full_scope == "secuprobe:https://shop.example.com:8443"
    assert parsed.findings[0].asset.identifier == "shop.example.com"
    assert parsed.findings[0].location == "https://shop.example.com:8443/"


def test_two_checks_of_one_category_stay_two_findings():
    a, b = parse("secuprobe", combined(VULNS["vulnerabilities"][0], HSTS)).findings
    assert a.rule_id != b.rule_id
    assert (a.severity, b.severity) == ("high", "medium")


@pytest.mark.parametrize("status", ["queued", "running", "failed", "FAILED"])
def test_a_scan_that_did_not_complete_gives_nothing_and_resolves_nothing(status):
    parsed = parse("secuprobe", combined(HSTS, status=status))
    assert parsed.findings == [] and parsed.full_scope is None


def test_a_scan_without_its_list_gives_nothing():
    for body in (SCAN, {"scan": SCAN}):
        parsed = parse("secuprobe", body)
        assert parsed.findings == [] and parsed.full_scope is None
    # seeds/004 POST /scans answer
    queued = {"scanId": "550e8400-e29b-41d4-a716-446655440000", "status": "queued", "estimatedDuration": 120,
              "resultsUrl": "https://secuprobe.io/api/v1/scans/550e8400-e29b-41d4-a716-446655440000"}
    assert parse("secuprobe", queued).full_scope is None


def test_a_bare_vulnerabilities_response_with_the_url_next_to_it():
    for key in ("url", "scanUrl", "targetUrl"):
        body = {**copy.deepcopy(VULNS), "total": 1, key: "https://your-domain.com"}
        parsed = parse("secuprobe", body)
        assert parsed.full_scope == "secuprobe:https://your-domain.com"
        assert parsed.findings[0].title == "Missing Content-Security-Policy"


def test_a_vulnerability_with_its_own_url_is_located_there():
    vuln = {**HSTS, "url": "https://app.your-domain.com/login"}
    [f] = parse("secuprobe", combined(vuln)).findings
    assert (f.location, f.asset.identifier) == ("https://app.your-domain.com/login", "app.your-domain.com")


@pytest.mark.parametrize(("given", "expected"), [("CRITICAL", "critical"), ("High", "high"), ("info", "info"),
                                                 ("Informational", "info"), ("low", "low")])
def test_severity_casings(given, expected):
    assert parse("secuprobe", combined({**HSTS, "severity": given})).findings[0].severity == expected


@pytest.mark.parametrize(("body", "message"), [
    ({"vulnerabilities": VULNS}, "the scanned URL is missing"),
    (combined({**HSTS, "title": None}), "SecuProbe vulnerabilities[0]: title is missing"),
    ({"scan": SCAN, "vulnerabilities": "none"}, "SecuProbe vulnerabilities: expected a list, got a string"),
    ({"scan": "550e8400", "vulnerabilities": []}, "SecuProbe scan: expected a JSON object"),
    (combined({**HSTS, "severity": "nope"}), "vulnerabilities[0]: severity: unknown severity 'nope'"),
    ({"error": "Resource does not exist or is not yours"}, "error response: Resource does not exist"),
    (["not", "an", "object"], "SecuProbe body: expected a JSON object"),
])
def test_bad_payloads_raise_adapter_error(body, message):
    with pytest.raises(AdapterError) as info:
        parse("secuprobe", body)
    assert message in str(info.value)
