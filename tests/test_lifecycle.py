"""Severity normalization, fingerprints and the finding lifecycle (pure functions)."""

from __future__ import annotations

import pytest

from hub import lifecycle
from hub.config import FingerprintConfig, SlaConfig
from hub.ids import iso, parse_iso
from hub.models import Finding, normalize_severity

NOW = parse_iso("2026-11-22T10:00:00Z")
SLA = SlaConfig()


@pytest.mark.parametrize(("value", "expected"), [
    ("Critical", "critical"), ("HIGH", "high"), ("informational", "info"), ("Moderate", "medium"), (" low ", "low"),
    ("High (7.5)", "high"), ("none", "info"), (9.8, "critical"), (7.0, "high"), (4.0, "medium"), (0.1, "low"),
    (0.0, "info"), ("9.8", "critical"), (5, "critical"), (4, "high"), (3, "medium"), (2, "low"), (1, "info"),
    ("5", "critical"), (6, "medium"), (7.5, "high"),
])
def test_severity_words_scores_and_levels(value, expected):
    assert normalize_severity(value) == expected


def test_severity_scales_and_errors():
    assert normalize_severity(5, "cvss") == "medium"
    assert normalize_severity("4", "level") == "high"
    for bad in ("catastrophic", 11, -1, None, True, "nan"):
        with pytest.raises(ValueError):
            normalize_severity(bad)
    with pytest.raises(ValueError):
        normalize_severity(7.5, "level")


def f(**kw) -> Finding:
    base = {"title": "SQL injection", "severity": "high", "rule_id": "sqli", "asset": {"identifier": "web-01"},
            "location": "/login"}
    return Finding.model_validate({**base, **kw})


def test_default_fingerprint_uses_asset_rule_and_location():
    a = lifecycle.fingerprint(f(), "s")
    assert a == lifecycle.fingerprint(f(title="Other words", severity="low"), "s")  # rule wins over title
    assert a != lifecycle.fingerprint(f(), "other-source")
    assert a != lifecycle.fingerprint(f(asset={"identifier": "web-02"}), "s")
    assert a != lifecycle.fingerprint(f(location="/search"), "s")
    no_rule = f(rule_id=None, cve=["cve-2026-1"])
    same_cve = f(rule_id=None, cve=["CVE-2026-1"], title="x")
    assert lifecycle.fingerprint(no_rule, "s") == lifecycle.fingerprint(same_cve, "s")
    by_title = f(rule_id=None)
    assert lifecycle.fingerprint(by_title, "s") == lifecycle.fingerprint(f(rule_id=None, title="  sql INJECTION"), "s")


def test_a_fingerprint_scope_joins_sources_and_keeps_the_fingerprints_of_the_source_it_is_named_after():
    scoped = FingerprintConfig(use="tool_id", scope="se")
    a = lifecycle.fingerprint(f(tool_id="T-1"), "se-hooks", scoped)
    b = lifecycle.fingerprint(f(tool_id="T-1"), "se-api", scoped)
    assert a == b != lifecycle.fingerprint(f(tool_id="T-2"), "se-api", scoped)
    assert a == lifecycle.fingerprint(f(tool_id="T-1"), "se", FingerprintConfig(use="tool_id"))  # a source named "se"
    assert a != lifecycle.fingerprint(f(tool_id="T-1"), "se-api", FingerprintConfig(use="tool_id"))  # no scope: apart
    configs = {"se": scoped, "se-api": scoped, "se-hooks": scoped, "other": FingerprintConfig()}
    assert lifecycle.scope_peers(configs) == {"se": {"se-api", "se-hooks"}, "se-api": {"se", "se-hooks"},
                                              "se-hooks": {"se", "se-api"}}


def test_configured_fingerprints():
    tool = FingerprintConfig(use="tool_id")
    assert lifecycle.fingerprint(f(tool_id="T-1"), "s", tool) == lifecycle.fingerprint(
        f(tool_id="T-1", asset={"identifier": "elsewhere"}, rule_id="x"), "s", tool)
    # no tool id: falls back to the default
    assert lifecycle.fingerprint(f(), "s", tool) == lifecycle.fingerprint(f(), "s")
    fields = FingerprintConfig(use="fields", fields=["asset.hostname", "title"])
    assert lifecycle.fingerprint(f(asset={"hostname": "h"}), "s", fields) == lifecycle.fingerprint(
        f(asset={"hostname": "h"}, rule_id="other"), "s", fields)
    both = FingerprintConfig(use="both", fields=["asset.identifier"])
    assert lifecycle.fingerprint(f(tool_id="A"), "s", both) != lifecycle.fingerprint(f(tool_id="B"), "s", both)


