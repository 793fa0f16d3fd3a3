"""Linear webhooks: an issue's state changed in Linear -> the finding it tracks follows at once.

Linear signs each webhook with ``Linear-Signature``, the hex HMAC-SHA256 of the raw body with the
webhook's signing secret, so the source verifies with ``scheme: hmac-sha256``; the body carries
``webhookTimestamp`` (epoch milliseconds), which must be within 60 s of when the hub received it,
as Linear asks receivers to check (replays are refused). Payloads handled::

    {"action": "update", "type": "Issue", "data": {"id", "identifier", "state": {"type", "name"}, ...},
     "url": "https://linear.app/...", "webhookTimestamp": 1764150000000, ...}

Each becomes a ticket status for the ``linear`` target named in ``options.target``; a state of type
``completed`` or ``canceled`` resolves the finding linked to that issue (``resolved_by`` the target,
no echo back). Other types and actions (comments, issue creation, deletion) parse to nothing.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field

from hub.adapters import Parsed, StoredEvent
from hub.connector import RemoteStatus
from hub.errors import AdapterError
from hub.ids import parse_iso
from hub.strict import Name, StrictModel

CLOSED = frozenset({"completed", "canceled"})  # WorkflowState.type values that mean "closed"
MAX_AGE_SECS = 60.0


class LinearOptions(StrictModel):
    target: Name = Field(description="Name of the linear target whose issues these webhooks report on.")


class LinearAdapter:
    """Linear ``Issue`` webhooks -> ticket statuses for one linear target (no findings of their own)."""

    name: ClassVar[str] = "linear"
    Options: ClassVar[type[StrictModel] | None] = LinearOptions

    def __init__(self, source: str, options: StrictModel | None):
        if not isinstance(options, LinearOptions):
            raise AdapterError("the linear adapter needs options: {target: <name of the linear target>}")
        self.source, self.target = source, options.target

    def parse(self, event: StoredEvent) -> Parsed:
        """One stored Linear webhook -> the issue's state for ``options.target``, or nothing."""
        body = event.data
        if not isinstance(body, dict):
            raise AdapterError("Linear webhook body is not a JSON object")
        check_age(body.get("webhookTimestamp"), event.received_at)
        if body.get("type") != "Issue" or body.get("action") != "update":
            return Parsed()
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise AdapterError("Linear Issue webhook: data.id is missing")
        state = data.get("state")
        if not isinstance(state, dict) or not isinstance(state.get("type"), str):
            raise AdapterError(f"Linear Issue webhook for {data['id']}: data.state.type is missing")
        url = data.get("url") if isinstance(data.get("url"), str) else body.get("url")
        status = RemoteStatus(data["id"], str(state.get("name") or state["type"]), state["type"] in CLOSED,
                              url if isinstance(url, str) else None)
        return Parsed(statuses={self.target: [status]})


def check_age(stamp: Any, received_at: str) -> None:
    """Refuse a webhook whose signed timestamp is more than 60 s away from when the hub received it."""
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        raise AdapterError("Linear webhook: webhookTimestamp (epoch milliseconds) is missing")
    try:
        received = parse_iso(received_at)
    except ValueError as exc:
        raise AdapterError(f"stored event has an unreadable received_at: {exc}") from None
    age = received - stamp / 1000
    if abs(age) > MAX_AGE_SECS:
        when = f"{age:.0f} s before" if age > 0 else f"{-age:.0f} s after"
        raise AdapterError(f"Linear webhook: webhookTimestamp is {when} the hub received it (more than "
                           f"{MAX_AGE_SECS:.0f} s): refused as a possible replay")
