"""Failure groups and bulk replay in the console (issue 14): error classes that group well, group states (audited,
refused for read-only, a resolved group re-opens when its class fails again), and bulk replay jobs that replay
exactly the confirmed set (the regression test: never a row outside the filter or made after the confirm) and
stop when cancelled."""

from __future__ import annotations

import asyncio
import html
import re
import time
import uuid
from typing import Any

import pytest

from hub.failures import error_class
from hub.ids import iso
from hub.store import failures as failure_rows
from hub.ui import failures as console_failures
from tests.test_console import Console, csrf, running

OLD = "2026-11-22T06:00:00.000Z"
CODE7 = ("HTTP 400 code 7 (Incorrect index): the token may not write to this index: check targets.siem.index and "
         "the token's allowed indexes")


@pytest.mark.parametrize(("status", "reason", "expected"), [
    (400, CODE7, "HTTP 400 code 7"),  # Splunk HEC: the status and HEC's code, whatever the text says after them
    (400, "HTTP 400 code 6 (Invalid data format)", "HTTP 400 code 6"),
    (404, "HTTP 404 INVALID_COMPUTER_ID: computer 4f1c2a9e-1b2c-4d3e-8f90-123456789abc not found",
     "HTTP 404 INVALID_COMPUTER_ID"),  # SecureEndpoint and Neuro: `HTTP <status> <code>: <message>`
    (400, "HTTP 400: x_content_parse_exception: bad", "HTTP 400: x_content_parse_exception: bad"),  # Elastic
    (200, "issueCreate: HTTP 200: Could not find referenced Team. (invalid input)",  # Linear: HTTP 200 errors
     "HTTP 200: issueCreate: HTTP 200: Could not find referenced Team. (invalid input)"),
    (422, "cf_team: It should not be blank (custom_fields of target fs)",
     "HTTP 422: cf_team: It should not be blank (custom_fields of target fs)"),
    (400, "InvalidItemIdException: item 1234567 does not exist on board 987",
     "HTTP 400: InvalidItemIdException: item N does not exist on board N"),
    (None, "lease expired: the result of the attempt was never recorded",
     "lease expired: the result of the attempt was never recorded"),
    (503, None, "HTTP 503: no reason given"),
])
def test_error_class_of_connector_reasons(status, reason, expected):
    assert error_class(status, reason) == expected


def test_error_classes_group_what_one_fix_ends_and_nothing_else():
    same = [(400, "InvalidItemIdException: item 1234567 does not exist on board 987"),
            (400, "InvalidItemIdException: item 42 does not exist on board 1001"),
            (400, "InvalidItemIdException:  item 7 does not exist on board 3")]
    assert len({error_class(s, r) for s, r in same}) == 1
    quoted = [(400, 'field "asset.host" of evt_812 is not a string (got 3.5)'),
              (400, "field 'severity' of evt_9 is not a string (got 12)"),
              (400, 'field "title" of evt_77 is not a string (got 0)')]
    assert len({error_class(s, r) for s, r in quoted}) == 2  # double and single quotes are different texts
    ids = [(409, "ticket 0a1b2c3d4e5f60718293a4b5 exists, updated 2026-11-22T06:23:08.123Z"),
           (409, "ticket ffeeddccbbaa99887766 exists, updated 2026-12-01T00:00:00Z")]
    assert len({error_class(s, r) for s, r in ids}) == 1
    apart = [(400, CODE7), (400, CODE7.replace("code 7", "code 6")), (403, CODE7.replace("400", "403")),
             (400, "InvalidItemIdException: item 1 does not exist"),
             (500, "InvalidItemIdException: item 1 does not exist")]
    assert len({error_class(s, r) for s, r in apart}) == len(apart)
    assert len(error_class(400, "x" * 5000)) < 200


def add(c: Console, target: str, state: str, *, status: int | None = 400, reason: str | None = CODE7,
        created: str = OLD, done_at: str | None = OLD, attempted: str = OLD, event: str | None = None) -> int:
    """A delivery row as the outbox leaves it; a pending one is due far away, so no worker takes it."""
    def write(conn: Any) -> int:
        cur = conn.execute(
            "INSERT INTO deliveries (route, target, kind, event_id, order_key, idempotency_key, state, attempts, "
            "created_at, next_attempt_at, last_attempt_at, last_status, last_error, done_at) "
            "VALUES ('all', ?, 'event.received', ?, ?, ?, ?, 1, ?, '2099-01-01T00:00:00.000Z', ?, ?, ?, ?)",
            (target, event, uuid.uuid4().hex, uuid.uuid4().hex, state, created, attempted, status, reason,
             done_at if state in ("dead", "done") else None))
        return int(cur.lastrowid)
    return c.hub.store.write_sync(write)


