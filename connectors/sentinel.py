"""``sentinel``: rows into a Log Analytics table that Microsoft Sentinel reads, via the Azure Monitor Logs Ingestion
API.

``POST {url}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01``, a gzipped JSON
array of rows, ``Authorization: Bearer`` with an Entra client-credentials token; 204 is success. ``url`` is the
data collection endpoint (DCE) or the DCR's own logs-ingestion endpoint: there is no public default.
Docs: https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview (the legacy HTTP Data
Collector API is retired and not used). Rows come from hub/builtin_mappings/sentinel/row.json.j2.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import Field, SecretStr

from hub.connector import Item, Outbound, Outcome, TargetConfig, Verdict
from hub.connector.batching import BatchConnector, Encoded, deliver_chunks, gzip_request, halves_on_413
from hub.connector.config import BatchConfig
from hub.connector.http import classify_status, json_object, retry_after_secs, verdict_for_exception
from hub.errors import TemplateError
from hub.ids import iso
from hub.strict import Loc, StrictModel

API_VERSION = "2023-01-01"
MAX_CALL_BYTES = 1_000_000  # "1 MB per call, compressed or not": counted before compression, to be safe
REFRESH_EARLY_SECS = 300.0
BISECT_BUDGET = 24  # extra calls per batch to isolate rows a 400 rejects, before giving up on the rest
BATCH = BatchConfig(max_events=1000, max_bytes=MAX_CALL_BYTES, timeout_secs=1.0, in_flight=4, compression=True)
COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,44}")
RESERVED = frozenset({"_ResourceId", "id", "_SubscriptionId", "TenantId", "Type", "UniqueId", "Title"})


class SentinelAuth(StrictModel):
    client_id: str = Field(min_length=1, description="Application (client) id of the Entra app registration.")
    client_secret: SecretStr = Field(description="A client secret of that app registration.")


class SentinelConfig(TargetConfig):
    url: str = Field(description="Data collection endpoint (DCE) or the DCR's "
                     "logs-ingestion endpoint, e.g. https://my-dce-abcd.eastus-1.ingest.monitor.azure.com.")
    tenant_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Entra tenant (directory) id.")
    auth: SentinelAuth = Field(description="Client credentials of the app granted Monitoring Metrics Publisher.")
    dcr_immutable_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
                                  description="immutableId of the data collection rule (dcr-<32 hex>).")
    stream: str = Field(pattern=r"^(Custom|Microsoft)-[A-Za-z0-9_.-]+$",
                        description="Stream declared in the DCR, e.g. Custom-Findings.")
    token_url: str = Field("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token", pattern=r"^https?://",
                           description="Entra token endpoint; {tenant_id} is replaced. Sovereign clouds use "
                                       "login.microsoftonline.us (US Gov) or login.chinacloudapi.cn (21Vianet).")
    scope: str = Field("https://monitor.azure.com//.default", description="Token scope; monitor.azure.us (US Gov) "
                       "or monitor.azure.cn (21Vianet) audiences in sovereign clouds.")
    batch: BatchConfig = Field(BATCH, description="Rows per call: at most 1 MB of JSON per call (counted "
                               "uncompressed); keys left out keep this connector's defaults.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.batch.max_bytes > MAX_CALL_BYTES:
            yield ("batch", "max_bytes"), f"the Logs Ingestion API takes at most 1 MB per call: use <= {MAX_CALL_BYTES}"


class _TokenFailed(Exception):
    def __init__(self, verdict: Verdict):
        super().__init__(verdict.reason)
        self.verdict = verdict


class SentinelConnector(BatchConnector[SentinelConfig]):
    """Batches rows into Logs Ingestion API calls; one cached Entra token serves every call of the target."""

    name: ClassVar[str] = "sentinel"
    Config = SentinelConfig
    payloads = ("row",)
    kinds = None  # every event type (raw event.received and finding lifecycle): routes choose
    default_rate_limit = 200.0  # 12,000 requests/min per DCR

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.ingest_url = (f"{cfg.url.rstrip('/')}/dataCollectionRules/{quote(cfg.dcr_immutable_id)}"
                           f"/streams/{quote(cfg.stream)}?api-version={API_VERSION}")
        self.token_url = cfg.token_url.replace("{tenant_id}", cfg.tenant_id)
        self.clock: Callable[[], float] = time.monotonic
        self._token: tuple[str, float] | None = None  # (access token, monotonic time to refresh at)
        self._lock = asyncio.Lock()
        self._columns_ok: set[tuple[str, ...]] = set()

    # --- rows --------------------------------------------------------------------------------------------

    def encode(self, item: Item) -> bytes:
        """One row as JSON; a row Azure would reject for its shape is this item's template error."""
        row = self.mapping.render_json("row", self.context(item))
        if not isinstance(row, dict):
            raise TemplateError("row.json.j2 must render a JSON object (one table row)")
        keys = tuple(row)
        if keys not in self._columns_ok:
            for key in keys:
                if key in RESERVED or not COLUMN.fullmatch(key):
                    raise TemplateError(f"column {key!r}: " + ("reserved in Log Analytics" if key in RESERVED else
                                        "columns start with a letter; up to 45 letters, digits or _"))
            if len(self._columns_ok) < 1000:
                self._columns_ok.add(keys)
        if not row.get("TimeGenerated"):
            row["TimeGenerated"] = iso()
        return orjson.dumps(row)

    def _outbound(self, body: bytes, token: str) -> Outbound:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json",
                   "x-ms-client-request-id": str(uuid.uuid4())}  # a new GUID per call: Azure support traces it
        if self.config.batch.compression:
            headers["content-encoding"] = "gzip"
        return Outbound("POST", self.ingest_url, headers, body, frozenset({"authorization"}))

    def render(self, item: Item) -> list[Outbound]:
        """The call for a batch of one; the body is shown before gzip (the real call gzips it)."""
        return [self._outbound(b"[" + self.encode(item) + b"]", f"<token from {self.token_url}>")]

    # --- sending -----------------------------------------------------------------------------------------

    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        budget = [BISECT_BUDGET]

        async def send(chunk: list[Encoded]) -> list[Verdict]:
            return await halves_on_413(chunk, partial(self._bisect, client, budget), lambda v: v[0].status == 413)

        return await deliver_chunks(items, self.encode, self.config.batch, send, separator=1, overhead=2)

    async def _bisect(self, client: httpx.AsyncClient, budget: list[int], chunk: list[Encoded]) -> list[Verdict]:
        """A 400 rejects the whole call: split it to deliver the good rows and pin the error on the bad ones."""
        verdict = await self._call(client, [e.data for e in chunk])
        if verdict.status != 400 or len(chunk) == 1 or budget[0] < 2:
            return [verdict] * len(chunk)
        budget[0] -= 2
        mid = len(chunk) // 2
        left, right = await asyncio.gather(self._bisect(client, budget, chunk[:mid]),
                                           self._bisect(client, budget, chunk[mid:]))
        return [*left, *right]

    async def _call(self, client: httpx.AsyncClient, rows: list[bytes]) -> Verdict:
        body = b"[" + b",".join(rows) + b"]"
        if self.config.batch.compression:
            body = await gzip_request(body)
        try:
            token = await self.token(client)
            response = await self._post(client, body, token)
            if response.status_code == 401:  # expired or revoked early: one fresh token, one more try
                response = await self._post(client, body, await self.token(client, stale=token))
        except _TokenFailed as exc:
            return exc.verdict
        except httpx.TransportError as exc:  # a verdict, not an exception: the other half of a split keeps its own
            return verdict_for_exception(exc, self.config.request.timeout_secs)
        return self.classify(response)

    async def _post(self, client: httpx.AsyncClient, body: bytes, token: str) -> httpx.Response:
        out = self._outbound(body, token)
        return await client.post(out.url, headers=out.headers, content=out.body)

    def classify(self, response: httpx.Response) -> Verdict:
        """204 is OK; 429/5xx retry; the rest is permanent with Azure's error code and what to check."""
        verdict = classify_status(response)
        code = response.status_code
        if verdict.outcome is Outcome.OK or code == 413:
            return verdict
        error = _error(response)
        hint = {400: "the rows do not fit the stream declaration (check hub/builtin_mappings/sentinel and the DCR)",
                401: "token rejected after a refresh: check the app registration / client secret "
                     "(tenant_id, auth.client_id, auth.client_secret) and the scope audience",
                403: f"grant the app (client id {self.config.auth.client_id}) 'Monitoring Metrics Publisher' "
                     "on the DCR",
                404: "check dcr_immutable_id, stream and that url is the DCE/DCR endpoint of the DCR's region"}
        reason = f"HTTP {code} {error}: {hint.get(code, 'unexpected answer')}"
        if verdict.outcome is Outcome.RETRY:
            return Verdict(Outcome.RETRY, f"HTTP {code} {error}", retry_after=retry_after_secs(response), status=code)
        return Verdict(Outcome.PERMANENT, reason + _request_id(response), status=code)

    # --- Entra token -------------------------------------------------------------------------------------

    async def token(self, client: httpx.AsyncClient, stale: str | None = None) -> str:
        """A cached access token; refreshed 5 minutes (at most half its life) before it expires, or when stale."""
        cached = self._token
        if cached and cached[0] != stale and self.clock() < cached[1]:
            return cached[0]
        async with self._lock:  # concurrent batches wait for one token request
            cached = self._token
            if cached and cached[0] != stale and self.clock() < cached[1]:
                return cached[0]
            self._token = await self._fetch_token(client)
            return self._token[0]

    async def _fetch_token(self, client: httpx.AsyncClient) -> tuple[str, float]:
        cfg = self.config
        form = {"client_id": cfg.auth.client_id, "client_secret": cfg.auth.client_secret.get_secret_value(),
                "grant_type": "client_credentials", "scope": cfg.scope}
        where = f"token endpoint {httpx.URL(self.token_url).host}"
        try:
            response = await client.post(self.token_url, data=form, headers={"accept": "application/json"})
        except httpx.TransportError as exc:
            raise _TokenFailed(Verdict(Outcome.RETRY, f"{where}: network error: {type(exc).__name__}")) from None
        code = response.status_code
        if code == 200:
            try:
                doc = response.json()
                life = float(doc["expires_in"])
                return str(doc["access_token"]), self.clock() + life - min(REFRESH_EARLY_SECS, life / 2)
            except (ValueError, KeyError, TypeError):
                raise _TokenFailed(Verdict(Outcome.RETRY, f"{where}: answer without access_token/expires_in",
                                           status=code)) from None
        error = _aad_error(response)
        if code in (408, 429) or code >= 500:
            raise _TokenFailed(Verdict(Outcome.RETRY, f"{where}: HTTP {code} {error}",
                                       retry_after=retry_after_secs(response), status=code))
        raise _TokenFailed(Verdict(Outcome.PERMANENT, f"{where}: HTTP {code} {error}: check tenant_id, "
                                   "auth.client_id and auth.client_secret (expired secrets are a common cause) and "
                                   "scope", status=code))


def _error(response: httpx.Response) -> str:
    """Azure's error code (x-ms-error-code or body error.code) and the start of its message."""
    code, message = response.headers.get("x-ms-error-code", ""), ""
    doc = json_object(response)
    err = doc.get("error") or {}
    if doc and isinstance(err, dict):
        code, message = code or str(err.get("code") or ""), str(err.get("message") or "")
    else:
        message = response.text
    message = " ".join(message.split())[:200]
    return f"{code or 'error'}" + (f" {message}" if message else "")


def _aad_error(response: httpx.Response) -> str:
    """Entra's ``error`` code and AADSTS number; never the description, which can quote the request."""
    doc = json_object(response)
    error = str(doc.get("error") or "error")
    aadsts = re.search(r"AADSTS\d+", str(doc.get("error_description") or ""))
    return f"{error} ({aadsts.group()})" if aadsts else error


def _request_id(response: httpx.Response) -> str:
    try:
        rid = response.request.headers.get("x-ms-client-request-id")
    except RuntimeError:  # a response built without a request
        return ""
    return f" (x-ms-client-request-id {rid})" if rid else ""
