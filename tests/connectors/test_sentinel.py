"""sentinel: the connector against a fake Entra token endpoint + Logs Ingestion API, and end to end through a Hub."""

from __future__ import annotations

import asyncio
import gzip
import uuid
from collections import Counter
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from connectors.sentinel import SentinelConfig, SentinelConnector
from hub.cli import main
from hub.connector import Item, Outcome
from hub.errors import ConfigError
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.models import Finding
from hub.settings import load_config
from hub.store import deliveries as outbox
from tests.fakes.sentinel import CLIENT_ID, CLIENT_SECRET, DCR, STREAM, TENANT, Outage, fake_sentinel
from tests.support import SW_SECRET, HubHarness, deliveries_of, scanner_source, write_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = BUILTIN_ROOT / "sentinel" / "examples"
TOKEN_URL = "http://login.test/{tenant_id}/oauth2/v2.0/token"
FINDING = Finding.model_validate(orjson.loads((EXAMPLES / "created.finding.json").read_bytes())).model_dump(mode="json")
EVENT = orjson.loads((EXAMPLES / "received.finding.json").read_bytes())["event"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def target(**extra: Any) -> dict[str, Any]:
    return {"type": "sentinel", "url": "http://dce.test", "tenant_id": TENANT, "token_url": TOKEN_URL,
            "auth": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, "dcr_immutable_id": DCR,
            "stream": STREAM, **extra}


def connector(mapping_dir: Path | None = None, clock: Clock | None = None, **extra: Any) -> SentinelConnector:
    folder = mapping_dir or BUILTIN_ROOT / "sentinel"
    conn = SentinelConnector("siem", SentinelConfig.model_validate(target(**extra)), load_mapping("sentinel", folder,
                                                                                                 ("row",)))
    if clock:
        conn.clock = clock
    return conn


def items(n: int, kind: str = "finding.created", start: int = 0, **finding: Any) -> list[Item]:
    return [Item(f"dlv_{i}", kind, f"fh_{i}", "r", "siem", {**FINDING, "id": f"fnd_{i}", **finding})
            for i in range(start, start + n)]


async def deliver(conn: SentinelConnector, app: Any, batch: list[Item]) -> list[Any]:
    async with conn.client(httpx.ASGITransport(app=app)) as client:
        return await conn.deliver_batch(client, batch)


def outcomes(verdicts: list[Any]) -> Counter[Outcome]:
    return Counter(v.outcome for v in verdicts)


# --- the connector on its own ----------------------------------------------------------------------------


def test_render_is_the_call_for_one_row_with_the_token_masked():
    [out] = connector().render(items(1)[0])
    assert out.url == f"http://dce.test/dataCollectionRules/{DCR}/streams/{STREAM}?api-version=2023-01-01"
    assert out.masked_headers()["authorization"] == "********" and "authorization" in out.secret_headers
    assert out.headers["content-type"] == "application/json" and out.headers["content-encoding"] == "gzip"
    uuid.UUID(out.headers["x-ms-client-request-id"])
    [row] = orjson.loads(out.body)  # shown before gzip
    assert row["HubIdempotencyKey"] == "fh_0" and row["FindingTitle"] == FINDING["title"] and "Title" not in row
    assert row["Severity"] == "Critical" and row["Cve"] == "CVE-2024-21412" and row["Details"]["cwe"] == ["CWE-1104"]


async def test_one_token_serves_concurrent_and_later_batches():
    app = fake_sentinel()
    conn = connector()
    batches = [items(50, start=50 * i) for i in range(4)]
    clients = [conn.client(httpx.ASGITransport(app=app)) for _ in batches]
    results = await asyncio.gather(*(conn.deliver_batch(c, b) for c, b in zip(clients, batches, strict=True)))
    for n in range(3):
        results.append(await conn.deliver_batch(clients[0], items(10, start=1000 + n * 10)))
    for c in clients:
        await c.aclose()
    state = app.state.azure
    assert state.token_requests == 1
    assert all(v.outcome is Outcome.OK for r in results for v in r)
    assert len(state.rows) == 230 and len(set(state.keys())) == 230
    assert {c["encoding"] for c in state.calls} == {"gzip"} and {c["status"] for c in state.calls} == {204}
    assert len({c["request_id"] for c in state.calls}) == len(state.calls)  # a new GUID per call


async def test_token_is_refreshed_five_minutes_before_it_expires():
    clock = Clock()
    app, conn = fake_sentinel(clock=clock, expires_in=3600), connector(clock=clock)
    await deliver(conn, app, items(2))
    clock.now += 3200  # 400 s left: still used
    await deliver(conn, app, items(2, start=2))
    assert app.state.azure.token_requests == 1
    clock.now += 150  # 250 s left: refreshed before Azure would refuse it
    assert outcomes(await deliver(conn, app, items(2, start=4))) == {Outcome.OK: 2}
    assert app.state.azure.token_requests == 2 and 401 not in {c["status"] for c in app.state.azure.calls}


async def test_a_short_lived_token_is_refreshed_after_expiry():
    clock = Clock()
    app, conn = fake_sentinel(clock=clock, expires_in=60), connector(clock=clock)
    for i in range(3):
        assert outcomes(await deliver(conn, app, items(1, start=i))) == {Outcome.OK: 1}
        clock.now += 61
    assert app.state.azure.token_requests == 3 and [c["status"] for c in app.state.azure.calls] == [204] * 3


async def test_401_refreshes_the_token_once_and_retries_the_call():
    app, conn = fake_sentinel(), connector()
    await deliver(conn, app, items(1))
    app.state.azure.revoke()  # e.g. the token was revoked before its expiry
    assert outcomes(await deliver(conn, app, items(3, start=1))) == {Outcome.OK: 3}
    assert app.state.azure.token_requests == 2
    assert [c["status"] for c in app.state.azure.calls] == [204, 401, 204] and len(app.state.azure.rows) == 4


async def test_401_after_a_fresh_token_is_permanent_and_says_what_to_check():
    app, conn = fake_sentinel(reject_tokens=True), connector()
    verdicts = await deliver(conn, app, items(2))
    assert outcomes(verdicts) == {Outcome.PERMANENT: 2}
    reason = verdicts[0].reason
    assert reason.startswith("HTTP 401 InvalidToken") and "client secret" in reason
    assert "x-ms-client-request-id" in reason
    assert CLIENT_SECRET not in reason and "eyJ" not in reason  # neither the secret nor the token
    assert app.state.azure.token_requests == 2 and len(app.state.azure.calls) == 2


@pytest.mark.parametrize("setup, status, words", [
    ({"forbidden": True}, 403, ["OperationFailed", "Monitoring Metrics Publisher", CLIENT_ID]),
    ({"dcr_immutable_id": "dcr-ffffffffffffffffffffffffffffffff"}, 404, ["NotFound", "dcr_immutable_id"]),
    ({"stream": "Custom-Other"}, 404, ["InvalidStream", "stream"]),
])
@pytest.mark.slow
async def test_vendor_refusals_are_permanent_with_the_fix(setup, status, words):
    app = fake_sentinel(**{k: v for k, v in setup.items() if k == "forbidden"})
    conn = connector(**{k: v for k, v in setup.items() if k != "forbidden"})
    [verdict] = await deliver(conn, app, items(1))
    assert verdict.outcome is Outcome.PERMANENT and verdict.status == status
    assert all(w in verdict.reason for w in words), verdict.reason


async def test_status_classes():
    def vendor(status: int, headers: dict[str, str] | None = None, code: str = "Scripted") -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if "oauth2" in request.url.path:
                return httpx.Response(200, json={"access_token": "t", "expires_in": 3599})
            return httpx.Response(status, headers={"x-ms-error-code": code, **(headers or {})},
                                  json={"error": {"code": code, "message": "scripted"}})
        return httpx.MockTransport(handle)

    conn = connector()
    cases = {503: Outcome.RETRY, 500: Outcome.RETRY, 429: Outcome.RETRY, 400: Outcome.PERMANENT, 204: Outcome.OK}
    for status, want in cases.items():
        async with conn.client(vendor(status, {"retry-after": "7"} if status == 429 else None, "InvalidPayload")) as c:
            [verdict] = await conn.deliver_batch(c, items(1))
        assert verdict.outcome is want, (status, verdict)
    async with conn.client(vendor(429, {"retry-after": "7"})) as c:
        [verdict] = await conn.deliver_batch(c, items(1))
    assert verdict.retry_after == 7.0 and verdict.status == 429
    async with conn.client(vendor(400, code="InvalidPayload")) as c:
        [verdict] = await conn.deliver_batch(c, items(1))
    assert verdict.reason.startswith("HTTP 400 InvalidPayload scripted: the rows do not fit the stream declaration")


@pytest.mark.slow
async def test_token_endpoint_failures():
    bad = connector(auth={"client_id": CLIENT_ID, "client_secret": "wrong-secret-value"})
    [verdict] = await deliver(bad, fake_sentinel(), items(1))
    assert verdict.outcome is Outcome.PERMANENT and "invalid_client (AADSTS7000215)" in verdict.reason
    assert all(w in verdict.reason for w in ("tenant_id", "auth.client_id", "auth.client_secret"))
    assert "wrong-secret-value" not in verdict.reason
    [verdict] = await deliver(connector(tenant_id="contoso.onmicrosoft.com"), fake_sentinel(), items(1))
    assert verdict.outcome is Outcome.PERMANENT and "AADSTS90002" in verdict.reason
    app = fake_sentinel(token_script=[503])
    conn = connector()
    [verdict] = await deliver(conn, app, items(1))
    assert verdict.outcome is Outcome.RETRY and "token endpoint login.test: HTTP 503" in verdict.reason
    assert outcomes(await deliver(conn, app, items(1))) == {Outcome.OK: 1}  # and the next try gets a token

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)
    async with conn.client(httpx.MockTransport(unreachable)) as c:
        [verdict] = await connector().deliver_batch(c, items(1))
    assert verdict.outcome is Outcome.RETRY and verdict.reason.startswith("token endpoint login.test: network error")


