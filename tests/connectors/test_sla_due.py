"""SLA due dates on tickets: every ticketing target sends the finding's due date when it creates the ticket,
and the new one when a severity change moves it (the changes come from the real lifecycle)."""

from __future__ import annotations

import httpx
import pytest

from hub import lifecycle
from hub.config import SlaConfig
from hub.connector import Connector, Item, Outcome, Ref
from hub.goldens import connector_for_examples
from hub.ids import parse_iso
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.models import Finding
from hub.registry import connector_class
from tests.fakes.freshservice import fake_freshservice

START = parse_iso("2026-11-22T10:00:00Z")
SLA = SlaConfig()  # critical 7 days, high 30


def connector(type_name: str) -> Connector:
    mapping = load_mapping(type_name, BUILTIN_ROOT / type_name, connector_class(type_name).payloads)
    return connector_for_examples(type_name, mapping)


def steps() -> tuple[lifecycle.Change, lifecycle.Change]:
    """A high finding (due in 30 days), then reported critical a day later (due 7 days after first seen)."""
    report = {"source": "scanner", "title": "SQL injection", "severity": "high", "asset": {"hostname": "web-01"}}
    created = lifecycle.apply(None, Finding.model_validate(report), START, SLA)
    worse = lifecycle.apply(created.finding, Finding.model_validate({**report, "severity": "critical"}),
                            START + 86400, SLA)
    return created, worse


def item(change: lifecycle.Change, kind: str, ref: Ref | None = None) -> Item:
    return Item("dlv_1", kind, "fh_key", "all", "example", change.finding.model_dump(mode="json"), None,
                change.changes, ref)


def bodies(c: Connector, it: Item) -> str:
    return " ".join(out.body.decode() for out in c.render(it))


# what each vendor's field looks like in the request: Linear and monday take a date, Freshservice and Notion a time
DUE = {"linear": ('"dueDate":"{d}"', "date"), "monday": ('\\"date\\":\\"{d}\\"', "date"),
       "notion": ('"date":{{"start":"{t}"}}', "time"), "freshservice": ('"due_by":"{t}"', "time")}


@pytest.mark.slow
@pytest.mark.parametrize("type_name", sorted(DUE))
def test_due_date_on_create_and_moved_by_a_severity_change(type_name: str) -> None:
    c = connector(type_name)
    if type_name == "freshservice":
        c.clock = lambda: START  # type: ignore[attr-defined]  # it leaves dates already past out
    created, worse = steps()
    old, new = created.finding.sla_due_at, worse.finding.sla_due_at
    assert old == "2026-12-22T10:00:00.000Z" and new == "2026-11-29T10:00:00.000Z"
    assert worse.changes["sla_due_at"] == {"old": old, "new": new}
    shape, _ = DUE[type_name]

    def field(t: str) -> str:
        return shape.format(d=t[:10], t=t)

    create = bodies(c, item(created, "finding.created"))
    assert field(old) in create, create[:2000]
    ref = Ref(created.finding.id, "example", "remote-1", None, None, "linked")
    update = bodies(c, item(worse, "finding.updated", ref))
    assert field(new) in update and field(old) not in update, update[:2000]
    # fixed, then reported again two days later: the date is counted from the reopen, and the ticket gets it
    fixed = lifecycle.apply(worse.finding, worse.finding.model_copy(update={"status": "resolved"}), START + 2 * 86400,
                            SLA)
    back = lifecycle.apply(fixed.finding, worse.finding, START + 3 * 86400, SLA)
    assert back.kind == "finding.reopened" and back.finding.sla_due_at == "2026-12-02T10:00:00.000Z"
    reopen = bodies(c, item(back, "finding.reopened", ref))
    assert field(back.finding.sla_due_at) in reopen, reopen[:2000]


async def test_freshservice_accepts_the_due_dates_and_past_ones_are_left_out() -> None:
    """Against the fake, which refuses a due_by in the past and a fr_due_by after due_by, as Freshservice does."""
    c = connector("freshservice")
    app = fake_freshservice(api_key="example-api-key-not-a-secret")
    app.state.now = "2026-11-22T12:00:00Z"
    client = c.client(transport=httpx.ASGITransport(app=app))
    created, worse = steps()
    c.clock = lambda: START + 7200  # type: ignore[attr-defined]
    async with client:
        verdict = await c.deliver(client, item(created, "finding.created"))
        assert verdict.outcome is Outcome.OK, verdict.reason
        ticket = app.state.tickets[1]
        assert (ticket["due_by"], ticket["fr_due_by"]) == (created.finding.sla_due_at,) * 2
        ref = Ref(created.finding.id, "example", "1", None, None, "linked")
        verdict = await c.deliver(client, item(worse, "finding.updated", ref))
        assert verdict.outcome is Outcome.OK, verdict.reason
        assert ticket["due_by"] == ticket["fr_due_by"] == worse.finding.sla_due_at
        # a week later the critical's date has passed: a new ticket for it is created without due dates
        app.state.now = "2026-12-01T00:00:00Z"
        c.clock = lambda: parse_iso("2026-12-01T00:00:00Z")  # type: ignore[attr-defined]
        late = worse.finding.model_copy(update={"id": "fnd_01JLATE000000000000000000"})
        verdict = await c.deliver(client, Item("dlv_2", "finding.created", "k2", "all", "example",
                                               late.model_dump(mode="json"), None, {}, None))
        assert verdict.outcome is Outcome.OK, verdict.reason
        assert "due_by" not in app.state.tickets[2] and "fr_due_by" not in app.state.tickets[2]
