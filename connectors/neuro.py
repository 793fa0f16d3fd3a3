"""``neuro``: the loop back to NEURO. A finding a person closed as "won't fix" in its ticket gets the status of a
dismissed finding at NEURO too: ``PUT /findings/{id}`` with ``{"status": ...}``.

It delivers ``finding.dismissed`` alone; route it from the NEURO source (``hub check-config`` refuses a route from
another platform's source). The finding's ``tool_id`` is NEURO's finding id; the body is
hub/builtin_mappings/neuro/update.json.j2 (the status sent is its ``vars.status``, ``Accepted Risk``). NEURO wraps
answers as ``{"success", "data" | "error": {"code", "message"}}``: ``success: false`` is permanent whatever the
HTTP status says, 429 and 5xx are retried.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import orjson
from pydantic import Field, SecretStr

from hub.connector import Item, Outbound, Outcome, TargetConfig, Verdict
from hub.connector.http import HttpConnector, classify_status, json_object
from hub.errors import TemplateError
from hub.urlpath import segment


class NeuroConfig(TargetConfig):
    url: str = Field(description="The tenant's API base URL, e.g. https://acme.nforged.com/api/v1.")
    token: SecretStr = Field(description="An API token (Settings -> API Access), sent as a bearer token.")


class NeuroConnector(HttpConnector[NeuroConfig]):
    name: ClassVar[str] = "neuro"
    Config = NeuroConfig
    payloads = ("update",)
    kinds = frozenset({"finding.dismissed"})
    default_rate_limit = 10.0  # far below NEURO's 1,000 a minute: write-back is a trickle
    writes_back_to: ClassVar[str] = "neuro"  # the adapter of the sources whose findings it may update

    def render(self, item: Item) -> list[Outbound]:
        cfg = self.config
        tool_id = (item.finding or {}).get("tool_id")
        if not tool_id:
            raise TemplateError("the finding has no NEURO id (tool_id): only a NEURO source's findings can be "
                                "updated there")
        body = orjson.dumps(self.mapping.render_json("update", self.context(item)))
        headers = {"content-type": "application/json", "authorization": f"Bearer {cfg.token.get_secret_value()}"}
        return [Outbound("PUT", f"{self.base_url}/findings/{segment(tool_id)}", headers, body,
                         frozenset({"authorization"}))]

    def classify(self, response: httpx.Response) -> Verdict:
        """NEURO's envelope decides: an error's code and message in the reason, ``success: false`` never OK."""
        verdict = classify_status(response)
        doc = json_object(response)
        error: dict[str, Any] = doc["error"] if isinstance(doc.get("error"), dict) else {}
        if verdict.outcome is Outcome.OK and doc.get("success") is not False:
            return verdict
        status = response.status_code
        reason = f"HTTP {status} {error['code']}: {error.get('message', '')}" if error.get("code") else verdict.reason
        if status in (401, 403):
            reason += f" (check token of target {self.target}: a NEURO API token allowed to edit findings)"
        outcome = Outcome.PERMANENT if verdict.outcome is Outcome.OK else verdict.outcome
        return Verdict(outcome, reason, retry_after=verdict.retry_after, status=status)