def snapshot(c: Console) -> dict[int, tuple[Any, ...]]:
    return {r[0]: tuple(r) for r in c.hub.store.conn.execute("SELECT * FROM deliveries ORDER BY seq")}


def hidden(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)}


async def start(c: Console, query: str) -> tuple[str, int]:
    """The confirm page of ``query`` and the count it shows."""
    page = await c.page(f"/ui/replay?{query}")
    found = re.search(r'<p class="count">(\d+) deliveries match', page)
    assert found, page
    return page, int(found.group(1))


async def post_start(c: Console, page: str) -> str:
    r = await c.client.post("/ui/replay", data=hidden(page))
    assert r.status_code == 303, r.text[:500]
    return r.headers["location"].rsplit("/", 1)[1]


async def ended(c: Console, job: str) -> dict[str, Any]:
    await c.harness.until(lambda: (failure_rows.get_job(c.hub.store.conn, job) or {}).get("state") != "running")
    row = failure_rows.get_job(c.hub.store.conn, job)
    assert row is not None
    return row


async def test_bulk_replay_replays_exactly_the_confirmed_set_and_nothing_else(tmp_path):
    async with running(tmp_path) as c:
        chosen = [add(c, "dead", "dead") for _ in range(3)]
        too_old = add(c, "dead", "dead", created="2026-11-21T06:00:00.000Z")  # outside the window
        too_new = add(c, "dead", "dead", created="2026-11-23T06:00:00.000Z")
        for _ in range(2):
            add(c, "ok", "dead")  # another target
            add(c, "dead", "done")  # another state
        fails_later = add(c, "dead", "in_flight")  # in the filter once it dies, but not when the set was fixed
        await c.login(c.token("admin"))
        page, shown = await start(c, "target=dead&state=dead&since=2026-11-22T00:00:00Z&until=2026-11-23T00:00:00Z")
        assert shown == 3

        c.skew[0] = 60
        new = [add(c, "dead", "dead") for _ in range(2)]  # made after the confirm, with an old time even
        c.hub.store.write_sync(lambda conn: conn.execute(
            "UPDATE deliveries SET state = 'dead', done_at = ? WHERE seq = ?", (iso(time.time() + 60), fails_later)))
        before = snapshot(c)
        job = await post_start(c, page)
        row = await ended(c, job)
        after = snapshot(c)
        changed = sorted(seq for seq in before if after[seq] != before[seq])
        assert changed == chosen  # not too_old, the other target or state, the late failure, the new rows
        assert all(after[seq] == before[seq] for seq in [too_old, too_new, fails_later, *new])
        assert (row["state"], row["total"], row["replayed"]) == ("done", 3, 3)
        [audit] = c.audit("console.deliveries.replay_bulk")
        assert audit["target"] == job and audit["detail"]["total"] == 3
        assert audit["detail"]["filter"] == {"target": "dead", "state": "dead", "since": "2026-11-22T00:00:00.000Z",
                                             "until": "2026-11-23T00:00:00.000Z"}
        assert "3 of 3 replayed" in await c.page(f"/ui/replays/{job}")


@pytest.mark.slow
async def test_cancel_stops_a_bulk_replay_after_its_current_page(tmp_path, monkeypatch):
    monkeypatch.setattr(console_failures, "REPLAY_PAGE", 2)
    monkeypatch.setattr(console_failures, "PAUSE_SECS", 0.3)
    async with running(tmp_path) as c:
        seqs = [add(c, "dead", "dead") for _ in range(10)]
        await c.login(c.token("admin"))
        page, shown = await start(c, "target=dead")
        assert shown == 10
        before = snapshot(c)
        job = await post_start(c, page)
        await c.harness.until(lambda: failure_rows.get_job(c.hub.store.conn, job)["replayed"] >= 2)  # type: ignore[index]
        running_page = await c.page(f"/ui/replays/{job}")
        assert 'http-equiv="refresh"' in running_page
        r = await c.client.post(f"/ui/replays/{job}/cancel", data={"csrf": csrf(running_page)})
        assert r.status_code == 303
        await asyncio.sleep(0.8)  # pages would go on every 0.3 s
        row = await ended(c, job)
        after = snapshot(c)
        assert row["state"] == "cancelled" and row["replayed"] == 2
        assert sorted(s for s in seqs if after[s] != before[s]) == seqs[:2]
        [audit] = c.audit("console.replays.cancel")
        assert audit["detail"]["before"]["state"] == "running" and audit["detail"]["after"]["state"] == "cancelled"
        assert (await c.client.post(f"/ui/replays/{job}/cancel", data={"csrf": csrf(running_page)})).status_code == 409