@pytest.mark.slow
async def test_rows_are_split_at_one_megabyte_uncompressed():
    app = fake_sentinel()
    verdicts = await deliver(connector(), app, items(2000))
    calls = app.state.azure.calls
    assert outcomes(verdicts) == {Outcome.OK: 2000} and len(calls) >= 3
    assert max(c["bytes"] for c in calls) <= 1_000_000 and sum(c["rows"] for c in calls) == 2000


async def test_413_splits_the_batch_and_an_oversized_row_fails_alone():
    app = fake_sentinel(max_bytes=20_000)
    batch = items(40)
    batch[7] = items(1, start=7, description="x" * 30_000)[0]
    verdicts = await deliver(connector(), app, batch)
    assert [i for i, v in enumerate(verdicts) if v.outcome is not Outcome.OK] == [7]
    assert verdicts[7].outcome is Outcome.PERMANENT and verdicts[7].status == 413
    state = app.state.azure
    assert 413 in {c["status"] for c in state.calls} and sorted(state.keys()) == sorted(f"fh_{i}" for i in range(40)
                                                                                        if i != 7)


async def test_halves_of_a_split_keep_their_own_verdicts():
    answers: list[Any] = [413, 204, "timeout"]

    def handle(request: httpx.Request) -> httpx.Response:
        if "oauth2" in request.url.path:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3599})
        step = answers.pop(0)
        if step == "timeout":
            raise httpx.ReadTimeout("scripted", request=request)
        return httpx.Response(step)

    conn = connector()
    async with conn.client(httpx.MockTransport(handle)) as c:
        verdicts = await conn.deliver_batch(c, items(4))
    assert [v.outcome for v in verdicts] == [Outcome.OK, Outcome.OK, Outcome.RETRY, Outcome.RETRY]
    assert verdicts[2].reason.startswith("timeout after 10 s")


