"""``elastic``: the Elasticsearch Bulk API, ``POST {url}/_bulk`` (NDJSON, gzip), for any Elasticsearch
8.x/9.x cluster or Elastic Cloud Serverless project. There is no public base URL: ``url`` is required.

Docs: https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk
Each delivery is one ``create`` action whose ``_id`` is the delivery's idempotency key, so a retry after a
lost answer gets 409 (already there), which counts as delivered. The answer is HTTP 200 even when items
fail: every item's own status decides its verdict, and only failed items are retried or dead-lettered
(the idea of Vector's ``src/sinks/elasticsearch/retry.rs``). The document comes from
hub/builtin_mappings/elastic/document.json.j2 (ECS 9.4.0).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

import httpx
import orjson
from pydantic import Field, SecretStr

from hub.connector import Item, Outbound, Outcome, TargetConfig, Verdict
from hub.connector.batching import BatchConnector, Encoded, deliver_chunks, gzip_request, halves_on_413
from hub.connector.config import BatchConfig
from hub.connector.http import classify_status, short_body
from hub.errors import TemplateError
from hub.ids import iso
from hub.strict import Loc, StrictModel

# Only what the verdicts need: a 1,000-item answer shrinks from ~250 KB to ~30 KB. Error answers are never filtered.
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"
DATA_STREAM = re.compile(r"^(logs|metrics|traces|synthetics|profiling)-[^-]+-[^-]+$")  # built-in templates


class ElasticAuth(StrictModel):
    api_key: SecretStr | None = Field(None, description="The `encoded` value of an API key (base64 of id:api_key), "
                                      "sent as `Authorization: ApiKey <encoded>`; `id:api_key` is encoded for you.")
    username: str | None = Field(None, description="Basic auth user (with `password`).")
    password: SecretStr | None = Field(None, description="Basic auth password (with `username`).")
    bearer: SecretStr | None = Field(None,
                                     description="A bearer token (OAuth2/JWT realm): `Authorization: Bearer ...`.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        basic = self.username is not None or self.password is not None
        if [self.api_key is not None, basic, self.bearer is not None].count(True) != 1:
            yield (), "set exactly one of api_key, username + password, or bearer"
        elif basic and (self.username is None or self.password is None):
            yield ("password" if self.password is None else "username",), "username and password go together"

    def header(self) -> str:
        if self.api_key is not None:
            key = self.api_key.get_secret_value()
            return "ApiKey " + (base64.b64encode(key.encode()).decode() if ":" in key else key)
        if self.bearer is not None:
            return "Bearer " + self.bearer.get_secret_value()
        pair = f"{self.username}:{self.password.get_secret_value() if self.password else ''}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def field(self) -> str:
        return "api_key" if self.api_key else "bearer" if self.bearer else "username / password"


class ElasticConfig(TargetConfig):
    url: str = Field(description="Cluster URL, e.g. https://my-deployment.es.us-east-1.aws"
                     ".elastic.cloud (no public default).")
    auth: ElasticAuth | None = Field(None, description="Exactly one of api_key, username + password, bearer; none "
                                     "for a cluster without security.")
    index: str = Field("logs-findings-default", pattern=r'^[^-_+A-Z\\/*?"<>| ,#:][^A-Z\\/*?"<>| ,#:]{0,254}$',
                       description="Data stream or index to write to (lowercase).")
    op_type: Literal["create", "index"] = Field("create", description="create: never overwrite (data streams "
                                                "accept only this); index: create or replace.")
    document_id: Literal["delivery", "finding"] = Field("delivery", description="_id of each document: the "
                                                        "delivery's idempotency key, or the finding id (one "
                                                        "latest-state document per finding; needs op_type index).")
    pipeline: str | None = Field(None, description="Ingest pipeline to run on every document.")
    batch: BatchConfig = Field(BatchConfig(max_events=1000, max_bytes=5_000_000, timeout_secs=1.0, in_flight=2),
                               description="Documents per bulk request; 5 MB is far below the 100 MB "
                               "http.max_content_length and keeps a coordinating node's memory low.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.op_type == "index" and DATA_STREAM.match(self.index):
            yield ("op_type",), f"{self.index} is a data stream name: data streams accept only create"
        if self.document_id == "finding" and self.op_type != "index":
            yield ("document_id",), "document_id finding needs op_type index (create would drop every later step)"


class ElasticConnector(BatchConnector[ElasticConfig]):
    """Batched, gzip-compressed bulk `create` of ECS documents; one verdict per item from the bulk answer."""

    name: ClassVar[str] = "elastic"
    Config = ElasticConfig
    payloads = ("document",)
    kinds = None  # every event type: raw event.received, finding lifecycle, delivery.dead

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cfg = self.config
        query = {"filter_path": FILTER_PATH, **({"pipeline": cfg.pipeline} if cfg.pipeline else {})}
        self.bulk_url = f"{self.base_url}/_bulk?{urlencode(query, safe=',*')}"
        self.headers = {"content-type": "application/x-ndjson", "accept": "application/json"}
        if cfg.auth is not None:
            self.headers["authorization"] = cfg.auth.header()
        self._action = b'{"%s":{"_index":%s,"_id":' % (cfg.op_type.encode(), orjson.dumps(cfg.index))
        self._ok = Verdict(Outcome.OK, f"{'created' if cfg.op_type == 'create' else 'indexed'} in {cfg.index}",
                           status=201)

    def encode(self, item: Item) -> bytes:
        """The action line and the document line of one item."""
        doc = self.mapping.render_json("document", self.context(item))
        if not isinstance(doc, dict):
            raise TemplateError("the document must be one JSON object", self.mapping.payloads["document"].template)
        doc = {k: ({k2: v2 for k2, v2 in v.items() if v2 is not None} if type(v) is dict else v)
               for k, v in doc.items() if v is not None}  # nulls of the first two levels: raw bodies stay as they are
        if "@timestamp" not in doc:  # data streams require it
            doc["@timestamp"] = iso()
        latest = self.config.document_id == "finding" and item.finding and item.kind.startswith("finding.")
        doc_id = item.finding["id"] if latest else item.idempotency_key  # type: ignore[index]
        return self._action + orjson.dumps(doc_id) + b"}}\n" + orjson.dumps(doc) + b"\n"

    def outbound(self, body: bytes, compressed: bool) -> Outbound:
        headers = {**self.headers, "content-encoding": "gzip"} if compressed else dict(self.headers)
        return Outbound("POST", self.bulk_url, headers, body, frozenset({"authorization"}),
                        {"gzip": self.config.batch.compression})

    def render(self, item: Item) -> list[Outbound]:
        """A bulk request of one, shown before gzip (``meta.gzip`` says whether the real request is compressed)."""
        return [self.outbound(self.encode(item), compressed=False)]

    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        send = partial(self._send, client)
        return await deliver_chunks(items, self.encode, self.config.batch,
                                    lambda chunk: halves_on_413(chunk, send, lambda vs: vs[0].status == 413))

    async def _send(self, client: httpx.AsyncClient, chunk: list[Encoded]) -> list[Verdict]:
        body = b"".join(e.data for e in chunk)
        if compress := self.config.batch.compression:
            body = await gzip_request(body)
        out = self.outbound(body, compress)
        return self.verdicts(await client.post(out.url, headers=out.headers, content=out.body), len(chunk))

    def verdicts(self, response: httpx.Response, count: int) -> list[Verdict]:
        """One verdict per action: the whole answer's when the request failed, else each item's own."""
        if response.status_code == 413:
            return [Verdict(Outcome.PERMANENT, "HTTP 413: larger than http.max_content_length", status=413)] * count
        if not 200 <= response.status_code < 300:
            return [self.classify(response)] * count
        try:
            answer = orjson.loads(response.content)
            items, errors = answer["items"], answer["errors"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return [Verdict(Outcome.RETRY, f"unreadable bulk answer: {short_body(response, 200)}", status=200)] * count
        if len(items) != count:
            return [Verdict(Outcome.RETRY, f"bulk answer has {len(items)} items for {count} actions")] * count
        return [self.item_verdict(next(iter(i.values()))) for i in items] if errors else [self._ok] * count

    def item_verdict(self, result: dict[str, Any]) -> Verdict:
        status = int(result.get("status") or 0)
        if 200 <= status < 300:
            return self._ok
        if status == 409 and self.config.op_type == "create":
            return Verdict(Outcome.OK, "already indexed (409: an earlier attempt had arrived)", status=409)
        error = result.get("error") or {}
        what = f"item HTTP {status} {error.get('type', '')}: {str(error.get('reason', ''))[:300]}"
        if status in (409, 429) or status >= 500:
            return Verdict(Outcome.RETRY, what, status=status)
        if status in (401, 403):
            what += f"; check {self._credential()}"
        elif "parsing" in str(error.get("type")):
            what += "; the document does not fit the index mapping: fix the template or the index template, then replay"
        return Verdict(Outcome.PERMANENT, what, status=status)

    def classify(self, response: httpx.Response) -> Verdict:
        """A whole-request failure: 429/5xx retry; 400, 401, 403, 404 are permanent, naming what to check."""
        verdict, code = classify_status(response), response.status_code
        try:
            error = orjson.loads(response.content)["error"]
            what = f"{error['type']}: {str(error.get('reason'))[:300]}" if isinstance(error, dict) else str(error)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            what = short_body(response, 300)
        hint = f"; check {self._credential()}" if code in (401, 403) else \
            f"; check targets.{self.target}.url" if code in (404, 405) else ""
        return Verdict(verdict.outcome, f"HTTP {code}: {what}{hint}", retry_after=verdict.retry_after, status=code)

    def _credential(self) -> str:
        auth = self.config.auth
        where = f"targets.{self.target}.auth"
        if auth is None:
            return f"{where}: the cluster wants credentials and none are set"
        return f"{where}.{auth.field()} (valid, not expired, with the create_doc privilege on {self.config.index})"