async def test_groups_by_target_and_class_with_their_state_audited_and_refused_for_read_only(tmp_path):
    async with running(tmp_path) as c:
        code7 = [add(c, "dead", "dead"), add(c, "dead", "dead", reason=CODE7.replace("siem", "other"))]
        retrying = add(c, "dead", "pending")
        elsewhere = add(c, "ok", "dead")
        item = [add(c, "dead", "dead", reason=f"InvalidItemIdException: item {n} does not exist") for n in (1, 22)]
        conn = c.hub.store.conn
        groups = {(g["target"], g["class"]): g for g in failure_rows.groups(conn)}
        assert set(groups) == {("dead", "HTTP 400 code 7"), ("ok", "HTTP 400 code 7"),
                               ("dead", "HTTP 400: InvalidItemIdException: item N does not exist")}
        g = groups[("dead", "HTTP 400 code 7")]
        assert (g["dead"], g["retrying"], g["state"]) == (2, 1, "open")
        members = failure_rows.members(failure_rows.register(conn), "dead", "HTTP 400 code 7", None, 50)
        assert [m["seq"] for m in members] == sorted([*code7, retrying], reverse=True)
        assert elsewhere not in [m["seq"] for m in members] and not set(item) & {m["seq"] for m in members}

        url = "/ui/failures/group?target=dead&class=HTTP+400+code+7"
        await c.login(c.token("read", name="viewer"))
        listing = await c.page("/ui/failures?target=dead")
        assert "HTTP 400 code 7" in listing and "InvalidItemIdException" in listing
        page = await c.page(url)
        assert all(f"dlv_{s}" in page for s in [*code7, retrying]) and "Set state" not in page
        form = {"csrf": csrf(page), "target": "dead", "class": "HTTP 400 code 7", "state": "resolved"}
        r = await c.client.post("/ui/failures/group/state", data=form)
        assert r.status_code == 403 and "read-only" in r.text
        assert failure_rows.group(conn, "dead", "HTTP 400 code 7")["state"] == "open"  # type: ignore[index]
        assert not c.audit("console.failures.state")

        await c.login(c.token("admin"))
        page = await c.page(url)
        assert "Set state" in page and "/ui/replay?target=dead&amp;class=HTTP+400+code+7&amp;state=dead" in page
        r = await c.client.post("/ui/failures/group/state", data={**form, "csrf": "forged"})
        assert r.status_code == 403
        r = await c.client.post("/ui/failures/group/state", data={**form, "csrf": csrf(page)})
        assert r.status_code == 303
        [audit] = c.audit("console.failures.state")
        assert audit["target"] == "dead / HTTP 400 code 7" and audit["detail"]["before"]["state"] == "open"
        assert audit["detail"]["after"]["state"] == "resolved" and audit["actor"].startswith("token:ops (")
        assert "HTTP 400 code 7" in await c.page("/ui/failures?state=resolved")
        assert "HTTP 400 code 7" not in await c.page("/ui/failures?state=open&target=dead")

        add(c, "dead", "dead", attempted=iso(time.time() + 5))  # the class fails again after the resolve
        g = failure_rows.group(conn, "dead", "HTTP 400 code 7")
        assert g is not None and g["state"] == "open" and g["reopened"] and g["dead"] == 3
        assert "failed again after it was resolved" in await c.page("/ui/failures?state=open")
        assert "unknown parameter(s): nope" in await c.page("/ui/failures?nope=1", 400)


async def test_replay_of_a_group_takes_only_its_dead_letters(tmp_path):
    async with running(tmp_path) as c:
        code7 = [add(c, "dead", "dead") for _ in range(2)]
        add(c, "dead", "pending")  # retrying: in the group, not replayed
        add(c, "dead", "dead", reason="HTTP 400 code 6 (Invalid data format)")
        add(c, "ok", "dead")
        await c.login(c.token("admin"))
        assert (await start(c, "event=evt_5"))[1] == 0
        page, shown = await start(c, "target=dead&class=HTTP+400+code+7&state=dead")
        assert shown == 2
        before = snapshot(c)
        row = await ended(c, await post_start(c, page))
        after = snapshot(c)
        assert row["replayed"] == 2 and sorted(s for s in before if after[s] != before[s]) == code7
        await c.login(c.token("read", name="viewer"))
        page = await c.page("/ui/replay?target=dead&class=HTTP+400+code+7")
        assert "Replay 0" not in page and "<form method=\"post\" action=\"/ui/replay\">" not in page
        r = await c.client.post("/ui/replay", data=hidden(page) | {"csrf": csrf(page)})
        assert r.status_code == 403 and not failure_rows.get_job(c.hub.store.conn, "rpl_2")


