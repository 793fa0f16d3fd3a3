"""``splunk_hec``: Splunk HTTP Event Collector, JSON envelopes concatenated in one gzip body per request.

API: ``POST {url}/services/collector/event`` with ``Authorization: Splunk <token>``; optional indexer
acknowledgement through ``POST {url}/services/collector/ack``. Base URL: ``https://<host>:8088`` (Splunk
Enterprise) or ``https://http-inputs-<stack>.splunkcloud.com`` (Splunk Cloud); there is no public default,
so ``url`` is required. Docs: https://docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector
and https://docs.splunk.com/Documentation/Splunk/latest/Data/HECRESTendpoints; answer codes: Splunk's
"Troubleshoot HTTP Event Collector" table of response codes 0-20 (copied below, with our retry classification).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import Field, SecretStr

from hub.connector import Item, Outbound, Outcome, TargetConfig, Verdict
from hub.connector.batching import BatchConnector, Encoded, deliver_chunks, gzip_request, halves_on_413
from hub.connector.config import BatchConfig
from hub.connector.http import json_object, retry_after_secs, short_body
from hub.errors import TemplateError
from hub.strict import StrictModel

HEC_CODES = {0: "Success", 1: "Token disabled", 2: "Token is required", 3: "Invalid authorization", 4: "Invalid token",
             5: "No data", 6: "Invalid data format", 7: "Incorrect index", 8: "Internal server error",
             9: "Server is busy", 10: "Data channel is missing", 11: "Invalid data channel",
             12: "Event field is required", 13: "Event field cannot be blank", 14: "ACK is disabled",
             15: "Error in handling indexed fields", 16: "Query string authorization is not enabled",
             18: "HEC is unhealthy, queues are full", 19: "HEC is unhealthy, ack service unavailable",
             20: "HEC is unhealthy, queues are full, ack service unavailable"}
RETRY_CODES = frozenset({8, 9, 18, 19, 20})
EVENT_CODES = frozenset({6, 7, 12, 13, 15})  # about one event, named by ``invalid-event-number``
META_KEYS = ("time", "host", "source", "sourcetype", "index")
MAX_REJECTS = 8  # rejected events per request before the rest waits for the next attempt
GZIP_LEVEL = 3  # on findings: 6.5% of the size at half the CPU of level 5 (5.9%)


class SplunkAuth(StrictModel):
    token: SecretStr = Field(description="HEC token (a GUID), sent as `Authorization: Splunk <token>`.")


class AckConfig(StrictModel):
    enabled: bool = Field(False, description="The token has indexer acknowledgement on: done means indexed.")
    timeout_secs: float = Field(60.0, gt=0, le=3600, description="Wait this long for an ack, then send again.")
    poll_secs: float = Field(1.0, gt=0, le=60, description="How often /services/collector/ack is asked.")


class SplunkHecConfig(TargetConfig):
    url: str = Field(
        description="HEC base URL, e.g. https://splunk.example.com:8088 (no public default).")
    auth: SplunkAuth = Field(description="`{token}`: the HEC token.")
    index: str | None = Field(None, description="Index to write to; default: the token's default index.")
    host: str | None = Field(None, description="`host` of raw events and of findings without an asset host name.")
    source: str = Field("findings-hub", description="`source` of every event.")
    sourcetype: str = Field("findings:finding", description="`sourcetype` of finding lifecycle events.")
    raw_sourcetype: str = Field("findings:event", description="`sourcetype` of raw `event.received` events.")
    ack: AckConfig = Field(AckConfig(), description="Indexer acknowledgement (only if the token has it on).")
    batch: BatchConfig = Field(BatchConfig(max_events=1000, max_bytes=1_000_000, timeout_secs=1.0, in_flight=4),
                               description="Events per request; 1 MB at most by default (Splunk Cloud's limit).")


class SplunkHecConnector(BatchConnector[SplunkHecConfig]):
    """Splunk HEC event endpoint: one verdict per event, a rejected event fails alone."""

    name: ClassVar[str] = "splunk_hec"
    Config = SplunkHecConfig
    payloads = ("event",)

    @cached_property
    def channel(self) -> str:
        """One ack channel per target instance (Splunk keeps ack ids per channel)."""
        return str(uuid.uuid4())

    @cached_property
    def headers(self) -> dict[str, str]:
        cfg = self.config
        headers = {"authorization": f"Splunk {cfg.auth.token.get_secret_value()}", "content-type": "application/json"}
        if cfg.ack.enabled:
            headers["x-splunk-request-channel"] = self.channel
        return headers

    def encode(self, item: Item) -> bytes:
        """One envelope from hub/builtin_mappings/splunk_hec/event.json.j2, tidied and checked the way HEC checks it."""
        doc = self.mapping.render_json("event", self.context(item))
        if isinstance(doc, dict):
            for key in META_KEYS:  # null metadata: Splunk's defaults apply
                if key in doc and doc[key] is None:
                    del doc[key]
            fields = doc.get("fields")
            if isinstance(fields, dict):
                doc["fields"] = fields = {k: v for k, v in fields.items() if v is not None and v != "" and v != []}
                fields.setdefault("idempotency_key", item.idempotency_key)
            elif fields is None:
                doc["fields"] = {"idempotency_key": item.idempotency_key}
        if problem := envelope_problem(doc):
            raise TemplateError(f"{problem} (HEC would reject this event)",
                                str(self.mapping.folder / self.mapping.payloads["event"].template))
        return orjson.dumps(doc)

    def render(self, item: Item) -> list[Outbound]:
        """The request for a batch of one, shown before gzip (``meta.gzip`` says whether it is compressed)."""
        return [Outbound("POST", self.base_url + "/services/collector/event", dict(self.headers), self.encode(item),
                         frozenset({"authorization"}), {"gzip": self.config.batch.compression})]

    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        acks: dict[int, list[int]] = {}  # ackId -> positions of the items that request carried

        async def send(chunk: list[Encoded]) -> list[Verdict]:
            return await halves_on_413(chunk, lambda part: self._post(client, part, acks), _too_large)

        verdicts = await deliver_chunks(items, self.encode, self.config.batch, send, separator=1)
        if self.config.ack.enabled and acks:
            await self._await_acks(client, acks, verdicts)
        return verdicts

    async def _post(self, client: httpx.AsyncClient, chunk: list[Encoded], acks: dict[int, list[int]]
                    ) -> list[Verdict]:
        """One request; an event HEC names as invalid is PERMANENT alone and the events after it go again."""
        done: list[Verdict] = []
        for _ in range(MAX_REJECTS):
            body = b"\n".join(e.data for e in chunk)
            headers = self.headers
            if self.config.batch.compression:
                body = await gzip_request(body, GZIP_LEVEL)
                headers = {**headers, "content-encoding": "gzip"}
            response = await client.post(self.base_url + "/services/collector/event", content=body, headers=headers)
            answer = json_object(response)
            code, bad = answer.get("code"), answer.get("invalid-event-number")
            if response.is_success:
                ok = Verdict(Outcome.OK, "accepted by HEC", status=response.status_code)
                if isinstance(answer.get("ackId"), int):
                    acks[answer["ackId"]] = [e.index for e in chunk]
                elif self.config.ack.enabled:
                    ok = Verdict(Outcome.OK, "accepted, but HEC sent no ackId: is acknowledgement on for this token?",
                                 status=response.status_code)
                return done + [ok] * len(chunk)
            if response.status_code != 400 or code not in EVENT_CODES or len(chunk) == 1:
                if response.status_code == 413 and done:  # the rest of a request that fitted: not a size problem
                    return done + [Verdict(Outcome.RETRY, "HTTP 413 after a partial acceptance", status=413)
                                   ] * len(chunk)
                return done + [self.classify(response, answer)] * len(chunk)
            if not isinstance(bad, int) or not 0 <= bad < len(chunk) + (code == 7):
                mid = len(chunk) // 2  # HEC did not say which event: halve until it is alone
                return done + await self._post(client, chunk[:mid], acks) + await self._post(client, chunk[mid:], acks)
            # Events before the rejected one are reported to be indexed already (implementers' reports, not
            # Splunk's docs). Code 7 is reported counting from 1, the others from 0: with 7, check both
            # neighbours alone rather than guess (a possible repeat, never a silent loss).
            first = bad - 1 if code == 7 and bad > 0 else bad
            done += [Verdict(Outcome.OK, "accepted before the event HEC rejected", status=400)] * first
            if code == 7:
                for enc in chunk[first:bad + 1]:
                    done += await self._post(client, [enc], acks)
            else:
                done.append(self.classify(response, answer))
            chunk = chunk[bad + 1:]
            if not chunk:
                return done
        return done + [Verdict(Outcome.RETRY, f"sent again later: HEC rejected {MAX_REJECTS} events of this batch",
                               status=400)] * len(chunk)

    def classify(self, response: httpx.Response, answer: dict[str, Any] | None = None) -> Verdict:
        """HTTP status plus HEC's ``code`` -> a verdict whose reason says what to check."""
        answer = json_object(response) if answer is None else answer
        status, code = response.status_code, answer.get("code")
        if response.is_success:
            return Verdict(Outcome.OK, "accepted by HEC", status=status)
        text = f"HTTP {status}" + (f" code {code} ({answer.get('text') or HEC_CODES.get(code, '')})"
                                   if isinstance(code, int) else f": {short_body(response, 200)}")
        if code in RETRY_CODES or status in (408, 425, 429) or (status >= 500 and status != 501):
            return Verdict(Outcome.RETRY, text, retry_after=retry_after_secs(response), status=status)
        if status == 413:
            return Verdict(Outcome.PERMANENT, f"{text}: larger than HEC accepts (max_content_length)", status=status)
        return Verdict(Outcome.PERMANENT, f"{text}: {self._hint(status, code)}".rstrip(": "), status=status)

    def _hint(self, status: int, code: Any) -> str:
        where = f"targets.{self.target}"
        if status in (401, 403) or code in (1, 2, 3, 4):
            return f"check the HEC token in {where}.auth.token (is it valid and enabled?)"
        return {7: f"the token may not write to this index: check {where}.index and the token's allowed indexes",
                10: f"the token has indexer acknowledgement on: set {where}.ack.enabled: true",
                11: f"the ack channel was refused: check {where}.ack",
                14: f"the token has indexer acknowledgement off: set {where}.ack.enabled: false",
                15: "`fields` must be a flat object of strings or string lists (check the mapping)"}.get(code, "")

    async def _await_acks(self, client: httpx.AsyncClient, acks: dict[int, list[int]], verdicts: list[Verdict]
                          ) -> None:
        """Poll /services/collector/ack until every ackId is true (each true is reported once) or time runs out."""
        cfg = self.config.ack
        deadline = time.monotonic() + cfg.timeout_secs
        while acks and time.monotonic() < deadline:
            await asyncio.sleep(min(cfg.poll_secs, max(0.0, deadline - time.monotonic())))
            try:
                response = await client.post(self.base_url + "/services/collector/ack", headers=self.headers,
                                             content=orjson.dumps({"acks": list(acks)}))
                states = response.json().get("acks", {}) if response.is_success else {}
                indexed = [int(k) for k, v in states.items() if v is True]
            except (httpx.HTTPError, ValueError, AttributeError):
                continue  # the next poll (or the timeout) decides
            for ack_id in indexed:
                for i in acks.pop(ack_id, []):
                    verdicts[i] = Verdict(Outcome.OK, f"indexed (ack {ack_id})", status=200)
        for ack_id, positions in acks.items():
            for i in positions:
                verdicts[i] = Verdict(Outcome.RETRY, f"no indexer acknowledgement for ack {ack_id} within "
                                      f"{cfg.timeout_secs:g} s: sending again (find repeats by fields.idempotency_key)")


def envelope_problem(doc: Any) -> str | None:
    """What HEC would reject in one envelope (None: fine)."""
    if not isinstance(doc, dict):
        return "the envelope must be a JSON object"
    event = doc.get("event")
    if event is None or event == "" or (isinstance(event, str) and not event.strip()):
        return "`event` is required and cannot be blank"
    t = doc.get("time")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
        return "`time` must be epoch seconds (a number)"
    for key in META_KEYS[1:]:
        if key in doc and not isinstance(doc[key], str):
            return f"`{key}` must be a string"
    fields = doc.get("fields")
    if not isinstance(fields, dict):
        return "`fields` must be an object"
    for key, value in fields.items():
        if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            return f"`fields.{key}` must be a string or a list of strings (indexed fields are flat)"
    return None


def _too_large(verdicts: list[Verdict]) -> bool:
    return bool(verdicts) and all(v.status == 413 and v.outcome is Outcome.PERMANENT for v in verdicts)
