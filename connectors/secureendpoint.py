"""``secureendpoint``: the loop back to SecureEndpoint. A finding a person closed as "won't fix" in its ticket is
dismissed at SecureEndpoint too: ``POST /v1/findings/{id}/dismiss`` with a reason naming the ticket.

It delivers ``finding.dismissed`` alone; route it from the SecureEndpoint source (``hub check-config`` refuses a
route from another platform's source). The finding's ``tool_id`` is SecureEndpoint's ``fnd_...`` id; the body is
hub/builtin_mappings/secureendpoint/dismiss.json.j2. SecureEndpoint answers errors as ``{"code", "message"}``:
401/403/404/400 are permanent, 429 and 5xx are retried (a 429 without Retry-After waits until X-RateLimit-Reset).
"""

from __future__ import annotations

import time
from typing import ClassVar

import httpx
import orjson
from pydantic import Field, SecretStr

from hub.connector import Item, Outbound, Outcome, TargetConfig, Verdict
from hub.connector.http import HttpConnector, classify_status, json_object
from hub.errors import TemplateError
from hub.ids import parse_uint
from hub.urlpath import segment


class SecureEndpointConfig(TargetConfig):
    token: SecretStr = Field(description="An se_live_... API key (Settings -> API Keys), sent as a bearer token.")


class SecureEndpointConnector(HttpConnector[SecureEndpointConfig]):
    name: ClassVar[str] = "secureendpoint"
    Config = SecureEndpointConfig
    default_url = "https://api.secureendpoint.io/v1"
    payloads = ("dismiss",)
    kinds = frozenset({"finding.dismissed"})
    default_rate_limit = 1.0  # the Standard plan's 60 requests a minute per key
    writes_back_to: ClassVar[str] = "secureendpoint"  # the adapter of the sources whose findings it may dismiss

    def render(self, item: Item) -> list[Outbound]:
        cfg = self.config
        tool_id = (item.finding or {}).get("tool_id")
        if not tool_id:
            raise TemplateError("the finding has no SecureEndpoint id (tool_id): only a SecureEndpoint source's "
                                "findings can be dismissed there")
        body = orjson.dumps(self.mapping.render_json("dismiss", self.context(item)))
        headers = {"content-type": "application/json", "authorization": f"Bearer {cfg.token.get_secret_value()}"}
        return [Outbound("POST", f"{self.base_url}/findings/{segment(tool_id)}/dismiss", headers, body,
                         frozenset({"authorization"}))]

    def classify(self, response: httpx.Response) -> Verdict:
        """SecureEndpoint's ``{code, message}`` in the reason; its rate-limit reset when a 429 has no Retry-After."""
        verdict = classify_status(response)
        if verdict.outcome is Outcome.OK:
            return verdict
        doc = json_object(response)
        status = response.status_code
        reason = f"HTTP {status} {doc['code']}: {doc.get('message', '')}" if doc.get("code") else verdict.reason
        if status in (401, 403):
            reason += f" (check token of target {self.target}: an API key of the organization, allowed to dismiss)"
        retry_after = verdict.retry_after
        reset = parse_uint(response.headers.get("x-ratelimit-reset", ""))
        if status == 429 and retry_after is None and reset is not None:
            retry_after = max(0.0, reset - time.time())
        return Verdict(verdict.outcome, reason, retry_after=retry_after, status=status)
