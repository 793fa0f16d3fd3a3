"""obexum adapter, on the payloads of seeds/002_ee4886ec89815b2f.txt (Obexum REST API docs)."""

from __future__ import annotations

import pytest

from hub.errors import AdapterError
from tests.adapters.helpers import parse

# seeds/002: "STIX 2.1 export" example, verbatim (the ids are elided with "..." in the seed)
SEED_BUNDLE = {
    "type": "bundle",
    "id": "bundle--...",
    "spec_version": "2.1",
    "objects": [
        {
            "type": "x-obexum-finding",
            "spec_version": "2.1",
            "id": "x-obexum-finding--...",
            "name": "Tamper Protection disabled",
            "severity": "high",
            "status": "open",
            "rule_id": "WIN-DEF-002",
            "x_obexum_remediation": {
                "commands": ["Set-MpPreference -DisableTamperProtection $false"],
                "verification": "Get-MpPreference | Select-Object -ExpandProperty IsTamperProtected",
                "risk_of_fix": "low",
            },
        },
        {
            "type": "attack-pattern",
            "id": "attack-pattern--...",
            "name": "T1562.001",
        },
        {
            "type": "relationship",
            "relationship_type": "uses",
            "source_ref": "x-obexum-finding--...",
            "target_ref": "attack-pattern--...",
        },
    ],
}

FA, FB = "x-obexum-finding--0a1b", "x-obexum-finding--0c2d"

# Two findings: A exposes a CVE named by its name and uses a technique named by its name; B exposes a CVE given
# only in external_references, uses a technique given only as a mitre-attack external_id, and one relationship
# points the other way (vulnerability -> finding). A dangling reference is ignored.
TWO_FINDINGS = {
    "type": "bundle", "id": "bundle--2", "spec_version": "2.1",
    "objects": [
        {"type": "x-obexum-finding", "spec_version": "2.1", "id": FA, "name": "Tamper Protection disabled",
         "severity": "HIGH", "status": "open", "rule_id": "WIN-DEF-002"},
        {"type": "x-obexum-finding", "spec_version": "2.1", "id": FB, "name": "SMBv1 enabled",
         "severity": "Critical", "status": "resolved", "rule_id": "WIN-NET-014",
         "external_references": [{"source_name": "obexum", "url": "https://obexum.com/kb/WIN-NET-014"}]},
        {"type": "vulnerability", "id": "vulnerability--a", "name": "CVE-2024-21412"},
        {"type": "vulnerability", "id": "vulnerability--b", "name": "EternalBlue",
         "external_references": [{"source_name": "cve", "external_id": "CVE-2017-0144"}]},
        {"type": "vulnerability", "id": "vulnerability--c", "name": "CVE-2017-0145"},
        {"type": "attack-pattern", "id": "attack-pattern--a", "name": "T1562.001"},
        {"type": "attack-pattern", "id": "attack-pattern--b", "name": "Exploitation of Remote Services",
         "external_references": [{"source_name": "mitre-attack", "external_id": "T1210",
                                  "url": "https://attack.mitre.org/techniques/T1210/"}]},
        {"type": "relationship", "id": "relationship--1", "relationship_type": "exposes",
         "source_ref": FA, "target_ref": "vulnerability--a"},
        {"type": "relationship", "id": "relationship--2", "relationship_type": "uses",
         "source_ref": FA, "target_ref": "attack-pattern--a"},
        {"type": "relationship", "id": "relationship--3", "relationship_type": "exposes",
         "source_ref": FB, "target_ref": "vulnerability--b"},
        {"type": "relationship", "id": "relationship--4", "relationship_type": "exposes",
         "source_ref": "vulnerability--c", "target_ref": FB},
        {"type": "relationship", "id": "relationship--5", "relationship_type": "uses",
         "source_ref": FB, "target_ref": "attack-pattern--b"},
        {"type": "relationship", "id": "relationship--6", "relationship_type": "uses",
         "source_ref": FB, "target_ref": "attack-pattern--missing"},
    ],
}

# The `generic` SIEM webhook: the seed names the format but not its fields; this is the shape documented
# in docs/adapters.md (findings list, optional host for the whole scan).
GENERIC = {
    "event": "scan.uploaded", "timestamp": "2026-05-10T08:00:00Z", "engagement_id": "eng_42", "scan_id": "scn_7",
    "host": {"hostname": "WS-FIN-042", "ip": "10.20.4.42", "os": "Windows 11 23H2"},
    "findings": [
        {"id": "obx_1", "name": "Tamper Protection disabled", "severity": "high", "status": "open",
         "rule_id": "WIN-DEF-002", "mitre": ["T1562.001"], "cves": "CVE-2024-21412",
         "remediation": {"commands": ["Set-MpPreference -DisableTamperProtection $false"],
                         "verification": "Get-MpPreference", "risk_of_fix": "low"}},
        {"id": "obx_2", "title": "BitLocker off on system drive", "severity": "Medium", "status": "fixed",
         "rule_id": "WIN-BL-001", "remediation": "Enable BitLocker with TPM.", "host": "WS-FIN-043"},
    ],
}


