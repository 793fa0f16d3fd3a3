"""The store's contract, once, against both engines: every test here runs on SQLite and on PostgreSQL.

What the rest of the hub relies on: the duplicate rules, the outbox's claim and order rule and leases, rollback of
a failed write, searches that mean the same (LIKE without case, JSON inside text columns, bytes inside bodies), the
error-class groups and a replay of exactly one class, the SLA report's arithmetic. The whole suite also runs on
PostgreSQL with HUB_TEST_STORE=postgres (.ci/run); tests/test_store_pg.py has what only PostgreSQL has (several
processes at once, its migrations' lock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.ids import iso
from hub.models import Finding
from hub.store import SqliteStore, Store, open_store, replays, sla, sync_state
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store import failures as failure_rows
from hub.store import findings as finding_rows
from hub.store import tokens as token_rows
from tests.pg import PG_URL, SKIP_REASON, fresh_schema

T0 = 1_790_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "hub.db")
        await s.start()
        yield s
        await s.close()
        return
    if not PG_URL:
        pytest.skip(SKIP_REASON)
    with fresh_schema() as url:
        s = open_store(url, pool_size=4)
        await s.start()
        yield s
        await s.close()


def event(source: str = "scanner", key: str | None = None, body: bytes = b'{"a": 1}') -> event_rows.NewEvent:
    return event_rows.NewEvent(source, iso(T0), key, "application/json", "{}", body, "hmac-sha256")


def delivery(key: str, order_key: str = "f1", target: str = "t") -> outbox.NewDelivery:
    return outbox.NewDelivery("r", target, "finding.created", "fnd_1", None, order_key, key, '{"finding": {}}')


async def test_an_idempotency_key_stores_one_event_and_answers_its_id(store: Store) -> None:
    first = await store.insert_event(event(key="k1"))
    again = await store.insert_event(event(key="k1", body=b"other"))
    other_source = await store.insert_event(event(source="other", key="k1"))
    no_key = [await store.insert_event(event()) for _ in range(2)]
    assert again == (first[0], True)
    assert not other_source[1] and other_source[0] != first[0]
    assert [dup for _, dup in no_key] == [False, False] and no_key[0][0] != no_key[1][0]
    seqs = [event_rows.parse_id(i) or 0 for i in (first[0], other_source[0], no_key[0][0], no_key[1][0])]
    assert seqs == sorted(seqs)  # ids grow in insertion order
    stored = event_rows.by_ids(store.conn, [first[0]])[first[0]]
    assert stored.body == b'{"a": 1}' and isinstance(stored.body, bytes)


async def test_a_burst_of_inserts_answers_each_one_as_if_it_came_alone(store: Store) -> None:
    """Inserts made at once share one batch (PostgreSQL: one INSERT of many rows, whose RETURNING names the rows
    stored): a key already stored, a key twice in the burst, the same key from two sources and events without a key
    each get their own answer."""
    stored, _ = await store.insert_event(event(key="old"))
    burst = [event(key="new-1"), event(), event(key="old"), event(key="twice"), event(source="other", key="twice"),
             event(), event(key="twice", body=b"again"), event(key="new-2")]
    answers = await asyncio.gather(*(store.insert_event(ev) for ev in burst))
    assert [dup for _, dup in answers] == [False, False, True, False, False, False, True, False]
    assert answers[2][0] == stored and answers[6][0] == answers[3][0]
    new = [event_rows.parse_id(i) or 0 for i, dup in answers if not dup]
    assert new == sorted(new) and len(set(new)) == 6  # ids grow in the order of the burst
    rows = event_rows.by_ids(store.conn, [i for i, _ in answers])
    first_of_key = [*burst[:6], burst[3], burst[7]]  # a duplicate answers the event stored first
    assert [(rows[i].source, rows[i].body) for i, _ in answers] == [(ev.source, ev.body) for ev in first_of_key]


async def test_a_burst_of_guarded_inserts_answers_each_one_as_if_it_came_alone(store: Store) -> None:
    """Sources with a replay window, at once (PostgreSQL: one statement takes the digests and stores the events): a
    digest still held, one expired, one twice in the burst, and a new digest whose idempotency key was taken."""
    def d(name: str) -> bytes:
        return replays.digest("scanner", name.encode())

    held, _ = await store.insert_event(event(), replay=(d("held"), T0 + 300), now=T0)
    await store.insert_event(event(), replay=(d("expired"), T0 + 5), now=T0)
    keyed, _ = await store.insert_event(event(key="k"))
    now = T0 + 10
    burst = [(d("held"), None), (d("expired"), None), (d("new"), None), (d("new"), None), (d("other"), "k"),
             (d("plain"), None)]
    answers = await asyncio.gather(*(store.insert_event(event(key=key), replay=(digest, now + 300), now=now)
                                     for digest, key in burst), store.insert_event(event(key="k2")))
    assert [dup for _, dup in answers] == [True, False, False, True, True, False, False]
    assert answers[0][0] == held and answers[3][0] == answers[2][0] and answers[4][0] == keyed
    new = [event_rows.parse_id(i) or 0 for i, dup in answers[:6] if not dup]
    assert new == sorted(new) and len(set(new)) == 3
    again = await asyncio.gather(*(store.insert_event(event(key=key), replay=(digest, now + 300), now=now + 1)
                                   for digest, key in burst[1:3] + burst[4:]))  # each request sent again
    assert again == [(answers[1][0], True), (answers[2][0], True), (keyed, True), (answers[5][0], True)]


async def test_a_replayed_request_is_a_duplicate_until_its_digest_expires(store: Store) -> None:
    digest = replays.digest("scanner", b"signed material")
    first = await store.insert_event(event(), replay=(digest, T0 + 300), now=T0)
    again = await store.insert_event(event(), replay=(digest, T0 + 300), now=T0 + 10)
    later = await store.insert_event(event(), replay=(digest, T0 + 900), now=T0 + 301)
    assert again == (first[0], True)
    assert not later[1] and later[0] != first[0]
    assert await store.write(lambda conn: replays.prune_step(conn, T0 + 1000)) == 1
    assert replays.held(store.conn) == 0


async def test_a_write_that_raises_leaves_nothing(store: Store) -> None:
    def half(conn: Any) -> None:
        event_rows.insert(conn, event(key="half"))
        raise ValueError("the job's own error")

    with pytest.raises(ValueError, match="the job's own error"):
        await store.write(half)
    with pytest.raises(ValueError):
        store.write_sync(half)
    assert event_rows.counts(store.conn) == {}
    assert (await store.insert_event(event(key="half")))[1] is False


async def test_a_delivery_waits_for_the_earlier_one_of_its_order_key(store: Store) -> None:
    now, lease = iso(T0), iso(T0 + 60)
    added = await store.write(lambda c: outbox.insert(c, [delivery("a1"), delivery("a2"), delivery("b1", "f2")], now))
    assert added == 3
    assert await store.write(lambda c: outbox.insert(c, [delivery("a1"), delivery("c1", "f3")], now)) == 1
    claimed = await store.write(lambda c: outbox.claim(c, "t", now, 10, lease))
    assert sorted(r.idempotency_key for r in claimed) == ["a1", "b1", "c1"]  # a2 waits behind a1
    assert claimed[0].snapshot == '{"finding": {}}'
    assert await store.write(lambda c: outbox.claim(c, "t", now, 10, lease)) == []
    a1 = next(r for r in claimed if r.idempotency_key == "a1")
    result = outbox.Result(a1.seq, "done", None, 200, "ok", "ok", 1.5)
    await store.write(lambda c: outbox.record(c, [result], now))
    after = await store.write(lambda c: outbox.claim(c, "t", now, 10, lease))
    assert [r.idempotency_key for r in after] == ["a2"]
    assert outbox.counts(store.conn, "t") == {"done": 1, "in_flight": 3}


async def test_leases_bring_back_rows_and_release_gives_the_attempt_back(store: Store) -> None:
    now = iso(T0)
    await store.write(lambda c: outbox.insert(c, [delivery("a", "k1"), delivery("b", "k2")], now))
    claimed = await store.write(lambda c: outbox.claim(c, "t", now, 10, iso(T0 + 30)))
    assert {r.attempts for r in claimed} == {1}  # RETURNING: the attempt this claim counts
    held = next(r.seq for r in claimed if r.idempotency_key == "a")
    released = await store.write(lambda c: outbox.release_expired(c, iso(T0 + 31), [held]))
    assert released == {"t": 1}
    await store.write(lambda c: outbox.release(c, [held]))
    rows = {r["idempotency_key"]: r for r in (outbox.get(store.conn, f"dlv_{s.seq}") for s in claimed) if r}
    assert rows["a"]["state"] == "pending" and rows["a"]["attempts"] == 0  # released untried: not counted
    assert rows["b"]["state"] == "pending" and rows["b"]["attempts"] == 1  # lease expired: counted, as a crash
    assert "lease expired" in rows["b"]["last_error"]
    await store.write(lambda c: outbox.release(c, []))  # nothing to release is not an error


async def test_a_probe_takes_the_oldest_row_and_counts_it_only_when_due(store: Store) -> None:
    await store.write(lambda c: outbox.insert(c, [delivery("a", "k1"), delivery("b", "k2")], iso(T0 + 100)))
    early = await store.write(lambda c: outbox.claim_probe(c, "t", iso(T0), iso(T0 + 30)))
    assert [r.idempotency_key for r in early] == ["a"]
    due = await store.write(lambda c: outbox.claim_probe(c, "t", iso(T0 + 200), iso(T0 + 230), skip=[early[0].seq]))
    assert [r.idempotency_key for r in due] == ["b"]
    attempts = {k: outbox.get(store.conn, f"dlv_{r[0].seq}")["attempts"]  # type: ignore[index]
                for k, r in (("a", early), ("b", due))}
    assert attempts == {"a": 1, "b": 1}  # never tried before: a probe counts (attempts = 0)


def _finding(fid: str, *, title: str, tags: list[str], cve: list[str], identifier: str) -> Finding:
    return Finding.model_validate({
        "id": fid, "fingerprint": f"fp-{fid}", "source": "scanner", "title": title, "severity": "high",
        "cve": cve, "asset": {"identifier": identifier, "tags": tags}, "first_seen": iso(T0), "last_seen": iso(T0)})


async def test_finding_searches_mean_the_same_on_both_engines(store: Store) -> None:
    rows = [_finding("fnd_a", title="OpenSSL Heap Overflow", tags=["prod", "dmz"], cve=["CVE-2024-0001"],
                     identifier="web-1"),
            _finding("fnd_b", title="100% CPU in parser_x", tags=["dev"], cve=[], identifier="db-1")]

    def save(conn: Any) -> None:
        for f in rows:
            finding_rows.save(conn, f, None, iso(T0))

    await store.write(save)
    conn = store.conn
    ids = lambda found: sorted(f.id for f in found)  # noqa: E731
    assert ids(finding_rows.search(conn, text="openssl")[0]) == ["fnd_a"]  # LIKE ignores case, as SQLite's
    assert ids(finding_rows.search(conn, text="100%")[0]) == ["fnd_b"]  # % and _ are literal
    assert ids(finding_rows.search(conn, text="r_x")[0]) == ["fnd_b"]
    assert ids(finding_rows.search(conn, text="r%x")[0]) == []
    assert ids(finding_rows.search(conn, asset_tag="dmz")[0]) == ["fnd_a"]
    assert [r["id"] for r in finding_rows.page(conn, asset="web-1")] == ["fnd_a"]
    assert [r["id"] for r in finding_rows.page(conn, asset="dev")] == ["fnd_b"]
    assert [r["id"] for r in finding_rows.page(conn, cve="cve-2024-0001")] == ["fnd_a"]
    assert {r["asset"] for r in finding_rows.page(conn)} == {"web-1", "db-1"}
    first = finding_rows.page(conn, limit=1)
    rest = finding_rows.page(conn, before=first[0]["id"], limit=5)
    assert len(first) == 1 and len(rest) == 1 and {first[0]["id"], rest[0]["id"]} == {"fnd_a", "fnd_b"}
    seq = await store.write(lambda c: finding_rows.add_history(c, "fnd_a", iso(T0), "finding.created", {}, None,
                                                               "scanner"))
    assert seq >= 1 and finding_rows.reporters(conn, "fnd_a") == {"scanner"}


async def test_event_body_searches_read_bytes_and_json(store: Store) -> None:
    await store.insert_event(event(body=b'{"data": {"id": "X-1", "n": 7}, "items": [{"id": "i0"}]}'))
    await store.insert_event(event(body=b"\xff\xfe not json, not utf-8 X-1"))
    conn = store.conn
    found = lambda **kw: [r["id"] for r in event_rows.listing(conn, **kw)]  # noqa: E731
    assert len(found(text="X-1")) == 2
    assert len(found(path="$.data.id", path_value="X-1")) == 1  # the undecodable body is no match, not an error
    assert len(found(path="$.data.n", path_value="7")) == 1
    assert len(found(path="$.items[0].id", path_value="i0")) == 1
    assert found(path="$.data.id", path_value="x-1") == []


async def test_failure_groups_and_a_replay_of_one_class(store: Store) -> None:
    now = iso(T0)
    keys = [f"k{i}" for i in range(5)]
    await store.write(lambda c: outbox.insert(c, [delivery(k, k) for k in keys], now))
    claimed = await store.write(lambda c: outbox.claim(c, "t", now, 10, iso(T0 + 60)))
    reasons = {"k0": (400, "HTTP 400: bad field 12"), "k1": (400, "HTTP 400: bad field 99"),
               "k2": (503, "HTTP 503: unavailable"), "k3": (None, "timed out after 30 s"), "k4": (200, "ok")}
    results = [outbox.Result(r.seq, "done" if r.idempotency_key == "k4" else "dead", None,
                             reasons[r.idempotency_key][0], reasons[r.idempotency_key][1],
                             "ok" if r.idempotency_key == "k4" else "permanent", 1.0) for r in claimed]
    await store.write(lambda c: outbox.record(c, results, now))
    groups = failure_rows.groups(failure_rows.register(store.conn))
    by_class = {g["class"]: g["dead"] for g in groups}
    assert sum(by_class.values()) == 4 and max(by_class.values()) == 2  # the two 400s are one class
    cls = next(k for k, n in by_class.items() if n == 2)
    members = failure_rows.members(failure_rows.register(store.conn), "t", cls, None, 10)
    assert sorted(m["id"] for m in members) == sorted(f"dlv_{r.seq}" for r in claimed
                                                      if r.idempotency_key in ("k0", "k1"))
    flt = {"target": "t", "state": "dead", "class": cls}

    def create(c: Any) -> dict[str, Any]:
        return failure_rows.create_job(c, flt, failure_rows.bounds(c), iso(T0 + 1), "tester", iso(T0 + 1))

    job = await store.write(create)
    assert job["total"] == 2 and job["id"].startswith("rpl_")
    while await store.write(lambda c: failure_rows.step(c, job["seq"], 1, iso(T0 + 2))) == "running":
        pass
    assert outbox.counts(store.conn, "t") == {"dead": 2, "done": 1, "pending": 2}
    assert failure_rows.get_job(store.conn, job["id"])["replayed"] == 2  # type: ignore[index]


async def test_the_sla_report_counts_and_times_alike(store: Store) -> None:
    resolved = _finding("fnd_r", title="r", tags=["prod"], cve=[], identifier="h1").model_copy(update={
        "status": "resolved", "resolved_at": iso(T0 + 3600), "sla_due_at": iso(T0 + 7200)})
    late = _finding("fnd_l", title="l", tags=["prod", "pci"], cve=[], identifier="h2").model_copy(update={
        "sla_due_at": iso(T0 - 10)})

    def save(conn: Any) -> None:
        finding_rows.save(conn, resolved, None, iso(T0))
        finding_rows.save(conn, late, None, iso(T0))

    await store.write(save)
    report = sla.report(store.conn, since=iso(T0 - 86400), until=iso(T0 + 86400), now=iso(T0 + 4000))
    assert report["total"]["resolved_within_sla"] == 1 and report["total"]["open_breached"] == 1
    assert report["total"]["mean_time_to_resolve_secs"] == 3600.0
    assert {r["tag"]: r["open_breached"] for r in report["by_tag"]} == {"pci": 1, "prod": 1}
    only_pci = sla.report(store.conn, since=iso(T0 - 86400), until=iso(T0 + 86400), now=iso(T0 + 4000), tag="pci")
    assert only_pci["total"]["open_breached"] == 1 and only_pci["total"]["resolved_within_sla"] == 0
    exported = list(sla.export_rows(store.conn, now=iso(T0 + 4000)))
    assert [(r[0], r[6], r[7]) for r in exported] == [("fnd_l", "h2", "prod;pci"), ("fnd_r", "h1", "prod")]


async def test_tokens_audit_and_sync_state(store: Store) -> None:
    def write(conn: Any) -> bool:
        token_rows.insert(conn, "tok_1", "ci", "hub_abc", "digest", ["admin"], iso(T0), None)
        token_rows.audit(conn, iso(T0), "token:ci", "token.create", "tok_1", "ok", {"x": 1}, "127.0.0.1")
        token_rows.audit(conn, iso(T0), "console:Ops%", "replay", None, "ok", {}, None)
        sync_state.put(conn, "sync:linear", {"cursor": "c1"}, iso(T0))
        sync_state.put(conn, "sync:linear", {"cursor": "c2"}, iso(T0 + 1))
        return token_rows.revoke(conn, "tok_1", iso(T0 + 2))

    assert await store.write(write) is True
    assert await store.write(lambda c: token_rows.revoke(c, "tok_1", iso(T0 + 3))) is False
    assert token_rows.by_id(store.conn, "tok_1")["scopes"] == ["admin"]  # type: ignore[index]
    assert [r["action"] for r in token_rows.audit_page(store.conn, "ops%", None, None, 10)] == []  # case counts
    assert [r["action"] for r in token_rows.audit_page(store.conn, "Ops%", None, None, 10)] == ["replay"]
    assert [r["action"] for r in token_rows.audit_listing(store.conn, actor="token:ci")] == ["token.create"]
    assert sync_state.get(store.conn, "sync:linear") == {"cursor": "c2"}


async def test_reads_off_the_loop_see_committed_writes(store: Store) -> None:
    await asyncio.gather(*(store.insert_event(event(key=f"k{i}")) for i in range(20)))
    counts = await store.read(event_rows.counts)
    assert counts == {"pending": 20}
    assert orjson.loads(orjson.dumps(counts)) == counts  # plain ints, not Decimals: JSON-able as the API returns


async def test_sorted_pages_follow_the_order_across_ties_on_both_engines(store: Store) -> None:
    """The console's sorted lists (hub/store/keyset.py): severity by rank, a missing due date after every date, an
    asset filter (read first, then sorted), keyset cursors of (value, id) in row-value comparisons; pages of 4
    concatenate to exactly the sorted set."""
    from hub.store.keyset import Sort

    made = []
    for i in range(30):
        f = Finding.model_validate({
            "id": f"fnd_{i % 7:02d}{i:024d}", "fingerprint": f"fp{i}", "source": "s", "title": f"t{i}",
            "severity": ("low", "critical", "high")[i % 3], "first_seen": iso(T0), "last_seen": iso(T0 + i % 4),
            "sla_due_at": None if i % 5 == 0 else iso(T0 + i % 3), "asset": {"identifier": f"h{i % 2}"}})
        made.append(f)
        await store.write(lambda conn, f=f: finding_rows.save(conn, f, None, iso(T0)))
    rank = {"critical": 5, "high": 4, "medium": 3, "low": 2, "info": 1}
    keys = {"severity": lambda f: rank[f.severity], "sla_due_at": lambda f: f.sla_due_at or finding_rows.NO_DUE,
            "last_seen": lambda f: f.last_seen}
    for key, value in keys.items():
        for descending in (True, False):
            for asset in (None, "h1"):
                chosen = [f for f in made if asset is None or f.asset.identifier == asset]
                expected = [f.id for f in sorted(chosen, key=lambda f: (value(f), f.id), reverse=descending)]
                seen: list[str] = []
                sort = Sort(key, descending)
                while True:
                    rows = await store.read(lambda conn, s=sort, a=asset: finding_rows.page(conn, asset=a, sort=s,
                                                                                           limit=4))
                    seen += [r["id"] for r in rows]
                    if len(rows) < 4:
                        break
                    sort = Sort(key, descending, (rows[-1]["sort_key"], rows[-1]["id"]))
                assert seen == expected, (key, descending, asset)
    for i in range(1, 6):
        await store.insert_event(event(key=f"k{i}"))
    await store.write(lambda conn: outbox.insert(conn, [delivery(f"d{i}", f"o{i}") for i in range(6)], iso(T0)))
    by_tries = await store.read(lambda conn: outbox.listing(conn, sort=Sort("attempts", False), limit=10))
    assert [r["id"] for r in by_tries] == [f"dlv_{i}" for i in range(1, 7)]
    queue = await store.read(lambda conn: outbox.listing(conn, state="pending", target="t",
                                                        sort=Sort("next_attempt_at", True, (iso(T0), 4)), limit=10))
    assert [r["id"] for r in queue] == ["dlv_3", "dlv_2", "dlv_1"]
    received = await store.read(lambda conn: event_rows.listing(conn, sort=Sort("received_at", False, (iso(T0), 2)),
                                                                limit=10))
    assert [r["id"] for r in received] == ["evt_3", "evt_4", "evt_5"]
    failed = await store.read(lambda conn: failure_rows.groups(conn, "t"))
    assert failed == []
