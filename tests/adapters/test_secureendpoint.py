"""secureendpoint adapter, on the payloads of seeds/001_cd15f28a2e460cf1.txt (SecureEndpoint API docs)."""

from __future__ import annotations

import copy

import pytest

from hub import lifecycle
from hub.config import SlaConfig
from hub.errors import AdapterError
from hub.ids import parse_iso
from tests.adapters.helpers import parse, stored

# seeds/001: the webhook example, verbatim
WEBHOOK = {
    "event": "finding.created",
    "timestamp": "2026-03-10T09:14:22Z",
    "data": {
        "finding_id": "fnd_8xkQ2p",
        "severity": "critical",
        "cvss": 9.8,
    },
}

# seeds/001: GET /v1/findings response, verbatim
PAGE = {
    "data": [
        {
            "id": "fnd_8xkQ2p",
            "cve": "CVE-2024-21412",
            "severity": "critical",
            "cvss_score": 9.8,
            "affected_assets": 47,
            "software": "OpenSSL 1.0.2",
            "eol_date": "2020-01-01",
            "status": "open",
            "ticket_id": "INC0423891",
        }
    ],
    "meta": {"total": 247, "page": 1, "per_page": 25},
}

# seeds/001: GET /v1/assets/{id}, verbatim
ASSET = {
    "id": "ast_7mNp4r",
    "hostname": "db-prod-02.internal",
    "ip": "10.0.14.22",
    "os": "Windows Server 2012 R2",
    "os_eol": True,
    "os_eol_date": "2023-10-10",
    "risk_score": 94,
    "open_findings": 12,
    "last_scanned": "2026-03-09T14:22:01Z",
}


def webhook(event: str, **data) -> dict:
    return {"event": event, "timestamp": "2026-03-10T09:14:22Z", "data": {"finding_id": "fnd_8xkQ2p", **data}}


def one(body):
    parsed = parse("secureendpoint", body)
    assert len(parsed.findings) == 1
    assert parsed.full_scope is None
    return parsed.findings[0]


def test_seed_webhook_gives_the_finding_with_its_severity_and_cvss():
    f = one(WEBHOOK)
    assert (f.tool_id, f.severity, f.cvss_score, f.status) == ("fnd_8xkQ2p", "critical", 9.8, "open")
    assert f.scanner == "SecureEndpoint"
    assert f.title == ""  # nothing to name it by: the stored title (or the hub's fallback) is kept
    assert f.raw == WEBHOOK
    assert (f.id, f.fingerprint, f.source, f.first_seen) == ("", "", "", None)  # the pipeline sets these


def test_seed_findings_page_maps_every_field():
    f = one(PAGE)
    assert f.tool_id == "fnd_8xkQ2p"
    assert f.title == "End-of-life software: OpenSSL 1.0.2"
    assert (f.severity, f.cvss_score, f.cve) == ("critical", 9.8, ["CVE-2024-21412"])
    assert f.location == "OpenSSL 1.0.2"
    assert "end of life on 2020-01-01" in f.description and "CVE-2024-21412" in f.description
    assert "OpenSSL 1.0.2" in f.remediation
    assert f.status == "open"
    assert f.raw == PAGE["data"][0]  # the item, not the whole page


def test_a_page_gives_one_finding_per_item_and_skips_asset_records():
    page = copy.deepcopy(PAGE)
    page["data"].append({"id": "fnd_2", "software": "Java 8", "severity": "HIGH", "status": "resolved"})
    page["data"].append(ASSET)
    findings = parse("secureendpoint", page).findings
    assert [(f.tool_id, f.severity, f.status) for f in findings] == [
        ("fnd_8xkQ2p", "critical", "open"), ("fnd_2", "high", "resolved")]


def test_a_single_finding_object_is_accepted():
    assert one(PAGE["data"][0]).title == "End-of-life software: OpenSSL 1.0.2"
    assert one({"data": PAGE["data"][0]}).tool_id == "fnd_8xkQ2p"  # GET /findings/{id} in an envelope


def test_created_webhook_with_software_and_flat_host_fields():
    f = one(webhook("finding.created", severity="critical", cvss=9.8, cve="CVE-2024-21412", software="OpenSSL 1.0.2",
                    eol_date="2020-01-01", hostname="db-prod-02.internal", ip="10.0.14.22", status="open"))
    assert f.title == "End-of-life software: OpenSSL 1.0.2"
    assert f.cve == ["CVE-2024-21412"]
    assert f.asset.identifier == "db-prod-02.internal"
    assert (f.asset.hostname, f.asset.ip) == ("db-prod-02.internal", "10.0.14.22")


