"""The linear adapter: Linear ``Issue`` update webhooks -> ticket statuses for one linear target; stale
timestamps refused; anything odd is an AdapterError, never another exception."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.adapters import BUILTIN, Parsed, StoredEvent, adapter_class
from hub.adapters.linear import LinearAdapter, LinearOptions
from hub.connector import RemoteStatus
from hub.errors import AdapterError, ConfigError
from hub.ids import parse_iso
from hub.settings import load_config
from tests.adapters.test_contract import junk, mutate
from tests.support import write_config

RECEIVED = "2026-03-10T09:14:23.000Z"
NOW_MS = int(parse_iso(RECEIVED) * 1000)
ISSUE_ID = "2c34d44e-1454-402b-94df-284e4c6fdd99"


def webhook(state_type: str = "completed", name: str = "Done", **top: Any) -> dict[str, Any]:
    """An Issue update as Linear sends it (fields trimmed to the ones that matter plus a few others)."""
    return {"action": "update", "type": "Issue", "createdAt": RECEIVED, "organizationId": "org-1",
            "webhookId": "wh-1", "url": "https://linear.app/acme/issue/SEC-1", "webhookTimestamp": NOW_MS,
            "data": {"id": ISSUE_ID, "identifier": "SEC-1", "title": "[HIGH] x", "priority": 2,
                     "stateId": "st-1", "state": {"id": "st-1", "name": name, "type": state_type, "color": "#5e6ad2"}},
            "updatedFrom": {"stateId": "st-0"}, **top}


def parse(body: Any, received_at: str = RECEIVED) -> Parsed:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    event = StoredEvent("evt_1", "linear_hooks", received_at, "application/json", {}, raw, "hmac-sha256")
    return LinearAdapter("linear_hooks", LinearOptions(target="secops")).parse(event)


def test_registered_with_options_and_documented():
    assert BUILTIN["linear"] == "hub.adapters.linear:LinearAdapter"
    cls = adapter_class("linear")
    assert cls is LinearAdapter and cls.name == "linear" and cls.Options is LinearOptions
    assert cls.__doc__ and cls.parse.__doc__ and LinearOptions.model_fields["target"].description


@pytest.mark.parametrize("state_type, name, closed", [("completed", "Done", True), ("canceled", "Won't fix", True),
                                                      ("started", "In Progress", False), ("unstarted", "Todo", False),
                                                      ("backlog", "Backlog", False), ("triage", "Triage", False)])
def test_closed_follows_the_state_type_not_its_name(state_type, name, closed):
    parsed = parse(webhook(state_type, name))
    assert parsed.findings == [] and parsed.full_scope is None
    assert parsed.statuses == {"secops": [RemoteStatus(ISSUE_ID, name, closed, "https://linear.app/acme/issue/SEC-1")]}


def test_a_state_called_done_that_is_started_stays_open():
    [status] = parse(webhook("started", "Done")).statuses["secops"]
    assert status.closed is False and status.status == "Done"


@pytest.mark.parametrize("body", [
    webhook(action="create"), webhook(action="remove"), webhook(type="Comment"),
    {**webhook(type="IssueLabel"), "data": {"id": "label"}},
])
def test_other_events_parse_to_nothing(body):
    assert parse(body) == Parsed()


@pytest.mark.parametrize("offset_ms, word", [(-61_000, "before"), (61_000, "after")])
def test_a_timestamp_more_than_60_s_away_is_refused(offset_ms, word):
    with pytest.raises(AdapterError, match=f"61 s {word} the hub received it.*replay"):
        parse(webhook(webhookTimestamp=NOW_MS + offset_ms))
    assert parse(webhook(webhookTimestamp=NOW_MS - 59_000)).statuses  # inside the window


@pytest.mark.parametrize("stamp", [None, "1741598063000", True, [NOW_MS]])
def test_a_missing_or_odd_timestamp_is_refused(stamp):
    body = webhook()
    if stamp is None:
        del body["webhookTimestamp"]
    else:
        body["webhookTimestamp"] = stamp
    with pytest.raises(AdapterError, match="webhookTimestamp"):
        parse(body)


@pytest.mark.parametrize("data, message", [({"state": {"type": "completed"}}, "data.id"),
                                           ({"id": ISSUE_ID}, "data.state.type"),
                                           ({"id": ISSUE_ID, "state": {"name": "Done"}}, "data.state.type")])
def test_an_issue_update_without_id_or_state_is_an_error(data, message):
    with pytest.raises(AdapterError, match=message):
        parse(webhook(data=data))


def test_options_need_a_target(tmp_path: Path):
    def source(options: Any) -> dict[str, Any]:
        return {"storage": {"path": str(tmp_path / "hub.db")}, "sources": {"lin": {
            "verify": {"scheme": "hmac-sha256", "header": "Linear-Signature", "secrets": ["s"]},
            "adapter": "linear", **({"options": options} if options is not None else {})}}}

    with pytest.raises(ConfigError, match=re.escape("sources.lin.options.target: required key is missing")):
        load_config(write_config(tmp_path / "a.yaml", source(None)))
    with pytest.raises(ConfigError, match=re.escape('sources.lin.options.taget: unknown key; did you mean "target"')):
        load_config(write_config(tmp_path / "b.yaml", source({"taget": "secops"})))
    assert load_config(write_config(tmp_path / "c.yaml", source({"target": "secops"}))).adapter_options("lin") == \
        LinearOptions(target="secops")


@pytest.mark.slow
def test_odd_and_broken_input_gives_parsed_or_adapter_error_only():
    rng = random.Random("adapters-linear")
    outcomes = set()
    for n in range(4000):
        body = mutate(webhook(), rng) if n % 2 else junk(rng)
        if n % 2 and isinstance(body, dict) and rng.random() < 0.5:
            body["webhookTimestamp"] = NOW_MS  # keep the clock right so the rest of the body gets looked at
        try:
            result = parse(body)
        except AdapterError:
            outcomes.add("error")
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"linear raised {type(exc).__name__}: {exc} on {body!r}") from exc
        else:
            assert isinstance(result, Parsed)
            outcomes.add("statuses" if result.statuses else "nothing")
    assert outcomes == {"error", "statuses", "nothing"}


def test_the_send_test_sample_is_a_fresh_issue_update_that_parses_to_one_closed_status():
    import time

    from hub import samples

    now = time.time()
    body = samples.sample_body("linear", now)
    event = StoredEvent("evt_1", "linear_hooks", samples.iso(now), "application/json", {}, orjson.dumps(body),
                        "hmac-sha256")
    parsed = LinearAdapter("linear_hooks", LinearOptions(target="secops")).parse(event)
    assert parsed.findings == []
    [status] = parsed.statuses["secops"]
    assert status.closed and status.remote_id == body["data"]["id"]