def test_created_then_identical_then_updated_then_resolved_then_reopened():
    c1 = lifecycle.apply(None, f(), NOW, SLA)
    assert c1.kind == "finding.created" and c1.created and c1.finding.id.startswith("fnd_")
    assert c1.finding.first_seen == iso(NOW) and c1.finding.sla_due_at == iso(NOW + 30 * 86400)
    same = lifecycle.apply(c1.finding, f(), NOW + 60, SLA)
    assert same.kind is None and same.changes == {} and same.finding.last_seen == iso(NOW + 60)
    worse = lifecycle.apply(same.finding, f(severity="critical", cvss_score=9.1), NOW + 120, SLA)
    assert worse.kind == "finding.updated"
    # the tighter SLA from first_seen is a change too: ticket updates carry the new due date
    assert worse.changes == {"severity": {"old": "high", "new": "critical"}, "cvss_score": {"old": None, "new": 9.1},
                             "sla_due_at": {"old": iso(NOW + 30 * 86400), "new": iso(NOW + 7 * 86400)}}
    assert worse.finding.sla_due_at == iso(NOW + 7 * 86400)
    fixed = lifecycle.apply(worse.finding, f(status="resolved"), NOW + 180, SLA)
    assert fixed.kind == "finding.resolved" and fixed.finding.status == "resolved"
    assert fixed.finding.resolved_at == iso(NOW + 180)
    again = lifecycle.apply(fixed.finding, f(status="resolved"), NOW + 200, SLA)
    assert again.kind is None
    back = lifecycle.apply(fixed.finding, f(severity="critical"), NOW + 300, SLA)
    assert back.kind == "finding.reopened" and back.finding.status == "open" and back.finding.resolved_at is None
    assert back.finding.sla_due_at == iso(NOW + 300 + 7 * 86400)
    assert back.changes["sla_due_at"] == {"old": fixed.finding.sla_due_at, "new": iso(NOW + 300 + 7 * 86400)}
    assert back.finding.id == c1.finding.id and back.finding.first_seen == c1.finding.first_seen


def test_partial_events_do_not_erase_what_is_known():
    full = lifecycle.apply(None, f(description="long text", cve=["CVE-2026-1"], remediation="patch"), NOW, SLA).finding
    partial = Finding.model_validate({"status": "resolved", "tool_id": "T"})  # a bare "resolved" webhook
    change = lifecycle.apply(full, partial, NOW + 10, SLA)
    assert change.kind == "finding.resolved"
    assert change.finding.title == "SQL injection" and change.finding.description == "long text"
    assert change.finding.cve == ["CVE-2026-1"] and change.finding.severity == "high"
    assert set(change.changes) == {"status"}


def test_first_seen_resolved_is_kept_but_not_delivered():
    c = lifecycle.apply(None, f(status="resolved"), NOW, SLA)
    assert c.kind is None and c.created and c.finding.status == "resolved"


def test_a_dismissed_finding_stays_dismissed_until_its_source_says_closed_then_open():
    opened = lifecycle.apply(None, f(), NOW, SLA).finding
    d = lifecycle.dismiss(opened, NOW + 1)
    assert (d.kind, d.finding.status, d.finding.resolved_at) == ("finding.dismissed", "dismissed", None)
    assert d.changes == {"status": {"old": "open", "new": "dismissed"}}
    assert lifecycle.apply(d.finding, f(status="open"), NOW + 2, SLA).kind is None  # open, as before: no news
    again = lifecycle.apply(d.finding, f(severity="critical"), NOW + 2, SLA)  # a later finding.created / update
    assert again.kind is None and again.finding.status == "dismissed" and "severity" in again.changes
    closed = lifecycle.apply(again.finding, f(status="dismissed"), NOW + 3, SLA)  # the write-back arrived
    assert closed.kind is None and closed.finding.status == "dismissed"
    assert closed.finding.resolved_at == iso(NOW + 3) and closed.changes["source_status"]["new"] == "dismissed"
    assert lifecycle.apply(closed.finding, f(status="resolved"), NOW + 4, SLA).finding.resolved_at == iso(NOW + 3)
    assert lifecycle.apply(closed.finding, f(severity="critical"), NOW + 5, SLA).kind is None  # says no status
    new_again = lifecycle.apply(closed.finding, f(severity="critical", status="open"), NOW + 5, SLA)
    assert (new_again.kind, new_again.finding.status, new_again.finding.resolved_at) == \
        ("finding.reopened", "open", None)
    assert new_again.changes["status"] == {"old": "dismissed", "new": "open"}
    assert new_again.finding.sla_due_at == lifecycle.sla_due("critical", iso(NOW + 5), SLA)


def test_untitled_first_report_gets_a_title_and_absent_resolution():
    c = lifecycle.apply(None, Finding.model_validate({"tool_id": "X-1", "scanner": "Probe"}), NOW, SLA)
    assert c.finding.title == "Probe finding X-1"
    gone = lifecycle.resolve_absent(c.finding, NOW + 5, "absent from the full import in evt_9")
    assert gone.kind == "finding.resolved" and gone.changes["reason"].endswith("evt_9")


def test_finding_normalizes_lists():
    x = Finding.model_validate({"title": 123, "cve": "cve-2026-0001", "cwe": [79, "cwe-89", "79"], "references": None})
    assert x.title == "123" and x.cve == ["CVE-2026-0001"] and x.cwe == ["CWE-79", "CWE-89"] and x.references == []