async def test_a_400_isolates_the_rejected_row():
    app = fake_sentinel(poison={"fh_5"})
    verdicts = await deliver(connector(), app, items(16))
    assert [v.outcome for v in verdicts].count(Outcome.OK) == 15
    assert verdicts[5].outcome is Outcome.PERMANENT and "InvalidPayload" in verdicts[5].reason
    assert len(app.state.azure.rows) == 15 and len(app.state.azure.calls) <= 1 + 2 * 4


async def test_a_400_for_every_row_costs_a_bounded_number_of_calls():
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        if "oauth2" in request.url.path:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3599})
        calls.append(request)
        return httpx.Response(400, json={"error": {"code": "InvalidStream", "message": "schema mismatch"}})

    conn = connector()
    async with conn.client(httpx.MockTransport(handle)) as c:
        verdicts = await conn.deliver_batch(c, items(500))
    assert outcomes(verdicts) == {Outcome.PERMANENT: 500} and len(calls) <= 25
    assert all("InvalidStream" in v.reason for v in verdicts)


async def test_invalid_columns_fail_only_their_item(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "mapping.yaml").write_text("payloads:\n  row: {template: row.json.j2}\n")
    (folder / "row.json.j2").write_text(
        '{"HubIdempotencyKey": {{ delivery.idempotency_key | tojson }}, '
        '{% if delivery.id == "dlv_3" %}"id"{% elif delivery.id == "dlv_4" %}"9lives"{% else %}"Ok"{% endif %}: 1}')
    app = fake_sentinel(columns={"HubIdempotencyKey": "string", "Ok": "real", "TimeGenerated": "datetime"})
    verdicts = await deliver(connector(folder), app, items(6))
    assert [v.outcome for v in verdicts] == [Outcome.OK] * 3 + [Outcome.PERMANENT] * 2 + [Outcome.OK]
    assert "reserved" in verdicts[3].reason and "start with a letter" in verdicts[4].reason
    assert len(app.state.azure.rows) == 4 and app.state.azure.type_errors == []  # TimeGenerated filled in