def by_id(parsed):
    assert parsed.full_scope is None
    return {f.tool_id: f for f in parsed.findings}


def test_seed_bundle_gives_the_finding_with_technique_and_rendered_remediation():
    [f] = parse("obexum", SEED_BUNDLE).findings
    assert f.tool_id == "x-obexum-finding--..."
    assert (f.title, f.severity, f.status, f.rule_id) == ("Tamper Protection disabled", "high", "open", "WIN-DEF-002")
    assert f.attack_techniques == ["T1562.001"]
    assert f.cve == []
    assert f.scanner == "Obexum"
    assert f.remediation == ("Run:\n"
                             "    Set-MpPreference -DisableTamperProtection $false\n"
                             "Verify: Get-MpPreference | Select-Object -ExpandProperty IsTamperProtected\n"
                             "Risk of fix: low")
    assert f.raw == SEED_BUNDLE["objects"][0]


def test_stix_joins_put_each_cve_and_technique_on_its_own_finding():
    found = by_id(parse("obexum", TWO_FINDINGS))
    assert set(found) == {FA, FB}
    a, b = found[FA], found[FB]
    assert (a.cve, a.attack_techniques) == (["CVE-2024-21412"], ["T1562.001"])
    assert (b.cve, b.attack_techniques) == (["CVE-2017-0144", "CVE-2017-0145"], ["T1210"])
    assert (a.severity, b.severity) == ("high", "critical")
    assert (a.status, b.status) == ("open", "resolved")
    assert b.references == ["https://obexum.com/kb/WIN-NET-014"]


def test_a_bundle_without_findings_gives_none():
    bundle = {"type": "bundle", "id": "bundle--3", "objects": [{"type": "vulnerability", "id": "vulnerability--a",
                                                                "name": "CVE-2024-21412"}]}
    assert parse("obexum", bundle).findings == []


def test_generic_payload_maps_fields_and_the_scan_host():
    found = by_id(parse("obexum", GENERIC))
    one, two = found["obx_1"], found["obx_2"]
    assert (one.title, one.severity, one.rule_id, one.status) == ("Tamper Protection disabled", "high",
                                                                  "WIN-DEF-002", "open")
    assert (one.cve, one.attack_techniques) == (["CVE-2024-21412"], ["T1562.001"])
    assert one.remediation.startswith("Run:\n    Set-MpPreference") and "Risk of fix: low" in one.remediation
    assert one.asset.model_dump(exclude_defaults=True) == {"identifier": "WS-FIN-042", "hostname": "WS-FIN-042",
                                                          "ip": "10.20.4.42", "os": "Windows 11 23H2"}
    assert (two.title, two.severity, two.status) == ("BitLocker off on system drive", "medium", "resolved")
    assert two.remediation == "Enable BitLocker with TPM."
    assert two.asset.identifier == "WS-FIN-043"  # its own host wins over the scan's
    assert one.raw == GENERIC["findings"][0]


def test_generic_findings_as_a_bare_list_a_data_envelope_or_one_object():
    items = GENERIC["findings"]
    assert [f.tool_id for f in parse("obexum", items).findings] == ["obx_1", "obx_2"]
    assert [f.tool_id for f in parse("obexum", {"data": items}).findings] == ["obx_1", "obx_2"]
    assert [f.tool_id for f in parse("obexum", items[1]).findings] == ["obx_2"]


def test_severity_from_cvss_when_missing():
    [f] = parse("obexum", {"findings": [{"name": "Old TLS", "cvss": 5.9}]}).findings
    assert (f.severity, f.cvss_score) == ("medium", 5.9)
    assert "severity" not in parse("obexum", {"findings": [{"name": "x"}]}).findings[0].model_fields_set


def test_an_event_without_findings_gives_none():
    assert parse("obexum", {"event": "webhook.test", "timestamp": "2026-05-10T08:00:00Z"}).findings == []
    assert parse("obexum", {"event": "scan.uploaded", "findings": []}).findings == []


@pytest.mark.parametrize(("body", "message"), [
    ({"findings": [{"severity": "high"}]}, "Obexum findings[0]: name (or title) is missing"),
    ({"findings": {"name": "x"}}, "Obexum findings: expected a list, got an object"),
    ({"findings": ["x"]}, "Obexum findings[0]: expected a JSON object, got a string"),
    ({"findings": [{"name": "x", "severity": "sev-9000"}]}, "findings[0]: severity: unknown severity"),
    ({"type": "bundle", "objects": "none"}, "bundle.objects: expected a list"),
    ({"type": "bundle", "objects": [{"type": "x-obexum-finding", "id": FA}]}, "objects[0]: an x-obexum-finding "
                                                                               "needs an id and a name"),
    ({"type": "bundle", "objects": [{"type": "x-obexum-finding", "id": FA, "name": "x", "severity": "bad"}]},
     "bundle.objects[0]: severity"),
    ({"engagement": "eng_1"}, "expected a STIX bundle"),
    ("findings", "Obexum body: expected a JSON object, got a string"),
])
def test_bad_payloads_raise_adapter_error(body, message):
    with pytest.raises(AdapterError) as info:
        parse("obexum", body)
    assert message in str(info.value)
