"""A fake Elasticsearch ``_bulk`` endpoint that checks what a real cluster checks, and a transport in
front of it that loses answers, refuses connections or answers 429/503 like a busy cluster.

Checked like a real cluster: the Authorization header (ApiKey / Basic / Bearer), Content-Type,
gzip actually decoded, ``http.max_content_length`` (413, on the decoded body), NDJSON pairs parsed
strictly (action line then source line, the body must end with a newline; pretty printing or a
malformed action line fails the whole request with 400), data streams (``logs-*`` ...) accept only
``create`` and need ``@timestamp``, a duplicate ``_id`` with ``create`` answers 409, field types
against the index mapping (ECS types, dynamic mapping for the rest, numeric strings coerced the way
ES coerces them), the total fields limit, and ``filter_path`` on the answer. Answers are HTTP 200
with ``errors`` and one item per action, in order. Tests inject per-item failures with
``cluster.fail_items``.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Types of ECS v9.4.0 fields a finding document uses (elastic/ecs generated/ecs/ecs_flat.yml, tag v9.4.0),
# "[]" where ECS normalizes the field to an array. Plus the mapping our docs recommend for raw bodies.
ECS: dict[str, str] = {
    "@timestamp": "date", "ecs.version": "keyword", "message": "match_only_text", "labels": "object",
    "tags": "keyword[]", "event.action": "keyword", "event.category": "keyword[]", "event.code": "keyword",
    "event.created": "date", "event.dataset": "keyword", "event.duration": "long", "event.end": "date",
    "event.id": "keyword", "event.ingested": "date", "event.kind": "keyword", "event.module": "keyword",
    "event.original": "keyword", "event.outcome": "keyword", "event.provider": "keyword", "event.reason": "keyword",
    "event.reference": "keyword", "event.risk_score": "float", "event.severity": "long", "event.start": "date",
    "event.type": "keyword[]", "event.url": "keyword", "host.architecture": "keyword", "host.domain": "keyword",
    "host.hostname": "keyword", "host.id": "keyword", "host.ip": "ip[]", "host.mac": "keyword[]",
    "host.name": "keyword", "host.os.family": "keyword", "host.os.full": "keyword", "host.os.name": "keyword",
    "host.os.platform": "keyword", "host.os.type": "keyword", "host.os.version": "keyword",
    "host.risk.static_level": "keyword", "host.risk.static_score": "float", "host.risk.calculated_score": "float",
    "host.type": "keyword", "observer.vendor": "keyword", "observer.product": "keyword",
    "package.name": "keyword", "package.version": "keyword", "package.type": "keyword", "package.path": "keyword",
    "related.hosts": "keyword[]", "related.ip": "ip[]", "cloud.provider": "keyword", "cloud.region": "keyword",
    "cloud.account.id": "keyword", "service.name": "keyword", "url.full": "wildcard", "file.path": "keyword",
    "vulnerability.category": "keyword[]", "vulnerability.classification": "keyword",
    "vulnerability.description": "keyword", "vulnerability.enumeration": "keyword", "vulnerability.id": "keyword",
    "vulnerability.reference": "keyword", "vulnerability.report_id": "keyword",
    "vulnerability.scanner.vendor": "keyword", "vulnerability.score.base": "float",
    "vulnerability.score.environmental": "float", "vulnerability.score.temporal": "float",
    "vulnerability.score.version": "keyword", "vulnerability.severity": "keyword",
}
RECOMMENDED = {"findings_hub.event.body": "flattened"}
ACTIONS = ("create", "index", "update", "delete")
META = {"_index", "_id", "routing", "pipeline", "require_alias", "require_data_stream", "if_seq_no", "if_primary_term",
        "version", "version_type", "dynamic_templates", "list_executed_pipelines", "retry_on_conflict", "_source"}
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$")


class ItemError(Exception):
    def __init__(self, status: int, type_: str, reason: str):
        super().__init__(reason)
        self.status, self.type, self.reason = status, type_, reason


@dataclass
class Injected:
    match: Callable[[str, dict[str, Any]], bool]
    status: int
    type: str
    reason: str
    times: int


@dataclass
class Cluster:
    """What the cluster holds: documents per index, the requests it saw, the failures to inject."""

    credentials: set[str]
    max_content_length: int
    data_streams: tuple[str, ...]
    mapping: dict[str, str]
    total_fields_limit: int
    docs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    injected: list[Injected] = field(default_factory=list)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)  # index -> path -> type (explicit + dynamic)
    forbidden: bool = False
    seq: itertools.count = field(default_factory=itertools.count)

    def fail_items(self, match: Iterable[str] | Callable[[str, dict[str, Any]], bool], status: int, type_: str,
                   reason: str = "injected failure", times: int = 1) -> None:
        """The next ``times`` actions matching (by _id, or a predicate over (_id, source)) fail with this error."""
        ids = set() if callable(match) else set(match)
        test = match if callable(match) else (lambda i, _: i in ids)
        self.injected.append(Injected(test, status, type_, reason, times))

    def all_docs(self) -> dict[str, dict[str, Any]]:
        return {i: d for docs in self.docs.values() for i, d in docs.items()}

    def is_data_stream(self, index: str) -> bool:
        return index.startswith(self.data_streams)


def es_error(status: int, type_: str, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    cause = {"type": type_, "reason": reason}
    return JSONResponse({"error": {"root_cause": [cause], **cause}, "status": status}, status, headers=headers)


def elasticsearch(*, api_key: str | None = None, basic: tuple[str, str] | None = None, bearer: str | None = None,
                  max_content_length: int = 100 * 1024 * 1024, data_streams: tuple[str, ...] = ("logs-", "metrics-",
                  "traces-"), mapping: dict[str, str] | None = None, total_fields_limit: int = 1000) -> Starlette:
    """The app; ``app.state.cluster`` is the state tests assert on."""
    creds = set()
    if api_key:
        creds.add(f"ApiKey {api_key}")
    if basic:
        creds.add("Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode())
    if bearer:
        creds.add(f"Bearer {bearer}")
    cluster = Cluster(creds, max_content_length, data_streams, {**ECS, **RECOMMENDED} if mapping is None else mapping,
                      total_fields_limit)

    async def bulk(request: Request) -> Response:
        auth = request.headers.get("authorization")
        if cluster.credentials and auth not in cluster.credentials:
            why = "missing authentication credentials" if auth is None else "unable to authenticate with provided " \
                "credentials and anonymous access is not allowed"
            return es_error(401, "security_exception", f"{why} for REST request [{request.url.path}]",
                            {"www-authenticate": 'ApiKey, Basic realm="security", Bearer realm="security"'})
        if cluster.forbidden:
            return es_error(403, "security_exception", "action [indices:data/write/bulk] is unauthorized for API key "
                            "id [k1] of user [hub], this action is granted by the index privileges [create_doc,all]")
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype not in ("application/x-ndjson", "application/json"):
            return JSONResponse({"error": f"Content-Type header [{ctype}] is not supported", "status": 406}, 406)
        data = await request.body()
        wire = len(data)
        encoding = request.headers.get("content-encoding")
        if encoding == "gzip":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                return es_error(400, "illegal_argument_exception", f"cannot decode gzip body: {exc}")
        elif encoding:
            return es_error(400, "illegal_argument_exception", f"unsupported Content-Encoding [{encoding}]")
        cluster.requests.append({"encoding": encoding, "wire_bytes": wire, "bytes": len(data),
                                 "query": dict(request.query_params), "authorization": auth})
        if len(data) > cluster.max_content_length:
            return Response(b"", 413)
        try:
            ops = parse(data, request.path_params.get("index"))
        except ItemError as exc:
            return es_error(exc.status, exc.type, exc.reason)
        cluster.requests[-1]["actions"] = len(ops)
        items = [{action: apply(cluster, action, meta, source)} for action, meta, source in ops]
        answer: dict[str, Any] = {"errors": any("error" in next(iter(i.values())) for i in items), "took": 3,
                                  "items": items}
        if paths := request.query_params.get("filter_path"):
            answer = filter_path(answer, [p.split(".") for p in paths.split(",")]) or {}
        return Response(orjson.dumps(answer), 200, media_type="application/json")

    app = Starlette(routes=[Route("/_bulk", bulk, methods=["POST", "PUT"]),
                            Route("/{index}/_bulk", bulk, methods=["POST", "PUT"])])
    app.state.cluster = cluster
    return app


def parse(data: bytes, path_index: str | None) -> list[tuple[str, dict[str, Any], bytes | None]]:
    """Action/source pairs, strictly; a broken action line fails the whole request, as in BulkRequestParser."""
    if not data.endswith(b"\n"):
        raise ItemError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
    lines = data[:-1].split(b"\n")
    ops: list[tuple[str, dict[str, Any], bytes | None]] = []
    n = 0
    while n < len(lines):
        try:
            action_line = orjson.loads(lines[n])
        except orjson.JSONDecodeError:
            raise ItemError(400, "x_content_parse_exception", f"[{n + 1}:1] Malformed action/metadata line [{n + 1}], "
                            "expected START_OBJECT or END_OBJECT") from None
        if not isinstance(action_line, dict) or len(action_line) != 1 or next(iter(action_line)) not in ACTIONS:
            raise ItemError(400, "illegal_argument_exception", f"Malformed action/metadata line [{n + 1}], expected "
                            f"one of {', '.join(ACTIONS)}")
        action, meta = next(iter(action_line.items()))
        if not isinstance(meta, dict) or (unknown := set(meta) - META):
            raise ItemError(400, "illegal_argument_exception", f"Action/metadata line [{n + 1}] contains an unknown "
                            f"parameter [{min(unknown) if isinstance(meta, dict) else meta}]")
        meta = {**meta, "_index": meta.get("_index") or path_index}
        if not meta["_index"]:
            raise ItemError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        if len(str(meta.get("_id", "")).encode()) > 512:
            raise ItemError(400, "action_request_validation_exception", "Validation Failed: 1: id is too long, "
                            "must be no longer than 512 bytes;")
        source = None
        if action != "delete":
            n += 1
            if n >= len(lines):
                raise ItemError(400, "illegal_argument_exception", f"{action} action at line [{n}] has no source line")
            source = lines[n]
        ops.append((action, meta, source))
        n += 1
    return ops


def apply(cluster: Cluster, action: str, meta: dict[str, Any], source: bytes | None) -> dict[str, Any]:
    index = meta["_index"]
    doc_id = str(meta.get("_id") or f"auto{next(cluster.seq)}")
    stored = cluster.docs.setdefault(index, {})
    backing = f".ds-{index}-2026.11.22-000001" if cluster.is_data_stream(index) else index
    try:
        doc = orjson.loads(source) if source is not None else None
        if source is not None and not isinstance(doc, dict):
            raise ItemError(400, "document_parsing_exception", "[1:1] failed to parse: the source is not an object")
        for inj in cluster.injected:
            if inj.times > 0 and inj.match(doc_id, doc or {}):
                inj.times -= 1
                raise ItemError(inj.status, inj.type, inj.reason)
        if cluster.is_data_stream(index):
            if action != "create":
                raise ItemError(400, "illegal_argument_exception", f"only write ops with an op_type of create are "
                                f"allowed in data streams (action [{action}] on [{index}])")
            if not isinstance(doc, dict) or "@timestamp" not in doc:
                raise ItemError(400, "document_parsing_exception", "[1:1] failed to parse: data stream timestamp "
                                "field [@timestamp] is missing")
        if action in ("update", "delete"):
            raise ItemError(400, "illegal_argument_exception", f"the fake does not implement [{action}]")
        if action == "create" and doc_id in stored:
            raise ItemError(409, "version_conflict_engine_exception",
                            f"[{doc_id}]: version conflict, document already exists (current version [1])")
        assert doc is not None
        check_mapping(cluster, index, doc, doc_id)
    except ItemError as exc:
        return {"_index": backing, "_id": doc_id, "status": exc.status,
                "error": {"type": exc.type, "reason": exc.reason, "index": index}}
    replaced = doc_id in stored
    stored[doc_id] = doc
    return {"_index": backing, "_id": doc_id, "_version": 1, "result": "updated" if replaced else "created",
            "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": next(cluster.seq), "_primary_term": 1,
            "status": 200 if replaced else 201}


def check_mapping(cluster: Cluster, index: str, doc: dict[str, Any], doc_id: str) -> None:
    """Explicit types, else dynamic mapping (the first value decides, as in ES); a misfit fails only this item."""
    fields = cluster.fields.get(index)
    if fields is None:  # the index's mapping: the explicit fields and their parent objects
        fields = cluster.fields[index] = {p.rsplit(".", n)[0]: "object" for p in cluster.mapping
                                          for n in range(1, p.count(".") + 1)}
        fields.update({k: v.removesuffix("[]") for k, v in cluster.mapping.items()})
    new: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if value is None:
            return
        if type(value) is list:
            for v in value:
                walk(prefix, v)
            return
        known = fields.get(prefix) or new.get(prefix) or ("keyword" if prefix.startswith("labels.") else None)
        if type(value) is dict:
            if known is None:
                new[prefix] = "object"
            elif known == "flattened":  # one field, whatever keys it holds
                return
            elif known != "object":
                raise ItemError(400, "document_parsing_exception", f"[1:1] failed to parse field [{prefix}] of type "
                                f"[{known}] in document with id '{doc_id}'. Preview of field's value: '{value}'")
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif known is None:
            new[prefix] = dynamic_type(value)
        elif known == "object":
            raise ItemError(400, "document_parsing_exception", f"object mapping for [{prefix}] tried to parse field "
                            f"[{prefix}] as object, but found a concrete value")
        elif not fits(known, value):
            raise ItemError(400, "document_parsing_exception", f"[1:1] failed to parse field [{prefix}] of type "
                            f"[{known}] in document with id '{doc_id}'. Preview of field's value: '{value}'")

    for key, value in doc.items():
        walk(key, value)
    if len(fields) + len(new) > cluster.total_fields_limit:
        raise ItemError(400, "illegal_argument_exception", f"Limit of total fields [{cluster.total_fields_limit}] has "
                        f"been exceeded while adding new fields [{len(new)}]")
    fields.update(new)


def dynamic_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "float"
    return "date" if isinstance(value, str) and ISO.match(value) else "keyword"  # date_detection is on by default


def fits(type_: str, value: Any) -> bool:
    """Would ES accept this JSON value for a field of this type (with its default coercion)?"""
    type_ = type_.removesuffix("[]")
    if type_ == "flattened":
        return isinstance(value, dict)
    if type_ in ("keyword", "wildcard", "match_only_text", "text", "constant_keyword"):
        return isinstance(value, (str, int, float, bool))
    if type_ in ("float", "long", "scaled_float", "double", "integer"):
        if isinstance(value, bool):
            return False
        if isinstance(value, str):
            try:
                float(value)  # coerce: "8.1" is accepted, "high" is not
            except ValueError:
                return False
        return isinstance(value, (int, float, str))
    if type_ == "date":
        if isinstance(value, int) and not isinstance(value, bool):
            return True
        if not isinstance(value, str) or not ISO.match(value):
            return False
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    if type_ == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if type_ == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    return type_ == "object" and isinstance(value, dict)


def filter_path(value: Any, patterns: list[list[str]]) -> Any:
    """ES's ``filter_path`` (``*`` matches one key; arrays are traversed); None when nothing is left."""
    if any(not p for p in patterns):
        return value
    if isinstance(value, list):
        kept = [filter_path(v, patterns) for v in value]
        return [v for v in kept if v is not None] or None
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            sub = [p[1:] for p in patterns if p[0] in ("*", key)]
            if sub and (kept := filter_path(v, sub)) is not None:
                out[key] = kept
        return out or None
    return None


class Unreliable(httpx.AsyncBaseTransport):
    """Steps: "ok" (to the cluster), "lost" (the cluster handles it, the answer never comes back), "refused"
    (nothing reaches the cluster), an int status or (status, headers) answered with an ES error body.
    ``down = True`` refuses every connection until it is set back."""

    def __init__(self, app: Starlette, script: Iterable[Any] = (), default: Any = "ok"):
        self.inner = httpx.ASGITransport(app=app)
        self.script, self.default = list(script), default
        self.down = False
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        step = "refused" if self.down else self.script.pop(0) if self.script else self.default
        if step == "ok":
            return await self.inner.handle_async_request(request)
        if step == "lost":
            response = await self.inner.handle_async_request(request)
            await response.aread()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        if step == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        status, headers = step if isinstance(step, tuple) else (step, {})
        kind = "es_rejected_execution_exception" if status == 429 else "unavailable_shards_exception"
        body = {"error": {"type": kind, "reason": f"scripted {status}"}, "status": status}
        return httpx.Response(status, headers=headers, json=body)
