"""neuro adapter, on the payloads of seeds/003_9bd5a7d6712bc4d5.txt (NEURO API integration docs)."""

from __future__ import annotations

import pytest

from hub.errors import AdapterError
from tests.adapters.helpers import parse

# seeds/003: "Webhook Payload", verbatim
WEBHOOK = {"event": "finding.created", "timestamp": "2024-01-15T10:30:00Z",
           "data": {"id": "find_789", "title": "SQL Injection", "project_id": "proj_123"}}

# seeds/003: "Create a Finding" request body, verbatim
CREATE_BODY = {"project_id": "proj_123", "title": "SQL Injection in Login", "severity": "High",
               "description": "SQL injection vulnerability found...", "remediation": "Use parameterized queries..."}

# seeds/003: "Success Response" envelope with "Pagination" meta, holding findings shaped like the create body
PAGE = {"success": True,
        "data": [{"id": "find_789", **CREATE_BODY, "status": "Open"},
                 {"id": "find_790", "project_id": "proj_123", "title": "XSS in Search", "severity": "Medium",
                  "description": "Reflected XSS found in search parameter", "status": "Remediated"}],
        "meta": {"page": 1, "limit": 50, "total": 234, "pages": 5}}


def one(body):
    parsed = parse("neuro", body)
    assert len(parsed.findings) == 1 and parsed.full_scope is None
    return parsed.findings[0]


def test_seed_webhook_gives_the_finding():
    f = one(WEBHOOK)
    assert (f.tool_id, f.title, f.status, f.scanner) == ("find_789", "SQL Injection", "open", "NEURO")
    assert "severity" not in f.model_fields_set  # not given: a stored severity is kept
    assert f.raw == WEBHOOK


def test_updated_webhook_with_full_fields():
    f = one({"event": "finding.updated", "timestamp": "2024-01-16T08:00:00Z",
             "data": {"id": "find_789", "title": "SQL Injection in Login", "project_id": "proj_123",
                      "severity": "Critical", "description": "Blind SQLi in username.",
                      "remediation": "Use parameterized queries.", "status": "Confirmed", "cvss_score": 9.1,
                      "cwe": "CWE-89", "cves": [], "asset": {"id": "asset_1", "name": "portal.example.com",
                                                             "ip": "203.0.113.10"},
                      "url": "https://portal.example.com/login", "references": ["https://owasp.org/Top10/A03"]}})
    assert (f.severity, f.cvss_score, f.cwe, f.status) == ("critical", 9.1, ["CWE-89"], "open")
    assert (f.description, f.remediation) == ("Blind SQLi in username.", "Use parameterized queries.")
    assert (f.asset.identifier, f.asset.ip) == ("portal.example.com", "203.0.113.10")
    assert f.location == "https://portal.example.com/login"
    assert f.references == ["https://owasp.org/Top10/A03"]


def test_deleted_webhook_resolves():
    f = one({"event": "finding.deleted", "timestamp": "2024-01-17T08:00:00Z", "data": {"id": "find_789"}})
    assert (f.tool_id, f.status, f.title) == ("find_789", "resolved", "")


@pytest.mark.parametrize("event", ["project.created", "report.generated", "client.updated"])
def test_other_events_give_no_findings(event):
    body = {"event": event, "timestamp": "2024-01-15T10:30:00Z", "data": {"id": "proj_123", "name": "Q1 Pentest"}}
    assert parse("neuro", body).findings == []


def test_api_envelope_page_gives_every_finding():
    findings = parse("neuro", PAGE).findings
    assert [(f.tool_id, f.severity, f.status) for f in findings] == [
        ("find_789", "high", "open"), ("find_790", "medium", "resolved")]
    assert findings[0].remediation == "Use parameterized queries..."
    assert findings[1].raw == PAGE["data"][1]


def test_envelope_with_one_finding_and_a_bare_create_body():
    assert one({"success": True, "data": PAGE["data"][0]}).tool_id == "find_789"
    f = one(CREATE_BODY)
    assert (f.tool_id, f.title, f.severity) == (None, "SQL Injection in Login", "high")


@pytest.mark.parametrize(("given", "expected"), [
    ("Critical", "critical"), ("High", "high"), ("Medium", "medium"), ("Low", "low"), ("Info", "info"),
    ("CRITICAL", "critical"), ("informational", "info"),
])
def test_title_case_severities(given, expected):
    assert one({**WEBHOOK, "data": {**WEBHOOK["data"], "severity": given}}).severity == expected


@pytest.mark.parametrize(("given", "expected"), [
    ("Open", "open"), ("Confirmed", "open"), ("In Progress", "open"), ("Remediated", "resolved"),
    ("Fixed", "resolved"), ("Closed", "resolved"), ("False Positive", "dismissed"), ("Accepted Risk", "dismissed"),
])
def test_statuses(given, expected):
    assert one({**WEBHOOK, "data": {**WEBHOOK["data"], "status": given}}).status == expected


def test_cvss_gives_the_severity_when_there_is_none():
    assert one({**WEBHOOK, "data": {**WEBHOOK["data"], "cvss": 6.5}}).severity == "medium"


@pytest.mark.parametrize(("body", "message"), [
    ({"event": "finding.created", "data": {"title": "x"}}, "NEURO finding.created data: id is missing"),
    ({"event": "finding.updated"}, "NEURO finding.updated: the `data` object is missing"),
    ({"event": "finding.deleted", "data": "find_1"}, "data: expected a JSON object, got a string"),
    ({"success": True, "data": [{"id": "a", "title": "x"}, {"title": "y"}]}, "NEURO data[1]: id is missing"),
    ({"success": False, "error": {"code": "RATE_LIMIT_EXCEEDED", "message": "Too many requests"}},
     "error response RATE_LIMIT_EXCEEDED: Too many requests"),
    ({"project_id": "proj_123", "severity": "High"}, "expected a webhook"),
    ({"project_id": "proj_123", "id": "", "title": " "}, "a finding without an id needs a title"),
    ({**WEBHOOK, "data": {**WEBHOOK["data"], "severity": "Bogus"}}, "severity: unknown severity"),
    ([WEBHOOK], "NEURO body: expected a JSON object, got a list"),
])
def test_bad_payloads_raise_adapter_error(body, message):
    with pytest.raises(AdapterError) as info:
        parse("neuro", body)
    assert message in str(info.value)