async def test_replay_of_an_event_takes_only_the_deliveries_it_caused(tmp_path):
    async with running(tmp_path) as c:
        caused = [add(c, target, "dead", event="evt_5") for target in ("dead", "ok")]
        add(c, "dead", "dead", event="evt_6")
        add(c, "dead", "dead")
        await c.login(c.token("admin"))
        page, shown = await start(c, "event=evt_5")
        assert shown == 2
        before = snapshot(c)
        row = await ended(c, await post_start(c, page))
        after = snapshot(c)
        assert row["replayed"] == 2 and sorted(s for s in before if after[s] != before[s]) == caused
        assert "state must be one of dead, done" in await c.page("/ui/replay?state=pending", 400)


async def test_the_pages_have_the_security_headers_and_a_job_without_its_task_shows_as_interrupted(tmp_path):
    async with running(tmp_path) as c:
        add(c, "dead", "dead")
        add(c, "ok", "dead")
        await c.login(c.token("admin"))
        page, _ = await start(c, "target=dead")
        job = await post_start(c, page)
        await ended(c, job)
        orphan = c.hub.store.write_sync(lambda conn: failure_rows.create_job(
            conn, {"state": "dead"}, 1, OLD, "token:gone (0)", OLD))  # as a hub that stopped mid-run left it
        for path in ["/ui/failures", "/ui/failures/group?target=ok&class=HTTP+400+code+7", "/ui/replay?target=dead",
                     f"/ui/replays/{job}", f"/ui/replays/{orphan['id']}", "/ui/deliveries?target=dead"]:
            r = await c.client.get(path)
            assert r.status_code == 200, path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
            assert not re.search(r"<script(?![^>]*\bsrc=)", r.text) and " style=" not in r.text, path
        assert "Bulk replay…" in await c.page("/ui/deliveries?target=dead")
        assert "Bulk replay…" not in await c.page("/ui/deliveries?state=pending")  # only dead or done ones replay
        shown = await c.page(f"/ui/replays/{orphan['id']}")
        assert "interrupted" in shown and "Cancel" in shown and "http-equiv" not in shown
        assert "Cancel" not in await c.page(f"/ui/replays/{job}")
        assert "No replay job rpl_99" in await c.page("/ui/replays/rpl_99", 404)


async def test_an_interrupted_bulk_replay_resumes_where_it_stopped_over_the_same_set(tmp_path):
    """A job the hub stopped in the middle of (its row says running, no task runs it) is resumed from its cursor,
    over the set fixed when it was confirmed: rows that died since are not in it. Admin only, audited; a job that
    has ended is a 409."""
    async with running(tmp_path) as c:
        seqs = [add(c, "dead", "dead") for _ in range(3)]
        bounds = c.hub.store.write_sync(failure_rows.bounds)
        orphan = c.hub.store.write_sync(lambda conn: failure_rows.create_job(
            conn, {"state": "dead", "target": "dead"}, bounds, OLD, "token:gone (0)", OLD))
        c.hub.store.write_sync(lambda conn: conn.execute("UPDATE replay_jobs SET replayed = 1, after = ? "
                                                         "WHERE seq = ?", (seqs[0], orphan["seq"])))
        late = add(c, "dead", "dead")  # died after the confirm: outside the set
        before = snapshot(c)
        await c.login(c.token("read"))
        page = await c.page(f"/ui/replays/{orphan['id']}")
        assert "interrupted" in page and "Resume" not in page
        await c.login(c.token("admin"))
        page = await c.page(f"/ui/replays/{orphan['id']}")
        assert "Resume" in page
        r = await c.client.post(f"/ui/replays/{orphan['id']}/resume", data={"csrf": csrf(page)})
        assert r.status_code == 303
        row = await ended(c, orphan["id"])
        assert row["state"] == "done" and row["replayed"] == 3 and row["total"] == 3
        after = snapshot(c)
        assert sorted(s for s in before if after[s] != before[s]) == seqs[1:]  # the first was replayed before
        assert after[late] == before[late]
        assert [a["target"] for a in c.audit("console.replays.resume")] == [orphan["id"]]
        again = await c.client.post(f"/ui/replays/{orphan['id']}/resume", data={"csrf": csrf(page)})
        assert again.status_code == 409


@pytest.mark.sqlite_only
def test_groups_and_members_read_the_failed_deliveries_index_not_the_outbox(tmp_path):
    """The group queries' condition is the partial index's WHERE, word for word: a change to one without the other
    makes every failure page scan the whole outbox again, which only this plan shows."""
    from hub.store import SqliteStore

    store = SqliteStore(tmp_path / "hub.db")
    conn = failure_rows.register(store.conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    failure_rows.groups(conn)
    failure_rows.group(conn, "t", "HTTP 400: bad")
    failure_rows.members(conn, "t", "HTTP 400: bad", 10, 50)
    conn.set_trace_callback(None)
    reads = [s for s in statements if "FROM deliveries" in s]
    assert len(reads) == 3
    for sql in reads:
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX deliveries_failed" in plan and "SCAN deliveries |" not in plan + " |", plan
    store.conn.close()