async def test_every_kind_fits_the_documented_stream_declaration():
    batch = [*items(1), *items(1, "finding.updated", 1), *items(1, "finding.resolved", 2, status="resolved",
                                                                 resolved_at="2026-11-25T14:00:00.000Z"),
             *items(1, "finding.sla_breached", 3, cvss_score=None, cve=[]),
             Item("dlv_9", "event.received", "fh_9", "raw", "siem", None, EVENT),
             Item("dlv_10", "delivery.dead", "fh_10", "dead", "siem", FINDING, None,
                  dead={"id": "dlv_2", "target": "hook", "route": "r", "kind": "finding.created", "reason": "HTTP 403",
                        "attempts": 1, "finding_id": FINDING["id"], "event_id": None})]
    app = fake_sentinel()
    assert outcomes(await deliver(connector(), app, batch)) == {Outcome.OK: 6}
    state = app.state.azure
    assert state.type_errors == []
    rows = {r["HubIdempotencyKey"]: r for r in state.rows}
    assert rows["fh_2"]["TimeGenerated"] == "2026-11-25T14:00:00.000Z" and rows["fh_3"]["Cve"] is None
    assert rows["fh_9"]["RawEvent"] == EVENT["body"] and rows["fh_9"]["VerifiedBy"] == "hmac-sha256"
    assert rows["fh_10"]["EventType"] == "delivery.dead" and rows["fh_10"]["TimeGenerated"]  # send time


async def test_compression_can_be_turned_off():
    app = fake_sentinel()
    conn = connector(batch={"compression": False})
    assert outcomes(await deliver(conn, app, items(3))) == {Outcome.OK: 3}
    assert app.state.azure.calls[0]["encoding"] is None
    assert "content-encoding" not in conn.render(items(1)[0])[0].headers


async def test_gzip_body_is_real_gzip():
    seen: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if "oauth2" in request.url.path:
            assert dict(httpx.QueryParams(request.content.decode())) == {
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "client_credentials",
                "scope": "https://monitor.azure.com//.default"}
            return httpx.Response(200, json={"access_token": "t", "expires_in": "3599"})  # v1 endpoints send strings
        assert request.headers["authorization"] == "Bearer t"
        seen.append(gzip.decompress(request.content))
        return httpx.Response(204)

    conn = connector()
    async with conn.client(httpx.MockTransport(handle)) as c:
        assert outcomes(await conn.deliver_batch(c, items(3))) == {Outcome.OK: 3}
    assert [r["HubIdempotencyKey"] for r in orjson.loads(seen[0])] == ["fh_0", "fh_1", "fh_2"]


# --- configuration ------------------------------------------------------------------------------------------


def test_config_contract(tmp_path):
    cfg = SentinelConfig.model_validate(target())
    assert CLIENT_SECRET not in repr(cfg) and CLIENT_SECRET not in str(cfg.public())
    assert connector().token_url == f"http://login.test/{TENANT}/oauth2/v2.0/token"
    default = SentinelConfig.model_validate({k: v for k, v in target().items() if k != "token_url"})
    assert default.token_url.replace("{tenant_id}", TENANT).startswith(f"https://login.microsoftonline.com/{TENANT}/")
    assert default.scope == "https://monitor.azure.com//.default" and default.batch.max_bytes == 1_000_000
    tuned = SentinelConfig.model_validate(target(batch={"timeout_secs": 5}))
    assert (tuned.batch.max_events, tuned.batch.in_flight, tuned.batch.timeout_secs) == (1000, 4, 5)
    data = {"storage": {"path": str(tmp_path / "hub.db")},
            "targets": {"siem": {**target(), "dcr_immutable_idd": DCR}}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "hub.yaml", data))
    assert 'targets.siem.dcr_immutable_idd: unknown key; did you mean "dcr_immutable_id"?' in str(info.value)
    data["targets"]["siem"] = {**target(), "batch": {"max_bytes": 4_000_000}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "hub.yaml", data))
    assert "targets.siem.batch.max_bytes: the Logs Ingestion API takes at most 1 MB per call" in str(info.value)


