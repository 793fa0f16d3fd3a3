"""A fake Entra token endpoint and Azure Monitor Logs Ingestion API that check what the real ones check.

Token: ``POST /{tenant}/oauth2/v2.0/token`` (form client_id, client_secret, grant_type=client_credentials,
scope) -> ``{access_token, expires_in}``, Entra-style errors (``invalid_client`` + AADSTS codes).
Ingestion: ``POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`` with a valid, unexpired
Bearer token, JSON (optionally gzip) body that is an array of objects with valid column names, at most 1 MB
(413 above) -> 204. Errors carry ``{"error": {"code", "message"}}`` and ``x-ms-error-code``. One app serves
both, so a single ``httpx.ASGITransport`` stands for Azure in a Hub test. Rows the stream declaration would
silently drop or null (unknown columns, wrong types) are listed in ``state.type_errors``.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import re
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ISO_8601 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f9e8d7c-6b5a-4321-9fed-cba987654321"
CLIENT_SECRET = "s3cr3t~client~value"
DCR = "dcr-0123456789abcdef0123456789abcdef"
STREAM = "Custom-Findings"
SCOPES = {"https://monitor.azure.com//.default", "https://monitor.azure.com/.default"}
COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,44}")
RESERVED = {"_ResourceId", "id", "_SubscriptionId", "TenantId", "Type", "UniqueId", "Title"}
# The stream declaration of docs/connectors/sentinel.md (column -> Log Analytics type).
FINDINGS_COLUMNS = {
    "TimeGenerated": "datetime", "HubIdempotencyKey": "string", "HubDeliveryId": "string", "HubRoute": "string",
    "EventType": "string", "FindingId": "string", "Severity": "string", "FindingTitle": "string", "Source": "string",
    "Host": "string", "Cve": "string", "Cvss": "real", "Status": "string", "Details": "dynamic", "EventId": "string",
    "VerifiedBy": "string", "ContentType": "string", "RawEvent": "dynamic",
}


@dataclass
class State:
    clock: Callable[[], float]
    expires_in: int = 3599
    max_bytes: int = 1_048_576
    forbidden: bool = False  # the app lacks Monitoring Metrics Publisher on the DCR
    reject_tokens: bool = False  # every token is refused (e.g. issued for another audience)
    script: list[Any] = field(default_factory=list)  # ingestion answers to give first: status or (status, headers)
    token_script: list[Any] = field(default_factory=list)
    poison: set[str] = field(default_factory=set)  # HubIdempotencyKeys whose row makes the call fail with 400
    token_delay: float = 0.01  # Entra takes a while: concurrent callers overlap
    token_requests: int = 0
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (clock)
    calls: list[dict[str, Any]] = field(default_factory=list)  # every ingestion request: status, encoding, rows
    rows: list[dict[str, Any]] = field(default_factory=list)  # rows accepted (204)
    type_errors: list[str] = field(default_factory=list)

    def revoke(self) -> None:
        self.tokens.clear()

    def keys(self) -> list[str]:
        return [r.get("HubIdempotencyKey", "") for r in self.rows]


def _azure_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers={"x-ms-error-code": code, **(headers or {})})


def _aad_error(status: int, error: str, aadsts: int, text: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": f"AADSTS{aadsts}: {text} Trace ID: {uuid.uuid4()}",
                         "error_codes": [aadsts]}, status_code=status)


def _scripted(step: Any) -> Response:
    status, headers = step if isinstance(step, tuple) else (step, {})
    code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
    return _azure_error(status, code, "scripted failure", headers)


def fake_sentinel(clock: Callable[[], float] = time.monotonic, columns: dict[str, str] | None = None,
                  **settings: Any) -> Starlette:
    """The app; ``app.state.azure`` is the State tests assert on and steer."""
    state = State(clock, **settings)
    declared = FINDINGS_COLUMNS if columns is None else columns
    serial = itertools.count(1)

    async def token(request: Request) -> Response:
        state.token_requests += 1
        await asyncio.sleep(state.token_delay)
        if state.token_script:
            return _scripted(state.token_script.pop(0))
        if request.path_params["tenant"] != TENANT:
            return _aad_error(400, "invalid_request", 90002, f"Tenant '{request.path_params['tenant']}' not found.")
        if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return _aad_error(400, "invalid_request", 900144, "The request body must contain 'grant_type'.")
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", 70003, "The grant type is not supported.")
        if form.get("client_id") != CLIENT_ID:
            return _aad_error(400, "unauthorized_client", 700016, "Application was not found in the directory.")
        if form.get("client_secret") != CLIENT_SECRET:
            return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        if form.get("scope") not in SCOPES:
            return _aad_error(400, "invalid_scope", 70011, "The provided value for scope is not valid.")
        access = f"eyJ0eXAi.fake-{next(serial)}.{uuid.uuid4().hex}"
        state.tokens[access] = state.clock() + state.expires_in
        return JSONResponse({"token_type": "Bearer", "expires_in": state.expires_in,
                             "ext_expires_in": state.expires_in, "access_token": access})

    async def ingest(request: Request) -> Response:
        call: dict[str, Any] = {"status": 0, "encoding": request.headers.get("content-encoding"), "rows": 0,
                                "request_id": request.headers.get("x-ms-client-request-id")}
        state.calls.append(call)
        response = await _ingest(request, call)
        call["status"] = response.status_code
        return response

    async def _ingest(request: Request, call: dict[str, Any]) -> Response:
        if request.query_params.get("api-version") != "2023-01-01":
            return _azure_error(400, "UnsupportedApiVersion", "api-version must be 2023-01-01")
        scheme, _, access = request.headers.get("authorization", "").partition(" ")
        expiry = state.tokens.get(access)
        if scheme != "Bearer" or expiry is None or state.reject_tokens or state.clock() >= expiry:
            return _azure_error(401, "InvalidToken", "The access token is missing, invalid or expired.",
                                {"www-authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/"'})
        if request.path_params["dcr"] != DCR:
            return _azure_error(404, "NotFound", f"Data collection rule {request.path_params['dcr']} not found.")
        if request.path_params["stream"] != STREAM:
            return _azure_error(404, "InvalidStream", f"Stream {request.path_params['stream']} is not declared.")
        if state.forbidden:
            return _azure_error(403, "OperationFailed", f"The authentication token provided does not have access "
                                f"to ingest data for the data collection rule with immutable Id '{DCR}'.")
        if state.script:
            return _scripted(state.script.pop(0))
        if (rid := call["request_id"]) is not None:
            try:
                uuid.UUID(rid)
            except ValueError:
                return _azure_error(400, "InvalidRequestId", "x-ms-client-request-id must be a GUID.")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return _azure_error(415, "UnsupportedMediaType", "Content-Type must be application/json.")
        body = await request.body()
        if len(body) > state.max_bytes:
            return _azure_error(413, "ContentLengthLimitExceeded", "The request is larger than 1 MB.")
        if call["encoding"] == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error):
                return _azure_error(400, "InvalidContentEncoding", "The body is not valid gzip.")
        elif call["encoding"] is not None:
            return _azure_error(400, "InvalidContentEncoding", "Only gzip is supported.")
        call["bytes"] = len(body)
        if len(body) > state.max_bytes:
            return _azure_error(413, "ContentLengthLimitExceeded", "The request is larger than 1 MB.")
        try:
            rows = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _azure_error(400, "InvalidPayload", "The body is not valid JSON.")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return _azure_error(400, "InvalidPayload", "The body must be a JSON array of objects.")
        for row in rows:
            bad = [k for k in row if k in RESERVED or not COLUMN.fullmatch(k)]
            if bad:
                return _azure_error(400, "InvalidColumnName", f"Column name {bad[0]!r} is not valid.")
            if row.get("HubIdempotencyKey") in state.poison:
                return _azure_error(400, "InvalidPayload", "A record could not be parsed against the stream.")
        for row in rows:
            state.type_errors.extend(_type_errors(row, declared))
        call["rows"] = len(rows)
        state.rows.extend(rows)
        return Response(status_code=204)

    app = Starlette(routes=[
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/dataCollectionRules/{dcr}/streams/{stream}", ingest, methods=["POST"]),
    ])
    app.state.azure = state
    return app


def _type_errors(row: dict[str, Any], declared: dict[str, str]) -> list[str]:
    """What the DCR would drop (undeclared columns) or null (wrong types), said out loud."""
    errors = []
    for key, value in row.items():
        kind = declared.get(key)
        if kind is None:
            errors.append(f"{key}: not declared in the stream")
        elif value is None or kind == "dynamic":
            continue
        elif (kind == "string" and not isinstance(value, str)) or \
                (kind == "real" and (isinstance(value, bool) or not isinstance(value, (int, float)))):
            errors.append(f"{key}: {value!r} is not {kind}")
        elif kind == "datetime" and not (isinstance(value, str) and re.fullmatch(ISO_8601, value)):
            errors.append(f"{key}: {value!r} is not an ISO 8601 datetime")
    if not row.get("TimeGenerated"):
        errors.append("TimeGenerated: missing")
    return errors


class Outage(httpx.AsyncBaseTransport):
    """In front of the fake: while ``down``, every request fails to connect (the endpoint is unreachable)."""

    def __init__(self, app: Starlette, down: bool = False):
        self.inner = httpx.ASGITransport(app=app)
        self.down = down
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("connection refused (scripted outage)", request=request)
        return await self.inner.handle_async_request(request)