def test_the_seed_asset_shape_fills_finding_asset():
    f = one(webhook("finding.created", severity="high", software="Windows Server 2012 R2", asset=ASSET))
    assert f.asset.model_dump(exclude_defaults=True) == {
        "identifier": "db-prod-02.internal", "hostname": "db-prod-02.internal", "ip": "10.0.14.22",
        "os": "Windows Server 2012 R2", "risk_score": 94.0}
    single = one({"data": [{**PAGE["data"][0], "affected_assets": [ASSET]}]})
    assert single.asset.hostname == "db-prod-02.internal"


def test_an_asset_record_on_its_own_is_not_a_finding():
    assert parse("secureendpoint", ASSET).findings == []
    assert parse("secureendpoint", {"data": [ASSET], "meta": {"total": 1}}).findings == []


def test_cve_without_software_names_the_finding_after_the_cve():
    assert one(webhook("finding.created", cve="CVE-2024-21412")).title == "CVE-2024-21412 in end-of-life software"


def test_severity_changed_carries_the_new_severity_and_score():
    f = one(webhook("finding.severity_changed", severity="medium", cvss=5.3))
    assert (f.tool_id, f.severity, f.cvss_score, f.status) == ("fnd_8xkQ2p", "medium", 5.3, "open")


def test_severity_comes_from_cvss_when_the_word_is_missing():
    assert one(webhook("finding.severity_changed", cvss=7.1)).severity == "high"
    assert one(webhook("finding.severity_changed", cvss="4.0")).severity == "medium"
    assert one(webhook("finding.severity_changed", cvss=9)).severity == "critical"  # an int CVSS is not a level


@pytest.mark.parametrize(("given", "expected"), [
    ("CRITICAL", "critical"), ("High", "high"), ("moderate", "medium"), ("Low", "low"), ("informational", "info"),
    (5, "critical"), ("2", "low"),
])
def test_severity_words_in_any_case_and_levels(given, expected):
    assert one(webhook("finding.created", severity=given)).severity == expected


def test_resolved_webhook_resolves_without_touching_the_severity():
    f = one({"event": "finding.resolved", "timestamp": "2026-03-11T10:00:00Z", "data": {"finding_id": "fnd_8xkQ2p"}})
    assert (f.tool_id, f.status) == ("fnd_8xkQ2p", "resolved")
    assert "severity" not in f.model_fields_set  # the lifecycle keeps the stored one
    assert one(webhook("finding.resolved", status="open")).status == "resolved"  # the event decides


def test_created_then_resolved_through_the_lifecycle():
    now, sla = parse_iso("2026-03-10T09:14:23Z"), SlaConfig()
    created = lifecycle.apply(None, one(PAGE), now, sla)
    resolved = lifecycle.apply(created.finding, one(webhook("finding.resolved")), now + 60, sla)
    assert resolved.kind == "finding.resolved"
    assert (resolved.finding.severity, resolved.finding.title) == ("critical", "End-of-life software: OpenSSL 1.0.2")


@pytest.mark.parametrize("event", ["scan.completed", "ticket.created", "ticket.closed", "asset.deleted"])
def test_events_without_a_finding_give_none(event):
    body = {"event": event, "timestamp": "2026-03-10T09:14:22Z", "data": {"scan_id": "scn_1", "ticket_id": "INC1"}}
    parsed = parse("secureendpoint", body)
    assert parsed.findings == [] and parsed.full_scope is None


@pytest.mark.parametrize(("body", "message"), [
    ({"event": "finding.created", "timestamp": "x", "data": {"severity": "high"}}, "finding_id (or id) is missing"),
    ({"event": "finding.resolved", "timestamp": "x"}, "finding.resolved: the `data` object is missing"),
    ({"event": "finding.created", "data": ["fnd_1"]}, "data: expected a JSON object, got a list"),
    ({"event": 7, "data": {}}, "event must be a string"),
    ([WEBHOOK], "SecureEndpoint body: expected a JSON object, got a list"),
    ({"data": [PAGE["data"][0], {"software": "Java 8"}]}, "data[1]: finding_id (or id) is missing"),
    ({"data": "nope"}, "data: expected a list, got a string"),
    ({"code": "rate_limited", "message": "Too many requests"}, "error response rate_limited: Too many requests"),
    ({"hello": "world"}, "expected a webhook"),
    (webhook("finding.created", severity="catastrophic"), "severity: unknown severity 'catastrophic'"),
    (webhook("finding.created", cvss="abc"), "CVSS score 'abc' is not a number from 0 to 10"),
    (webhook("finding.created", cvss=11), "CVSS score 11 is not a number from 0 to 10"),
])
def test_bad_payloads_raise_adapter_error_saying_what_is_wrong(body, message):
    with pytest.raises(AdapterError, match="SecureEndpoint") as info:
        parse("secureendpoint", body)
    assert message in str(info.value)


def test_a_body_that_is_not_json_is_an_adapter_error():
    from hub.adapters import adapter_class

    with pytest.raises(AdapterError, match="not JSON"):
        adapter_class("secureendpoint")("se", None).parse(stored(b"event=finding.created"))
