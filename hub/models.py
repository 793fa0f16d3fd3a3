"""The data every part of the hub exchanges: Finding (the one shape mappings see), severities. No I/O."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Severity = Literal["critical", "high", "medium", "low", "info"]
Status = Literal["open", "resolved", "dismissed"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK: dict[str, int] = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}  # critical 5 ... info 1

FINDING_EVENTS = ("finding.created", "finding.updated", "finding.resolved", "finding.reopened",
                  "finding.sla_breached", "finding.dismissed")
EVENT_TYPES = ("event.received", *FINDING_EVENTS, "delivery.dead")
# What a finding's tickets are told once linked, whatever the routes' `when`. Not ``finding.dismissed``: a person
# decided it in one ticket, and it goes only where a route sends it (the source platform's write-back).
SYNCED_KINDS = frozenset(FINDING_EVENTS) - {"finding.created", "finding.dismissed"}
# What a ticketing connector renders: every lifecycle step but the dismissal its own ticket caused.
TICKET_KINDS = frozenset(FINDING_EVENTS) - {"finding.dismissed"}

_WORDS: dict[str, Severity] = {
    "critical": "critical", "crit": "critical", "urgent": "critical", "emergency": "critical", "blocker": "critical",
    "high": "high", "important": "high", "severe": "high", "major": "high", "error": "high",
    "medium": "medium", "moderate": "medium", "med": "medium", "warning": "medium", "warn": "medium",
    "low": "low", "minor": "low", "trivial": "low",
    "info": "info", "informational": "info", "information": "info", "none": "info", "negligible": "info",
    "note": "info", "unknown": "info",
}


def severity_from_cvss(score: float) -> Severity:
    """CVSS v3/v4 qualitative ratings: 9.0+ critical, 7.0+ high, 4.0+ medium, 0.1+ low, 0 none (info)."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else "info"


def normalize_severity(value: Any, scale: Literal["auto", "cvss", "level"] = "auto") -> Severity:
    """Words in any case (``Critical``, ``HIGH``, ``informational``), CVSS scores, numeric levels.

    ``auto``: an integer 1-5 is a level (5 critical ... 1 info, as Qualys and most scanners number
    them); any other number from 0 to 10 is a CVSS score. Raises ValueError when nothing fits.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"no severity in {value!r}")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _WORDS:
            return _WORDS[text]
        first = re.split(r"[\s:/(_-]+", text, maxsplit=1)[0]
        if first in _WORDS:  # "High (7.5)", "critical-risk"
            return _WORDS[first]
        try:
            number: float = float(text)
        except ValueError:
            raise ValueError(f"unknown severity {value!r}") from None
        is_int = re.fullmatch(r"\d+", text) is not None
    elif isinstance(value, (int, float)):
        number, is_int = float(value), isinstance(value, int)
    else:
        raise ValueError(f"unknown severity {value!r}")
    if math.isnan(number) or not 0 <= number <= 10:
        raise ValueError(f"severity number {value!r} is outside 0-10")
    if scale == "level" or (scale == "auto" and is_int and 1 <= number <= 5):
        if not (is_int and 1 <= number <= 5):
            raise ValueError(f"severity level {value!r} is not 1-5")
        return SEVERITIES[5 - int(number)]
    return severity_from_cvss(number)


class Asset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifier: str | None = None
    hostname: str | None = None
    ip: str | None = None
    environment: str | None = None
    tags: list[str] = Field(default_factory=list)
    business_unit: str | None = None
    exposure: str | None = None  # "external" | "internal" | ...
    os: str | None = None
    risk_score: float | None = None


class ExternalRef(BaseModel):
    id: str | None = None
    url: str | None = None
    status: str | None = None


class Finding(BaseModel):
    """A normalized finding. ``id``, ``fingerprint``, dates and ``external_refs`` are set by the hub."""

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    fingerprint: str = ""
    source: str = ""
    scanner: str | None = None
    tool_id: str | None = None  # the tool's own id for this finding, when it has one
    title: str = ""  # empty: not given by this event (partial updates keep the stored title)
    severity: Severity = "info"
    cvss_score: float | None = Field(None, ge=0, le=10)
    cve: list[str] = Field(default_factory=list)
    cwe: list[str] = Field(default_factory=list)
    attack_techniques: list[str] = Field(default_factory=list)  # MITRE ATT&CK ids, e.g. T1562.001
    rule_id: str | None = None
    location: str | None = None  # file, URL, package or port where it was found
    description: str | None = None
    remediation: str | None = None
    asset: Asset = Field(default_factory=Asset)
    status: Status = "open"
    first_seen: str | None = None
    last_seen: str | None = None
    resolved_at: str | None = None
    sla_due_at: str | None = None
    references: list[str] = Field(default_factory=list)
    external_refs: dict[str, ExternalRef] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)

    @field_validator("title", "tool_id", "rule_id", "location", "description", "remediation", "scanner",
                     mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Severity:
        return normalize_severity(value)

    @field_validator("cve", "cwe", "attack_techniques", "references", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> list[str]:
        if value is None or value == "":
            return []
        items = value if isinstance(value, (list, tuple)) else [value]
        return [str(v).strip() for v in items if v is not None and str(v).strip()]

    @field_validator("cve", mode="after")
    @classmethod
    def _cve_upper(cls, value: list[str]) -> list[str]:
        return sorted({v.upper() for v in value})

    @field_validator("cwe", mode="after")
    @classmethod
    def _cwe_form(cls, value: list[str]) -> list[str]:
        return sorted({v.upper() if v.upper().startswith("CWE-") else f"CWE-{v}" for v in value})


# Fields whose change makes a `finding.updated` (dates, ids, raw and links are bookkeeping, not news).
TRACKED_FIELDS = ("title", "severity", "cvss_score", "cve", "cwe", "attack_techniques", "rule_id", "location",
                  "description", "remediation", "asset", "references", "scanner")
