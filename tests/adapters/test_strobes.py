"""strobes adapter, on the payloads of seeds/000_2e5f51e4b35f5be4.txt (Strobes API guide)."""

from __future__ import annotations

import pytest

from hub.errors import AdapterError
from tests.adapters.helpers import parse

# seeds/000: "Example payload" for /api/v1/findings, verbatim (the seed prints it with curly quotes)
SEED = {
    "scanner_name": "internal_binary_scanner",
    "project_id": "infra-prod",
    "findings": [
        {
            "title": "Buffer Overflow in auth_service",
            "severity": "critical",
            "description": "Exploitable input overflow in login module",
            "asset_identifier": "svc-auth-prod",
            "file": "/opt/auth_service/auth.py",
        }
    ],
}

# The other fields seeds/000 lists for ingestion (CVE/QID/CWE, detection timestamps, remediation notes)
FULL = {
    "id": "sast-4411", "title": "Outdated OpenSSL in base image", "severity": "High", "cvss_score": 7.5,
    "description": "libssl 1.1.1k in the runtime image.", "asset_identifier": "svc-auth-prod",
    "file": "Dockerfile", "cves": ["CVE-2023-0286", "cve-2022-4304"], "cwes": [295, "CWE-310"], "qid": 38863,
    "first_detected": "2026-01-02T03:04:05Z", "last_detected": "2026-03-01T00:00:00Z",
    "remediation_notes": "Rebuild on the patched base image.", "environment": "prod", "business_unit": "Payments",
    "network_visibility": "external", "tags": ["pci", "tier-1"],
}


def findings(body):
    parsed = parse("strobes", body)
    assert parsed.full_scope is None
    return parsed.findings


def test_seed_bulk_payload():
    [f] = findings(SEED)
    assert f.title == "Buffer Overflow in auth_service"
    assert f.severity == "critical"
    assert f.description == "Exploitable input overflow in login module"
    assert f.asset.identifier == "svc-auth-prod"
    assert f.location == "/opt/auth_service/auth.py"
    assert f.scanner == "internal_binary_scanner"
    assert (f.tool_id, f.status) == (None, "open")
    assert f.raw == SEED["findings"][0]


def test_every_listed_field_maps():
    [f] = findings({"scanner_name": "sast", "project_id": "infra-prod", "findings": [FULL]})
    assert (f.tool_id, f.severity, f.cvss_score) == ("sast-4411", "high", 7.5)
    assert f.cve == ["CVE-2022-4304", "CVE-2023-0286"]
    assert f.cwe == ["CWE-295", "CWE-310"]
    assert f.rule_id == "38863"  # the QID
    assert f.remediation == "Rebuild on the patched base image."
    assert f.asset.model_dump(exclude_defaults=True) == {
        "identifier": "svc-auth-prod", "environment": "prod", "business_unit": "Payments", "exposure": "external",
        "tags": ["pci", "tier-1"]}
    assert f.first_seen == "2026-01-02T03:04:05.000Z"  # the tool's detection time starts the SLA clock
    assert f.raw["first_detected"] == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize(("cve", "expected"), [
    ("CVE-2023-0286", ["CVE-2023-0286"]), ("CVE-2023-0286, CVE-2022-4304", ["CVE-2022-4304", "CVE-2023-0286"]),
    (["CVE-2023-0286"], ["CVE-2023-0286"]), (None, []), ("", []),
])
def test_cve_as_string_comma_list_or_list(cve, expected):
    [f] = findings({"title": "t", "cve": cve})
    assert f.cve == expected


@pytest.mark.parametrize(("cwe", "expected"), [
    ("CWE-79", ["CWE-79"]), (79, ["CWE-79"]), ("79", ["CWE-79"]), (["cwe-79", 89], ["CWE-79", "CWE-89"]),
])
def test_cwe_forms(cwe, expected):
    [f] = findings({"title": "t", "cwe": cwe})
    assert f.cwe == expected


@pytest.mark.parametrize(("key", "value"), [("id", "a-1"), ("finding_id", "a-1"), ("external_id", "a-1"),
                                            ("id", 12)])
def test_the_tools_id_under_any_of_its_names(key, value):
    [f] = findings({"title": "t", key: value})
    assert f.tool_id == str(value)


def test_a_single_finding_object_and_a_bare_list():
    [f] = findings(SEED["findings"][0])
    assert (f.title, f.scanner) == ("Buffer Overflow in auth_service", "Strobes")
    assert [g.title for g in findings([SEED["findings"][0], FULL])] == [
        "Buffer Overflow in auth_service", "Outdated OpenSSL in base image"]


def test_an_asset_object_and_an_item_scanner_name():
    [f] = findings({"scanner_name": "bulk", "findings": [
        {"title": "t", "scanner_name": "semgrep", "asset": {"name": "repo/payments", "environment": "prod"}}]})
    assert (f.scanner, f.asset.identifier, f.asset.environment) == ("semgrep", "repo/payments", "prod")


@pytest.mark.parametrize(("given", "expected"), [
    ("CRITICAL", "critical"), ("High", "high"), ("medium", "medium"), ("Low", "low"), ("informational", "info"),
    (5, "critical"), (4, "high"), (1, "info"), (9.8, "critical"), ("6.1", "medium"),
])
def test_severities(given, expected):
    [f] = findings({"title": "t", "severity": given})
    assert f.severity == expected


def test_severity_from_cvss_and_none_at_all():
    [f] = findings({"title": "t", "cvss": 3.1})
    assert f.severity == "low"
    [g] = findings({"title": "t"})
    assert "severity" not in g.model_fields_set


def test_delta_update_resolves():
    [f] = findings({"findings": [{"title": "t", "id": "a-1", "status": "Resolved"}]})
    assert f.status == "resolved"
    assert findings({"title": "t", "state": "false positive"})[0].status == "dismissed"


def test_an_empty_findings_list_gives_none():
    assert findings({"scanner_name": "x", "project_id": "p", "findings": []}) == []


@pytest.mark.parametrize(("body", "message"), [
    ({"scanner_name": "x", "findings": [{"severity": "high"}]}, "Strobes findings[0]: title is missing"),
    ({"scanner_name": "x", "findings": [SEED["findings"][0], {"name": " "}]}, "Strobes findings[1]: title is missing"),
    ({"description": "no title"}, "Strobes body: title is missing"),
    ({"findings": "all of them"}, "Strobes findings: expected a list, got a string"),
    ({"findings": [1, 2]}, "Strobes findings[0]: expected a JSON object, got a number"),
    ({"title": "t", "severity": "whatever"}, "Strobes body: severity: unknown severity 'whatever'"),
    ({"title": "t", "severity": 42}, "severity number 42 is outside 0-10"),
    ({"title": "t", "cvss": "high"}, "CVSS score 'high' is not a number"),
    ({"title": {"en": "t"}}, "Strobes body: title is missing"),
    ("findings", "Strobes body: expected a JSON object, got a string"),
])
def test_bad_payloads_raise_adapter_error(body, message):
    with pytest.raises(AdapterError) as info:
        parse("strobes", body)
    assert message in str(info.value)
