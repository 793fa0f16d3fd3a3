"""Every built-in adapter: registered under its name, parses its send-test sample, and never fails with
anything but AdapterError on odd input."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest

from hub import samples
from hub.adapters import BUILTIN, Parsed, adapter_class
from hub.errors import AdapterError
from tests.adapters import test_neuro, test_obexum, test_secuprobe, test_secureendpoint, test_strobes
from tests.adapters.helpers import parse, stored

# linear is a sync-back adapter for ticket webhooks, not a seed platform (see tests/adapters/test_linear.py)
PLATFORMS = sorted(set(BUILTIN) - {"generic", "linear"})


def test_the_seed_platforms_are_registered():
    assert set(PLATFORMS) == {"secureendpoint", "obexum", "neuro", "secuprobe", "strobes"}


@pytest.mark.parametrize("name", PLATFORMS)
def test_registered_under_its_own_name_without_options(name):
    cls = adapter_class(name)
    assert cls.name == name
    assert cls.Options is None
    assert cls.__doc__ and cls.parse.__doc__


@pytest.mark.parametrize("name", PLATFORMS)
def test_send_test_sample_parses_into_an_open_finding_with_a_title(name):
    body = orjson.loads(orjson.dumps(samples.sample_body(name, time.time())))
    parsed = adapter_class(name)("sample", None).parse(stored(body))
    assert parsed.findings, f"the {name} sample gives no finding"
    for f in parsed.findings:
        assert f.title and f.status == "open" and f.tool_id


def test_samples_use_fresh_ids():
    for name in PLATFORMS:
        assert samples.sample_body(name, 0) != samples.sample_body(name, 0)


KEYS = ["event", "data", "findings", "objects", "type", "scan", "vulnerabilities", "id", "finding_id", "title",
        "name", "severity", "cvss", "cvss_score", "status", "url", "cve", "cwe", "asset", "host", "source_ref",
        "target_ref", "external_references", "x_obexum_remediation", "commands", "success", "error", "total",
        "software", "affected_assets", "remediation", "references", "tags", "qid"]
VALUES: list[Any] = [None, True, 0, 7, 9.8, -1, "", "x", "bundle", "completed", "failed", "finding.created",
                     "finding.resolved", "finding.deleted", "x-obexum-finding", "relationship", "vulnerability",
                     "attack-pattern", "https://a.example", "high", [], {}]


def junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value made of the keys and values the adapters look at."""
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(VALUES)
    if roll < 0.55:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): junk(rng, depth + 1) for _ in range(rng.randint(0, 6))}


@pytest.mark.slow
@pytest.mark.parametrize("name", PLATFORMS)
def test_odd_input_gives_parsed_or_adapter_error_never_another_exception(name):
    rng = random.Random(f"adapters-{name}")
    outcomes = set()
    for _ in range(3000):
        body = junk(rng)
        try:
            result = parse(name, body)
        except AdapterError:
            outcomes.add("error")
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc} on {body!r}") from exc
        else:
            assert isinstance(result, Parsed)
            outcomes.add("parsed")
    assert outcomes == {"error", "parsed"}


VALID: dict[str, list[Any]] = {
    "secureendpoint": [test_secureendpoint.WEBHOOK, test_secureendpoint.PAGE,
                       test_secureendpoint.webhook("finding.created", asset=test_secureendpoint.ASSET,
                                                   software="x", cve="CVE-2024-1", status="open")],
    "obexum": [test_obexum.SEED_BUNDLE, test_obexum.TWO_FINDINGS, test_obexum.GENERIC],
    "neuro": [test_neuro.WEBHOOK, test_neuro.PAGE, test_neuro.CREATE_BODY],
    "secuprobe": [test_secuprobe.combined(test_secuprobe.HSTS), {**test_secuprobe.VULNS, "url": "https://a.example"}],
    "strobes": [test_strobes.SEED, {"findings": [test_strobes.FULL]}],
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    out = [prefix]
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in children:
        out += paths(child, (*prefix, key))
    return out


def mutate(doc: Any, rng: random.Random) -> Any:
    """A copy of ``doc`` with one value replaced by junk (or one key removed)."""
    doc = orjson.loads(orjson.dumps(doc))
    path = rng.choice(paths(doc)[1:] or [()])
    if not path:
        return junk(rng)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
    else:
        parent[path[-1]] = junk(rng, 2)
    return doc


@pytest.mark.slow
@pytest.mark.parametrize("name", PLATFORMS)
def test_valid_payloads_with_one_value_broken_never_raise_anything_but_adapter_error(name):
    rng = random.Random(f"mutate-{name}")
    for _ in range(3000):
        body = rng.choice(VALID[name])
        for _ in range(rng.randint(1, 3)):
            body = mutate(body, rng)
        try:
            parse(name, body)
        except AdapterError:
            pass
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc} on {body!r}") from exc
