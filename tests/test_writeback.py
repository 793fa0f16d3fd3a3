"""The loop back to the source: a ticket a person closes as "won't fix" dismisses its finding, and the source platform
is told through the outbox (SecureEndpoint: POST /v1/findings/{id}/dismiss; NEURO: PUT /findings/{id}), never the
ticket that caused it; later reports leave the finding dismissed until the source says closed, then open again.

Everything runs through an in-process Hub against fakes of Linear (tests/fakes/linear.py) and of the platforms'
write and list endpoints (tests/fakes/writeback.py, tests/fakes/platforms.py), built from the seed documents."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub import signatures
from hub.errors import ConfigError
from hub.ids import iso
from hub.settings import load_config
from hub.store import findings as finding_rows
from tests.fakes import platforms
from tests.fakes.linear import API_KEY, TEAM, FakeLinear
from tests.fakes.writeback import Platform, neuro, secureendpoint
from tests.support import HubHarness, deliveries_of, findings_of, write_config

SE_SECRET, SE_KEY, SE_ID = "se-webhook-secret", "se_live_writeback_test", "fnd_8xkQ2p"
NEURO_TOKEN, NEURO_HOOK_TOKEN, NEURO_ID = "neuro-api-token-test", "neuro-hook-token", "find_789"
FAST_RETRY = {"schedule_secs": [0.05, 0.05], "jitter": 0}
LIFECYCLE = ["finding.created", "finding.updated", "finding.resolved", "finding.reopened"]


def linear_target(**sync: Any) -> dict[str, Any]:
    return {"type": "linear", "auth": {"api_key": API_KEY}, "team_id": TEAM, "url": "http://linear.test",
            "rate_limit": {"per_sec": 1000}, "retry": FAST_RETRY,
            "sync": {"dismiss_states": ["Won't Fix", "Canceled"], **sync}}


def se_config(tmp_path: Path, writeback: bool = True) -> dict[str, Any]:
    routes: list[dict[str, Any]] = [{"name": "tickets", "on": LIFECYCLE, "to": ["secops"]}]
    targets: dict[str, Any] = {"secops": linear_target()}
    if writeback:
        routes.append({"name": "dismiss-back", "on": ["finding.dismissed"], "from": ["secureendpoint"],
                       "to": ["se_api"]})
        targets["se_api"] = {"type": "secureendpoint", "url": "http://se.test/v1", "token": SE_KEY,
                             "rate_limit": {"per_sec": 1000}, "retry": FAST_RETRY}
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"secureendpoint": {
            "verify": {"scheme": "hmac-sha256", "header": "X-SE-Signature", "secrets": [SE_SECRET]},
            "adapter": "secureendpoint",
            "poll": {"url": "http://se.test/v1/findings", "auth": {"bearer": SE_KEY}, "every_secs": 900,
                     "size_param": "per_page"}}},
        "routes": routes, "targets": targets, "pipeline": {"safety_net_secs": 0.5},
    }


class Harness(HubHarness):
    def kinds(self, target: str) -> list[tuple[str, str]]:
        return [(d["kind"], d["state"]) for d in deliveries_of(self.hub.store.conn, target=target)]

    def status(self) -> str:
        [found] = findings_of(self.hub.store.conn)
        return found.status

    def history(self) -> list[dict[str, Any]]:
        [found] = findings_of(self.hub.store.conn)
        return finding_rows.history(self.hub.store.conn, found.id)

    async def se_webhook(self, event: str = "finding.created", **data: Any) -> None:
        await self.post("secureendpoint", {"event": event, "timestamp": iso(time.time()) + str(self.n),
                                           "data": {"finding_id": SE_ID, "severity": "critical", "cvss": 9.8, **data}})

    async def dismiss_in_linear(self, fake: FakeLinear) -> None:
        """A person moves the issue to Canceled (a dismiss state); the sync job reads it back."""
        await self.until(lambda: self.kinds("secops") == [("finding.created", "done")])
        fake.close("SEC-1", "canceled")
        report = await self.hub.syncs["secops"].run()
        assert report.checked == 1 and report.resolved == 0


def se_harness(tmp_path: Path, fake: FakeLinear, se: Platform, listing: Any = None,
               writeback: bool = True) -> AbstractAsyncContextManager[Harness]:
    transports = {"secops": httpx.ASGITransport(app=fake.app), "se_api": httpx.ASGITransport(app=se.app),
                  "poll:secureendpoint": httpx.ASGITransport(app=listing or platforms.secureendpoint(SE_KEY))}
    signer = signatures.build("hmac-sha256", [SE_SECRET], header="X-SE-Signature")
    return Harness.running(tmp_path, se_config(tmp_path, writeback), transports, scheduler=False, signer=signer)


@pytest.mark.slow
async def test_a_ticket_closed_as_wont_fix_dismisses_the_finding_and_secureendpoint_is_told_not_the_ticket(tmp_path):
    fake, se = FakeLinear(), secureendpoint(SE_KEY, SE_ID)
    async with se_harness(tmp_path, fake, se) as h:
        await h.se_webhook()
        await h.dismiss_in_linear(fake)
        await h.until(lambda: h.kinds("se_api") == [("finding.dismissed", "done")])
        assert h.status() == "dismissed"
        step = h.history()[-1]
        [issue] = fake.issues.values()
        assert step["event_type"] == "finding.dismissed" and step["actor"] == "target:secops"
        assert {k: step["changes"][k] for k in ("dismissed_by", "remote_status", "remote_id")} == \
            {"dismissed_by": "secops", "remote_status": "Canceled", "remote_id": issue["id"]}
        [(method, path, body)] = se.requests
        assert (method, path) == ("POST", f"/v1/findings/{SE_ID}/dismiss")
        assert issue["url"] in body["reason"] and "secops" in body["reason"] and "Canceled" in body["reason"]
        assert se.findings[SE_ID]["status"] == "dismissed"
        assert h.kinds("secops") == [("finding.created", "done")]  # no echo to the issue that dismissed it
        assert fake.view(issue)["state"]["name"] == "Canceled"


@pytest.mark.slow
async def test_later_reports_leave_it_dismissed_until_secureendpoint_says_closed_then_open(tmp_path):
    fake, se = FakeLinear(), secureendpoint(SE_KEY, SE_ID)
    listing = platforms.secureendpoint(SE_KEY)
    listing.state.s["findings"] = [se.findings[SE_ID]]  # the list shows the record the write-back changes
    async with se_harness(tmp_path, fake, se, listing) as h:
        se.script = [503]  # the platform is down for a moment: the dismissal waits, the poll still says open
        await h.se_webhook()
        await h.dismiss_in_linear(fake)
        await h.hub.pollers["secureendpoint"].run()
        await h.se_webhook(severity="high")  # a later finding.created for the same finding
        await h.until(lambda: h.kinds("se_api") == [("finding.dismissed", "done")] and h.settled())
        assert h.status() == "dismissed"
        [dismissal] = deliveries_of(h.hub.store.conn, target="se_api")
        assert dismissal["attempts"] == 2  # the 503 was retried
        await h.hub.pollers["secureendpoint"].run()  # SecureEndpoint now lists it dismissed: closed at the source
        await h.until(lambda: h.events("pending") == 0 and h.history()[-1]["changes"].get("source_status"))
        assert h.status() == "dismissed"
        assert h.kinds("secops") == [("finding.created", "done")]
        se.findings[SE_ID]["status"] = "open"  # someone reopened it at SecureEndpoint: new again
        await h.hub.pollers["secureendpoint"].run()
        await h.until(lambda: h.status() == "open" and h.settled())
        assert h.history()[-1]["changes"]["status"] == {"old": "dismissed", "new": "open"}
        assert h.kinds("secops") == [("finding.created", "done"), ("finding.reopened", "done")]
        assert fake.view(next(iter(fake.issues.values())))["state"]["type"] == "unstarted"
        assert h.kinds("se_api") == [("finding.dismissed", "done")]


@pytest.mark.slow
async def test_a_refused_dismissal_ends_dead_with_secureendpoints_reason(tmp_path):
    fake, se = FakeLinear(), secureendpoint(SE_KEY, SE_ID)
    se.script = [400]
    async with se_harness(tmp_path, fake, se) as h:
        await h.se_webhook()
        await h.dismiss_in_linear(fake)
        await h.until(lambda: h.kinds("se_api") == [("finding.dismissed", "dead")])
        [dead] = deliveries_of(h.hub.store.conn, target="se_api")
        assert dead["attempts"] == 1 and "HTTP 400 bad_request" in dead["last_error"]
        assert SE_KEY not in dead["last_error"]
        assert h.status() == "dismissed" and se.findings[SE_ID]["status"] == "open"


@pytest.mark.slow
async def test_without_write_back_the_finding_is_dismissed_and_nothing_is_sent(tmp_path):
    fake, se = FakeLinear(), secureendpoint(SE_KEY, SE_ID)
    async with se_harness(tmp_path, fake, se, writeback=False) as h:
        await h.se_webhook()
        await h.dismiss_in_linear(fake)
        await h.until(lambda: h.status() == "dismissed")
        await h.until(h.settled)
        assert h.history()[-1]["event_type"] == "finding.dismissed"
        assert h.kinds("secops") == [("finding.created", "done")] and not se.requests
        far = iso(time.time() + 10 * 365 * 86400)
        assert finding_rows.due_for_sla(h.hub.store.conn, far) == []  # not open: never an SLA breach


@pytest.mark.slow
async def test_a_ticket_closed_in_a_state_not_listed_still_resolves(tmp_path):
    fake, se = FakeLinear(), secureendpoint(SE_KEY, SE_ID)
    async with se_harness(tmp_path, fake, se) as h:
        await h.se_webhook()
        await h.until(lambda: h.kinds("secops") == [("finding.created", "done")])
        fake.close("SEC-1", "completed")
        await h.hub.syncs["secops"].run()
        await h.until(lambda: h.status() == "resolved" and h.settled())
        assert not se.requests and h.kinds("se_api") == []


def neuro_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"neuro": {"verify": {"scheme": "token", "header": "Authorization", "secrets": [NEURO_HOOK_TOKEN]},
                              "adapter": "neuro"}},
        "routes": [{"name": "tickets", "on": LIFECYCLE, "to": ["secops"]},
                   {"name": "dismiss-back", "on": ["finding.dismissed"], "from": ["neuro"], "to": ["neuro_api"]}],
        "targets": {"secops": linear_target(),
                    "neuro_api": {"type": "neuro", "url": "http://neuro.test/api/v1", "token": NEURO_TOKEN,
                                  "retry": FAST_RETRY}},
        "pipeline": {"safety_net_secs": 0.5},
    }


@pytest.mark.slow
async def test_neuro_gets_a_put_with_the_dismissed_status_and_a_later_open_report_leaves_it(tmp_path):
    fake, nf = FakeLinear(), neuro(NEURO_TOKEN, NEURO_ID)
    transports = {"secops": httpx.ASGITransport(app=fake.app), "neuro_api": httpx.ASGITransport(app=nf.app)}
    signer = signatures.build("token", [NEURO_HOOK_TOKEN], header="Authorization")
    async with Harness.running(tmp_path, neuro_config(tmp_path), transports, scheduler=False, signer=signer) as h:
        hook = {"event": "finding.created", "timestamp": "2024-01-15T10:30:00Z",
                "data": {"id": NEURO_ID, "title": "SQL Injection", "project_id": "proj_123", "severity": "High"}}
        await h.post("neuro", hook)
        await h.dismiss_in_linear(fake)
        await h.until(lambda: h.kinds("neuro_api") == [("finding.dismissed", "done")])
        [(method, path, body)] = nf.requests
        assert (method, path, body) == ("PUT", f"/api/v1/findings/{NEURO_ID}", {"status": "Accepted Risk"})
        assert nf.findings[NEURO_ID]["status"] == "Accepted Risk"
        await h.post("neuro", {**hook, "event": "finding.updated", "timestamp": "2024-01-16T10:30:00Z",
                               "data": {**hook["data"], "status": "Open"}})  # before any closing report: no news
        await h.until(lambda: h.events("pending") == 0)
        assert h.status() == "dismissed" and h.kinds("secops") == [("finding.created", "done")]


def test_write_back_routes_and_dismiss_states_are_checked_at_load(tmp_path):
    data = se_config(tmp_path)
    data["routes"][1]["from"] = ["secureendpoint", "api"]
    data["routes"].append({"name": "all-dismissals", "on": ["finding.dismissed"], "to": ["se_api"]})
    data["targets"]["secops"]["sync"]["dismiss_states"] = ["Won't Fix", "won't fix", " "]
    data["targets"]["helpdesk"] = {"type": "freshservice", "url": "https://acme.freshservice.com",
                                   "auth": {"api_key": "fs-key"}, "requester_email": "bot@example.com"}
    data["routes"].append({"name": "echo", "on": ["finding.dismissed"], "to": ["secops", "helpdesk"]})
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path / "hub.yaml", data))
    text = str(caught.value)
    assert "routes[1].from: target se_api writes back to secureendpoint" in text and "(not api)" in text
    assert "routes[2].from: target se_api writes back to secureendpoint" in text
    assert "sync.dismiss_states[1]: \"won't fix\" is listed twice" in text
    assert "sync.dismiss_states[2]: an empty state name" in text
    for i, name in enumerate(["secops", "helpdesk"]):  # a ticket is never sent the dismissal it caused
        assert f"routes[3].to[{i}]: target {name} ({'linear' if i == 0 else 'freshservice'}) cannot deliver " \
               "finding.dismissed" in text
    assert "hub.yaml:" in text and SE_KEY not in text
