"""The elastic connector against a fake cluster that checks what Elasticsearch checks: bulk shape, gzip,
auth, per-item results (only failed items retried or dead-lettered), 409 after a lost answer, 413
splits, ECS field types; and end to end through an in-process Hub (10,000 findings, an outage)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import ipaddress
import shutil
import threading
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from click.testing import CliRunner

from connectors.elastic import ElasticConfig, ElasticConnector
from hub.cli import main
from hub.connector import Item, Outcome
from hub.errors import ConfigError
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.models import Finding
from hub.settings import load_config
from hub.store import deliveries as outbox
from tests.fakes.elastic import ECS, Unreliable, elasticsearch
from tests.support import HubHarness, deliveries_of, free_port, scanner_source, write_config

API_KEY = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
EXAMPLES = BUILTIN_ROOT / "elastic" / "examples"
VENDOR_ECS = Path(__file__).resolve().parents[1] / "data" / "vendor" / "elastic" / "ecs-v9.4.0-finding-fields.yml"
ALLOWED = {"event.kind": {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"},
           "event.category": {"vulnerability", "host", "package", "threat", "configuration", "intrusion_detection"},
           "event.type": {"info", "change", "creation", "deletion", "error", "indicator"}}


def example(case: str) -> dict[str, Any]:
    """An example as the dispatcher would pass it: {kind, finding (every field), changes, event}."""
    doc = orjson.loads((EXAMPLES / f"{case}.finding.json").read_bytes())
    doc = doc if "kind" in doc else {"kind": "finding.created", "finding": doc}
    if doc.get("finding"):
        doc["finding"] = Finding.model_validate(doc["finding"]).model_dump(mode="json")
    return doc


def item(i: int, case: str = "created", **finding: Any) -> Item:
    doc = example(case)
    f = {**doc["finding"], "id": f"fnd_{i}", **finding} if doc.get("finding") else None
    return Item(f"dlv_{i}", doc.get("kind", "finding.created"), f"fh_{i:040d}", "r", "es", f, doc.get("event"),
                doc.get("changes", {}))


def connector(mapping: Path | None = None, **cfg: Any) -> ElasticConnector:
    config = ElasticConfig.model_validate({"type": "elastic", "url": "http://es.test:9200",
                                           "auth": {"api_key": API_KEY}, **cfg})
    return ElasticConnector("es", config, load_mapping("elastic", mapping or BUILTIN_ROOT / "elastic", ("document",)))


async def deliver(conn: ElasticConnector, transport: httpx.AsyncBaseTransport, items: list[Item]) -> list[Any]:
    async with conn.client(transport) as client:
        return await conn.deliver_batch(client, items)


def ecs_problems(doc: dict[str, Any]) -> list[str]:
    """Strict ECS types of a stored document: JSON numbers for float/long, ISO strings for dates, lists for arrays."""
    problems = []

    def walk(path: str, value: Any) -> None:
        spec = ECS.get(path)
        if spec is None and isinstance(value, dict):
            for k, v in value.items():
                walk(f"{path}.{k}" if path else k, v)
            return
        if spec is None:
            if path.startswith("labels.") and not isinstance(value, str):
                problems.append(f"{path}: labels hold strings, got {value!r}")
            return
        type_, array = spec.removesuffix("[]"), spec.endswith("[]")
        if array != isinstance(value, list):
            problems.append(f"{path}: {'an array' if array else 'one value'} expected, got {value!r}")
        for v in value if isinstance(value, list) else [value]:
            ok = {"keyword": isinstance(v, str), "match_only_text": isinstance(v, str), "wildcard": isinstance(v, str),
                  "float": isinstance(v, float), "long": type(v) is int, "object": isinstance(v, dict),
                  "date": isinstance(v, str) and _iso(v), "ip": isinstance(v, str) and _ip(v)}[type_]
            if not ok:
                problems.append(f"{path}: {v!r} is not ECS {type_}")
            if path in ALLOWED and v not in ALLOWED[path]:
                problems.append(f"{path}: {v!r} is not an allowed value")
        if type_ == "object":
            for k, v in value.items():
                walk(f"{path}.{k}", v)

    walk("", doc)
    return problems


def _iso(v: str) -> bool:
    try:
        return dt.datetime.fromisoformat(v).tzinfo is not None
    except ValueError:
        return False


def _ip(v: str) -> bool:
    try:
        return bool(ipaddress.ip_address(v))
    except ValueError:
        return False


# --- the connector and the fake --------------------------------------------------------------------------


async def test_bulk_request_is_gzipped_ndjson_with_api_key_and_ecs_documents():
    app = elasticsearch(api_key=API_KEY)
    items = [item(1), item(2, "updated"), item(3, "resolved", status="resolved"), item(4, "received"),
             item(5, "minimal")]
    verdicts = await deliver(connector(), httpx.ASGITransport(app=app), items)
    assert [v.outcome for v in verdicts] == [Outcome.OK] * 5 and verdicts[0].status == 201
    cluster = app.state.cluster
    [req] = cluster.requests
    assert req["encoding"] == "gzip" and req["wire_bytes"] < req["bytes"] and req["actions"] == 5
    assert req["authorization"] == f"ApiKey {API_KEY}"
    assert req["query"]["filter_path"].startswith("errors,items.*.status")
    docs = cluster.docs["logs-findings-default"]
    assert set(docs) == {i.idempotency_key for i in items}  # _id = the delivery's idempotency key
    for doc in docs.values():
        assert ecs_problems(doc) == [], doc
        assert doc["ecs"]["version"] == "9.4.0" and doc["event"]["dataset"] == "findings"
    created = docs[items[0].idempotency_key]
    assert created["event"]["kind"] == "state" and created["event"]["category"] == ["vulnerability"]
    assert created["vulnerability"] == {"id": "CVE-2024-21412", "enumeration": "CVE", "severity": "Critical",
                                        "classification": "CVSS", "score": {"base": 9.8, "version": "3.1"},
                                        "category": ["CWE-1104"], "scanner": {"vendor": "SecureEndpoint"},
                                        "description": created["vulnerability"]["description"],
                                        "reference": "https://nvd.nist.gov/vuln/detail/CVE-2024-21412"}
    assert created["host"]["ip"] == ["10.0.14.22"] and created["host"]["os"] == {"name": "Windows Server 2012 R2"}
    assert created["labels"] == {"finding_id": "fnd_1", "fingerprint": "3f2a9c0d5b7e41a6b8c9d0e1f2a3b4c5",
                                 "status": "open", "environment": "production", "exposure": "external"}
    assert created["findings_hub"]["finding"]["id"] == "fnd_1" and created["tags"] == ["external", "pci"]
    assert docs[items[1].idempotency_key]["findings_hub"]["changed_fields"] == ["severity", "cvss_score"]
    assert docs[items[2].idempotency_key]["@timestamp"] == "2026-11-25T08:30:00.000Z"
    raw = docs[items[3].idempotency_key]
    assert raw["event"]["kind"] == "event"
    assert raw["findings_hub"]["event"]["body"] == example("received")["event"]["body"]
    assert raw["findings_hub"]["event"]["verified_by"] == "hmac-sha256" and raw["event"]["id"] == "evt_42"
    minimal = docs[items[4].idempotency_key]
    assert "host" not in minimal and "score" not in minimal["vulnerability"]  # nulls are left out
    assert minimal["vulnerability"]["id"] == "COOKIE-SECURE"


def test_the_fakes_ecs_table_is_the_vendor_one():
    vendor = yaml.load(VENDOR_ECS.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for name, spec in ECS.items():
        want = vendor[name]["type"] + ("[]" if "array" in (vendor[name].get("normalize") or []) else "")
        assert spec == want, name


async def test_mixed_item_results_retry_or_dead_letter_only_the_failed_ones(tmp_path):
    app = elasticsearch(api_key=API_KEY)
    cluster = app.state.cluster
    transport = httpx.ASGITransport(app=app)
    conn = connector()
    items = [item(i) for i in range(6)]
    await deliver(conn, transport, [items[4]])  # already there: 409 on the next attempt
    broken = Item("dlv_b", "finding.created", "fh_broken", "r", "es", {"id": "fnd_b", "title": "no asset"})
    cluster.fail_items({items[1].idempotency_key}, 429, "es_rejected_execution_exception",
                       "rejected execution of coordinating operation")
    cluster.fail_items({items[3].idempotency_key}, 400, "mapper_parsing_exception", "failed to parse field [x]")
    verdicts = await deliver(conn, transport, [*items, broken])
    assert [v.outcome for v in verdicts] == [Outcome.OK, Outcome.RETRY, Outcome.OK, Outcome.PERMANENT, Outcome.OK,
                                             Outcome.OK, Outcome.PERMANENT]
    assert verdicts[6].reason.startswith("template error:") and "document.json.j2" in verdicts[6].reason
    assert cluster.requests[-1]["actions"] == 6  # the broken one never left
    assert "es_rejected_execution_exception" in verdicts[1].reason and verdicts[1].status == 429
    assert verdicts[3].reason.startswith("item HTTP 400 mapper_parsing_exception: failed to parse field [x]")
    assert verdicts[4].status == 409 and "already" in verdicts[4].reason
    assert set(cluster.docs["logs-findings-default"]) == {items[i].idempotency_key for i in (0, 2, 4, 5)}
    [again] = await deliver(conn, transport, [items[1]])  # the retry carries only the failed item
    assert again.outcome is Outcome.OK and cluster.requests[-1]["actions"] == 1
    assert len(cluster.docs["logs-findings-default"]) == 5

    # a real type error: a template that writes a word into vulnerability.score.base (float)
    folder = tmp_path / "m"
    shutil.copytree(BUILTIN_ROOT / "elastic", folder)
    template = folder / "document.json.j2"
    template.write_text(template.read_text().replace('{"base": f["cvss_score"]', '{"base": f["severity"]'))
    [typed] = await deliver(connector(folder), transport, [item(9)])
    assert typed.outcome is Outcome.PERMANENT and typed.status == 400
    assert "document_parsing_exception" in typed.reason and "[vulnerability.score.base] of type [float]" in typed.reason
    assert "fix the template" in typed.reason


async def test_a_lost_answer_then_retry_gets_409_and_one_document():
    app = elasticsearch(api_key=API_KEY)
    transport = Unreliable(app, ["lost"])
    conn, it = connector(), item(1)
    async with conn.client(transport) as client:
        [first] = await conn.deliver_batch(client, [it])
        assert first.outcome is Outcome.RETRY and "timeout" in first.reason
        [second] = await conn.deliver_batch(client, [it])
    assert second.outcome is Outcome.OK and second.status == 409
    assert list(app.state.cluster.docs["logs-findings-default"]) == [it.idempotency_key]


@pytest.mark.slow
async def test_413_splits_the_request_in_halves_and_a_lone_giant_is_permanent():
    one = len(connector().encode(item(0)))
    app = elasticsearch(api_key=API_KEY, max_content_length=one * 3)
    items = [item(i) for i in range(8)]
    verdicts = await deliver(connector(), httpx.ASGITransport(app=app), items)
    assert all(v.outcome is Outcome.OK for v in verdicts)
    cluster = app.state.cluster
    assert len(cluster.docs["logs-findings-default"]) == 8
    assert sorted(r.get("actions", 0) for r in cluster.requests) == [0, 0, 0, 2, 2, 2, 2]  # 8, 4, 4 were too large
    [giant] = await deliver(connector(), httpx.ASGITransport(app=app), [item(99, description="x" * one * 3)])
    assert giant.outcome is Outcome.PERMANENT and giant.status == 413


async def test_whole_request_answers():
    def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.MockTransport:
        return httpx.MockTransport(lambda r: httpx.Response(status, json=body, headers=headers))

    conn, it = connector(), [item(1), item(2)]
    busy = await deliver(conn, answer(429, {"error": {"type": "es_rejected_execution_exception", "reason": "busy"},
                                            "status": 429}, {"retry-after": "7"}), it)
    assert busy[0].outcome is Outcome.RETRY and busy[0].retry_after == 7 and "es_rejected_execution" in busy[0].reason
    down = await deliver(conn, answer(503, {"error": {"type": "cluster_block_exception", "reason": "no master"},
                                            "status": 503}), it)
    assert [v.outcome for v in down] == [Outcome.RETRY] * 2
    bad = await deliver(conn, answer(400, {"error": {"type": "x_content_parse_exception", "reason": "bad"},
                                           "status": 400}), it)
    assert bad[1].outcome is Outcome.PERMANENT and bad[1].reason == "HTTP 400: x_content_parse_exception: bad"
    proxy = await deliver(conn, httpx.MockTransport(lambda r: httpx.Response(404, text="<h1>Not Found</h1>")), it)
    assert proxy[0].outcome is Outcome.PERMANENT and "check targets.es.url" in proxy[0].reason
    garbled = await deliver(conn, httpx.MockTransport(lambda r: httpx.Response(200, text="<html>proxy</html>")), it)
    assert garbled[0].outcome is Outcome.RETRY and "unreadable" in garbled[0].reason
    unauth = await deliver(conn, httpx.ASGITransport(app=elasticsearch(api_key="another")), it)
    assert unauth[0].outcome is Outcome.PERMANENT and unauth[0].status == 401
    assert "targets.es.auth.api_key" in unauth[0].reason and API_KEY not in unauth[0].reason
    app = elasticsearch(api_key=API_KEY)
    app.state.cluster.forbidden = True
    forbidden = await deliver(conn, httpx.ASGITransport(app=app), it)
    assert forbidden[0].status == 403 and "create_doc" in forbidden[0].reason
    network = await deliver(conn, Unreliable(app, ["refused"]), it)
    assert network[0].outcome is Outcome.RETRY and "ConnectError" in network[0].reason


async def test_auth_schemes_and_options_reach_the_request():
    app = elasticsearch(basic=("hub", "pw"), bearer="tok")
    transport = httpx.ASGITransport(app=app)
    for auth in ({"username": "hub", "password": "pw"}, {"bearer": "tok"}):
        [v] = await deliver(connector(auth=auth, pipeline="findings-enrich", batch={"compression": False}), transport,
                            [item(1)])
        assert v.outcome is Outcome.OK
        app.state.cluster.docs.clear()
    assert app.state.cluster.requests[-1]["encoding"] is None
    assert app.state.cluster.requests[-1]["query"]["pipeline"] == "findings-enrich"
    raw = base64.b64decode(API_KEY).decode()  # "id:api_key" is encoded for you
    assert connector(auth={"api_key": raw}).headers["authorization"] == f"ApiKey {API_KEY}"


async def test_the_fake_rejects_what_a_cluster_rejects():
    app = elasticsearch(api_key=API_KEY, max_content_length=2000)
    auth = {"authorization": f"ApiKey {API_KEY}", "content-type": "application/x-ndjson"}
    doc = b'{"@timestamp": "2026-11-22T10:00:00Z", "message": "x"}\n'
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://es.test") as es:
        async def post(body: bytes, path: str = "/_bulk", **headers: str) -> httpx.Response:
            return await es.post(path, content=body, headers={**auth, **headers})

        pretty = b'{\n  "create": {"_index": "logs-a-b"}\n}\n' + doc
        assert (await post(pretty)).status_code == 400
        assert (await post(b'{"create":{"_index":"logs-a-b"}}\n' + doc.rstrip())).status_code == 400
        assert (await post(b'{"create":{"_index":"logs-a-b"}}\n')).status_code == 400  # no source line
        assert (await post(b'{"create":{}}\n' + doc)).status_code == 400  # no index
        assert (await post(b'{"create":{"_index":"logs-a-b","_id":"1"}}\n' + doc * 2)).status_code == 400  # unpaired
        assert (await post(b"x" * 3000 + b"\n")).status_code == 413
        assert (await post(b"not gzip", **{"content-encoding": "gzip"})).status_code == 400
        assert (await post(doc, **{"content-type": "text/plain"})).status_code == 406
        assert (await post(doc, authorization="ApiKey wrong")).status_code == 401
        body = (b'{"index":{"_id":"1"}}\n' + doc + b'{"create":{"_id":"2"}}\n{"message": "x"}\n'
                + b'{"create":{"_id":"3"}}\n' + doc + b'{"create":{"_id":"3"}}\n' + doc
                + b'{"create":{"_id":"4"}}\n{"@timestamp": "2026-11-22T10:00:00Z", "host": "web-1"}\n')
        r = await post(gzip.compress(body), "/logs-a-b/_bulk", **{"content-encoding": "gzip"})
    assert r.status_code == 200 and r.json()["errors"] is True
    results = [next(iter(i.values())) for i in r.json()["items"]]
    assert [x["status"] for x in results] == [400, 400, 201, 409, 400]
    assert "only write ops with an op_type of create" in results[0]["error"]["reason"]
    assert "[@timestamp] is missing" in results[1]["error"]["reason"]
    assert "object mapping for [host]" in results[4]["error"]["reason"]
    assert list(app.state.cluster.docs["logs-a-b"]) == ["3"]


@pytest.mark.slow
async def test_raw_bodies_nest_under_one_flattened_object_or_go_to_event_original(tmp_path):
    def raw(i: int, body: Any) -> Item:
        event = {"id": f"evt_{i}", "source": "obexum", "received_at": "2026-11-22T10:00:00.123Z",
                 "verified_by": "hmac-sha256", "content_type": "application/json", "body": body}
        return Item(f"dlv_{i}", "event.received", f"fh_raw_{i}", "r", "es", None, event)

    wild = [raw(i, {f"field_{i}_{k}": k for k in range(40)}) for i in range(30)]  # 1,200 distinct field names
    app = elasticsearch(api_key=API_KEY)  # findings_hub.event.body mapped as flattened, as the docs recommend
    assert all(v.outcome is Outcome.OK for v in await deliver(connector(), httpx.ASGITransport(app=app), wild))
    dynamic = elasticsearch(api_key=API_KEY, mapping=dict(ECS))  # no flattened mapping: the explosion ES prevents
    verdicts = await deliver(connector(), httpx.ASGITransport(app=dynamic), wild)
    assert verdicts[-1].outcome is Outcome.PERMANENT and "Limit of total fields [1000]" in verdicts[-1].reason

    folder = tmp_path / "m"
    shutil.copytree(BUILTIN_ROOT / "elastic", folder)
    (folder / "mapping.yaml").write_text((folder / "mapping.yaml").read_text().replace("raw_body_as: object",
                                                                                        "raw_body_as: original"))
    app = elasticsearch(api_key=API_KEY)
    items = [*wild[:2], raw(50, "plain text body"), raw(51, [1, 2])]
    assert all(v.outcome is Outcome.OK for v in await deliver(connector(folder), httpx.ASGITransport(app=app), items))
    docs = app.state.cluster.docs["logs-findings-default"]
    assert orjson.loads(docs["fh_raw_0"]["event"]["original"]) == wild[0].event["body"]  # type: ignore[index]
    assert docs["fh_raw_50"]["event"]["original"] == "plain text body"
    assert docs["fh_raw_51"]["event"]["original"] == "[1,2]"
    assert all(ecs_problems(d) == [] for d in docs.values())


async def test_dead_letter_documents_and_document_id_per_finding():
    dead = {"id": "dlv_7", "target": "linear", "route": "r", "kind": "finding.created", "reason": "HTTP 400: bad",
            "attempts": 1, "finding_id": "fnd_1", "event_id": None}
    with_finding = Item("dlv_8", "delivery.dead", "fh_dead_1", "r", "es", example("created")["finding"], dead=dead)
    without = Item("dlv_9", "delivery.dead", "fh_dead_2", "r", "es", None, dead=dict(dead, finding_id=None))
    app = elasticsearch(api_key=API_KEY)
    assert all(v.outcome is Outcome.OK for v in await deliver(connector(), httpx.ASGITransport(app=app),
                                                              [with_finding, without]))
    docs = app.state.cluster.docs["logs-findings-default"]
    assert docs["fh_dead_1"]["event"]["kind"] == "pipeline_error"
    assert docs["fh_dead_1"]["event"]["reason"] == "HTTP 400: bad"
    assert docs["fh_dead_2"]["findings_hub"]["dead"]["id"] == "dlv_7" and "@timestamp" in docs["fh_dead_2"]
    assert all(ecs_problems(d) == [] for d in docs.values())

    latest = connector(index="findings-latest", op_type="index", document_id="finding")
    app = elasticsearch(api_key=API_KEY)
    steps = [item(1), item(2, "updated", id="fnd_1"), item(3, "resolved", id="fnd_1", status="resolved")]
    assert all(v.outcome is Outcome.OK for v in await deliver(latest, httpx.ASGITransport(app=app), steps))
    gave_up = Item("dlv_10", "delivery.dead", "fh_dead_3", "r", "es", steps[2].finding, dead=dead)
    assert (await deliver(latest, httpx.ASGITransport(app=app), [gave_up]))[0].outcome is Outcome.OK
    assert list(app.state.cluster.docs["findings-latest"]) == ["fnd_1", "fh_dead_3"]  # one document per finding
    assert app.state.cluster.docs["findings-latest"]["fnd_1"]["labels"]["status"] == "resolved"


@pytest.mark.slow
def test_config_contract(tmp_path):
    def problems(target: dict[str, Any]) -> str:
        path = write_config(tmp_path / "hub.yaml", {"storage": {"path": str(tmp_path / "h.db")},
                                                    "targets": {"es": {"type": "elastic", **target}}})
        with pytest.raises(ConfigError) as info:
            load_config(path)
        return "\n".join(map(str, info.value.problems))

    base = {"url": "https://es.example:9200", "auth": {"api_key": "k"}}
    assert 'unknown key; did you mean "index"?' in problems({**base, "indx": "logs-a-b"})
    assert "set exactly one of api_key" in problems({**base, "auth": {"api_key": "k", "bearer": "t"}})
    assert "username and password go together" in problems({**base, "auth": {"username": "u"}})
    assert "data streams accept only create" in problems({**base, "op_type": "index"})
    assert "needs op_type index" in problems({**base, "index": "findings", "document_id": "finding"})
    assert "targets.es.url" in problems({"auth": {"api_key": "k"}})  # required: no public default
    assert "targets.es.index" in problems({**base, "index": "Logs-Upper"})
    config = ElasticConfig.model_validate({"type": "elastic", **base, "auth": {"api_key": "s3cr3t-key"}})
    assert "s3cr3t-key" not in repr(config) and "s3cr3t-key" not in str(config.public())
    defaults = config.batch
    assert (defaults.max_events, defaults.max_bytes, defaults.in_flight, defaults.compression) == (1000, 5_000_000, 2,
                                                                                                    True)


def test_hub_render_shows_the_ndjson_with_the_key_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("ELASTIC_HOST", "es.example:9200")
    monkeypatch.setenv("ELASTIC_API_KEY", "s3cr3t-key")
    monkeypatch.setenv("SCANNER_WEBHOOK_SECRET", "whsec_ZHVtbXktc2VjcmV0LWZvci10ZXN0cw==")
    config = Path(__file__).resolve().parents[2] / "examples" / "elastic.yaml"
    target = next(iter(yaml.safe_load(config.read_text())["targets"]))
    result = CliRunner().invoke(main, ["render", "--config", str(config), "--target", target,
                                       "--finding", str(EXAMPLES / "created.finding.json")])
    assert result.exit_code == 0, result.output
    assert "s3cr3t-key" not in result.output and "authorization: ********" in result.output
    assert "POST https://es.example:9200/_bulk?filter_path=" in result.output
    action, document = [line for line in result.output.splitlines() if line.startswith("{")]
    assert orjson.loads(action) == {"create": {"_index": "logs-findings-default", "_id": "fh_example"}}
    assert orjson.loads(document)["vulnerability"]["id"] == "CVE-2024-21412"


@pytest.mark.slow
def test_tls_options_reach_the_client(tmp_path):
    """verify_tls and ca_file (relative to the config file) reach a real TLS handshake."""
    ca_file, cert, key = make_certs(tmp_path)
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(elasticsearch(api_key=API_KEY), host="127.0.0.1", port=port,
                                           log_level="warning", ssl_certfile=str(cert), ssl_keyfile=str(key),
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)

    async def attempt(**request: Any) -> Outcome:
        config = ElasticConfig.model_validate({"type": "elastic", "url": f"https://127.0.0.1:{port}",
                                               "auth": {"api_key": API_KEY}, "request": request})
        conn = ElasticConnector("es", config, load_mapping("elastic", BUILTIN_ROOT / "elastic"), tmp_path)
        async with conn.client() as client:
            return (await conn.deliver(client, item(len(request)))).outcome

    try:
        assert asyncio.run(attempt()) is Outcome.RETRY  # the system CAs do not know our CA
        assert asyncio.run(attempt(ca_file=ca_file.name)) is Outcome.OK
        assert asyncio.run(attempt(verify_tls=False, timeout_secs=5)) is Outcome.OK
        assert asyncio.run(attempt(verify_tls=False, ca_file="missing.pem")) is Outcome.OK  # verify_tls wins
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


# --- end to end through a Hub ------------------------------------------------------------------------------


def hub_config(tmp_path: Path, **target: Any) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({  # few fields: the adapter costs ~20 us each
            "title": "item.title", "severity": "item.severity", "tool_id": "item.id", "asset.ip": "item.ip"})},
        "routes": [{"name": "siem", "on": ["event.received", "finding.created", "finding.updated"],
                    "to": ["es"]}],
        "targets": {"es": {"type": "elastic", "url": "http://es.test:9200", "auth": {"api_key": API_KEY},
                           "retry": {"schedule_secs": [0.05] * 20, "jitter": 0},
                           "circuit_breaker": {"failures": 1000, "cooldown_secs": 0.1},
                           "batch": {"max_events": 1000, "timeout_secs": 0.05, "in_flight": 2}, **target}},
        "pipeline": {"safety_net_secs": 0.5},
    }


def running(tmp_path: Path, transport: httpx.AsyncBaseTransport, **target: Any
            ) -> AbstractAsyncContextManager[HubHarness]:
    return HubHarness.running(tmp_path, hub_config(tmp_path, **target), {"es": transport}, timeout=20.0)


def finding(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"F-{i}", "title": f"Finding {i}", "severity": "high", "ip": f"10.0.{i % 250}.{i % 200 + 1}", **kw}


@pytest.mark.slow
async def test_10000_findings_end_to_end_none_lost_or_duplicated(tmp_path):
    app = elasticsearch(api_key=API_KEY)
    cluster = app.state.cluster
    # items fail now and then (429: retried alone), one answer is lost (its retry gets 409s), one 503
    cluster.fail_items(lambda _id, doc: doc.get("message", "").endswith("7"), 429, "es_rejected_execution_exception",
                       times=300)
    transport = Unreliable(app, ["ok", "lost", 503])
    async with running(tmp_path, transport) as h:
        for start in range(0, 10_000, 1000):
            await h.send([finding(i) for i in range(start, start + 1000)])
        await h.until(lambda h=h: h.events("processed") == 10, timeout=30)
        await h.until(h.settled, timeout=30)
        listed = deliveries_of(h.hub.store.conn)
        keys = {d.idempotency_key for d in outbox.peek(h.hub.store.conn, [d["seq"] for d in listed])}
    assert {d["state"] for d in listed} == {"done"} and len(listed) == 10_010  # 10,000 findings + 10 raw events
    docs = cluster.all_docs()
    assert set(docs) == keys  # every delivery exactly once, under its idempotency key
    titles = [d["message"] for d in docs.values() if d["event"]["kind"] == "state"]
    assert len(titles) == len(set(titles)) == 10_000
    assert sum(1 for d in docs.values() if d["event"]["kind"] == "event") == 10
    assert cluster.injected[0].times == 0 and any(r.get("actions") for r in cluster.requests[1:2])
    sample = next(iter(docs.values()))
    assert all(ecs_problems(d) == [] for d in list(docs.values())[:200]), sample


@pytest.mark.slow
async def test_cluster_down_then_back_everything_arrives_once(tmp_path):
    app = elasticsearch(api_key=API_KEY)
    transport = Unreliable(app)
    transport.down = True
    async with running(tmp_path, transport) as h:
        await h.send([finding(i) for i in range(300)])
        await h.until(lambda: transport.calls >= 4)
        assert app.state.cluster.docs == {}
        transport.script = [503, (429, {"retry-after": "0"}), 502]
        transport.down = False
        await h.until(h.settled)
        assert h.states() == {"done": 301}
        await h.send([finding(i, severity="critical") for i in range(300)])  # updates
        await h.until(lambda h=h: h.states() == {"done": 602})
    docs = app.state.cluster.docs["logs-findings-default"]
    assert len(docs) == 602
    updated = [d for d in docs.values() if d["event"]["action"] == "finding.updated"]
    assert len(updated) == 300 and {d["vulnerability"]["severity"] for d in updated} == {"Critical"}


@pytest.mark.slow
async def test_a_permanent_item_goes_dead_alone_with_its_reason(tmp_path):
    app = elasticsearch(api_key=API_KEY)
    app.state.cluster.fail_items(lambda _id, doc: doc.get("message") == "Finding 3", 400, "mapper_parsing_exception",
                                 "failed to parse field [vulnerability.score.base] of type [float]", times=100)
    async with running(tmp_path, httpx.ASGITransport(app=app)) as h:
        await h.send([finding(i) for i in range(10)])
        await h.until(h.settled)
        assert h.states() == {"done": 10, "dead": 1}
        [dead] = deliveries_of(h.hub.store.conn, state="dead")
    assert dead["attempts"] == 1 and dead["last_error"].startswith("item HTTP 400 mapper_parsing_exception")
    assert len(app.state.cluster.docs["logs-findings-default"]) == 10