def test_hub_render_masks_the_token_and_shows_the_row(monkeypatch):
    env = {"SCANNER_WEBHOOK_SECRET": SW_SECRET, "AZURE_TENANT_ID": TENANT,
           "SENTINEL_CLIENT_ID": CLIENT_ID, "SENTINEL_CLIENT_SECRET": CLIENT_SECRET, "SENTINEL_DCR_ID": DCR}
    result = CliRunner().invoke(main, ["render", "--config", str(ROOT / "examples" / "sentinel.yaml"), "--target",
                                       "sentinel", "--finding", str(EXAMPLES / "received.finding.json")], env=env)
    assert result.exit_code == 0, result.output
    endpoint = "https://findings-dce-a1b2.eastus-1.ingest.monitor.azure.com"
    assert f"POST {endpoint}/dataCollectionRules/{DCR}/streams/Custom-Findings?api-version=2023-01-01" in result.output
    assert "authorization: ********" in result.output and CLIENT_SECRET not in result.output
    assert '"RawEvent"' in result.output


# --- end to end through a Hub ----------------------------------------------------------------------------


def hub_config(tmp_path: Path, on: list[str], routes: int = 1, **target_extra: Any) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "tool_id": "item.id",
                                               "asset.identifier": "item.host"})},
        "routes": [{"name": f"soc-{i}", "on": on, "to": ["siem"]} for i in range(routes)],
        "targets": {"siem": {**target(), "retry": {"schedule_secs": [0.05] * 8, "jitter": 0},
                             "batch": {"timeout_secs": 0.1},
                             "circuit_breaker": {"failures": 100, "cooldown_secs": 0.2}, **target_extra}},
        "pipeline": {"safety_net_secs": 0.5},
    }


class Harness(HubHarness):
    def keys(self) -> list[str]:
        conn = self.hub.store.conn
        return [d.idempotency_key for d in outbox.peek(conn, [d["seq"] for d in deliveries_of(conn)])]


def harness(tmp_path: Path, data: dict[str, Any], transport: httpx.AsyncBaseTransport
            ) -> AbstractAsyncContextManager[Harness]:
    return Harness.running(tmp_path, data, {"siem": transport}, timeout=20.0)


def findings(start: int, n: int) -> list[dict[str, Any]]:
    return [{"id": f"F-{i}", "title": f"Finding {i}", "host": f"web-{i % 97}"} for i in range(start, start + n)]


@pytest.mark.slow
async def test_ten_thousand_rows_arrive_once_each(tmp_path):
    """5,000 findings routed twice (two routes, two idempotency keys each): 10,000 deliveries."""
    app = fake_sentinel()
    data = hub_config(tmp_path, ["finding.created"], routes=2)
    async with harness(tmp_path, data, httpx.ASGITransport(app=app)) as h:
        for start in range(0, 5000, 1000):
            await h.send(findings(start, 1000))
        await h.until(h.settled, timeout=60)
        assert h.states() == {"done": 10_000}
        state = app.state.azure
        keys = Counter(state.keys())
        assert len(keys) == 10_000 and max(keys.values()) == 1  # none lost, none duplicated
        assert set(keys) == set(h.keys())
        assert state.token_requests == 1 and state.type_errors == []
        assert Counter(r["FindingTitle"] for r in state.rows) == {f"Finding {i}": 2 for i in range(5000)}
        assert all(c["encoding"] == "gzip" and c["status"] == 204 for c in state.calls)


@pytest.mark.slow
async def test_endpoint_down_then_back_loses_nothing(tmp_path):
    app = fake_sentinel()
    outage = Outage(app, down=True)
    data = hub_config(tmp_path, ["event.received", "finding.created"])
    async with harness(tmp_path, data, outage) as h:
        sent = [await h.send(findings(100 * i, 100)) for i in range(3)]
        await h.until(lambda: outage.refused >= 3)
        app.state.azure.script = [503, 503, (429, {"retry-after": "1"})]  # reachable again, but not well yet
        outage.down = False
        await h.until(h.settled, timeout=30)
        assert h.states() == {"done": 303}
        keys = Counter(app.state.azure.keys())
        assert len(keys) == 303 and max(keys.values()) == 1 and set(keys) == set(h.keys())
        raw = [r for r in app.state.azure.rows if r["EventType"] == "event.received"]
        assert sorted(r["EventId"] for r in raw) == sorted(r.json()["id"] for r in sent)
        assert raw[0]["RawEvent"]["findings"][0]["title"].startswith("Finding ")
        assert [c["status"] for c in app.state.azure.calls][:3] == [503, 503, 429]
        assert max(d["attempts"] for d in deliveries_of(h.hub.store.conn)) >= 3
