"""Helpers shared by the platform adapters: picking keys, lists, severities, statuses, building Findings."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from hub.errors import AdapterError
from hub.models import Finding, Status, normalize_severity, severity_from_cvss

RESOLVED = {"resolved", "fixed", "closed", "remediated", "done", "deleted", "mitigated", "patched", "removed"}
DISMISSED = {"dismissed", "false_positive", "falsepositive", "accepted", "risk_accepted", "accepted_risk",
             "wont_fix", "ignored", "suppressed", "not_applicable", "exception"}


def present(value: Any) -> bool:
    """False for None, blank strings and empty lists or objects."""
    if isinstance(value, str):
        return value.strip() != ""
    return value is not None and value != [] and value != {}


def first(data: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` that is present and not empty (None when none is)."""
    for key in keys:
        if present(value := data.get(key)):
            return value
    return None


def obj(value: Any, where: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else AdapterError naming ``where``."""
    if not isinstance(value, dict):
        raise AdapterError(f"{where}: expected a JSON object, got {kind(value)}")
    return value


def objects(value: Any, where: str) -> list[dict[str, Any]]:
    """``value`` if it is a list of JSON objects, else AdapterError naming ``where`` (and the bad index)."""
    if not isinstance(value, list):
        raise AdapterError(f"{where}: expected a list, got {kind(value)}")
    for i, item in enumerate(value):
        obj(item, f"{where}[{i}]")
    return value


def kind(value: Any) -> str:
    """A JSON type name for error messages."""
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def listify(value: Any) -> list[Any]:
    """None -> [], a list or tuple as a list, anything else -> [value]."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def ids(value: Any) -> list[str]:
    """Identifiers given as a list, one value or a comma/space separated string ("CVE-1, CVE-2", 79)."""
    out: list[str] = []
    for item in listify(value):
        if isinstance(item, dict):  # {"id": "CVE-..."} style entries
            item = first(item, "id", "cve", "cwe", "external_id", "name")
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            out += [part for part in re.split(r"[\s,;]+", str(item)) if part]
    return out


def strings(value: Any) -> list[str]:
    """Non-blank strings from a list or one value (URLs, references; ``{"url": ...}`` entries too), stripped."""
    return [t for t in (text(first(v, "url", "href") if isinstance(v, dict) else v) for v in listify(value)) if t]


def score(value: Any, where: str) -> float | None:
    """A CVSS score (number or numeric string) as a float; None when absent."""
    if not present(value):
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number) or not 0 <= number <= 10:
        raise AdapterError(f"{where}: CVSS score {value!r} is not a number from 0 to 10")
    return number


def severity(value: Any, cvss: float | None, where: str) -> dict[str, Any]:
    """``severity``/``cvss_score`` Finding fields: the word (or level, or score) given, else from the CVSS score.

    Empty when neither is given, so a partial update keeps the stored severity.
    """
    out: dict[str, Any] = {} if cvss is None else {"cvss_score": cvss}
    if present(value):
        try:
            out["severity"] = normalize_severity(value)
        except ValueError as exc:
            raise AdapterError(f"{where}: severity: {exc}") from None
    elif cvss is not None:
        out["severity"] = severity_from_cvss(cvss)
    return out


def status(value: Any) -> Status | None:
    """open, resolved or dismissed from a platform's status word (None when absent)."""
    if not present(value) or not isinstance(value, str):
        return None
    word = re.sub(r"[\s-]+", "_", value.strip().lower()).replace("'", "")
    if word in RESOLVED:
        return "resolved"
    return "dismissed" if word in DISMISSED else "open"


def host_of(url: str) -> str | None:
    """The host name of a URL ("https://a.example:8443/x" -> "a.example"); None when it has none."""
    try:
        return urlsplit(url if "//" in url else f"//{url}").hostname
    except ValueError:
        return None


def text(value: Any) -> str | None:
    """Strings stripped (blank -> None); numbers as text; a list of strings as lines."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "\n".join(v for v in value if v.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def finding(where: str, fields: dict[str, Any]) -> Finding:
    """A Finding from the fields that are present; a validation failure becomes AdapterError naming ``where``."""
    data = {k: v for k, v in fields.items() if present(v)}
    if "asset" in data:
        data["asset"] = {k: (v if k in ("tags", "risk_score") else str(v)) for k, v in data["asset"].items()
                         if present(v)}
    try:
        return Finding.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                           for e in exc.errors(include_input=False, include_url=False))
        raise AdapterError(f"{where}: {detail}") from None
