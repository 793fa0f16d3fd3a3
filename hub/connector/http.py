"""HTTP helpers for connectors: ``HttpConnector`` (the render -> send -> classify loop most ticketing
connectors are), classifying an answer or an exception into a ``Verdict``, Retry-After and error bodies.

Helpers, not contract: a connector may classify its vendor's answers its own way. The dispatcher uses
``verdict_for_exception`` for what a delivery raises; the pollers read Retry-After and error bodies the same way.
"""

from __future__ import annotations

import email.utils
import logging
import time
from typing import Any

import httpx

from hub.connector import ConfigT, Connector, Item, Outbound, Outcome, Verdict
from hub.ids import parse_uint


class HttpConnector(Connector[ConfigT]):
    """Render -> send each request -> classify; the first answer that is not OK decides."""

    async def send(self, client: httpx.AsyncClient, out: Outbound) -> httpx.Response:
        return await client.request(out.method, out.url, headers=out.headers, content=out.body)

    def classify(self, response: httpx.Response) -> Verdict:
        return classify_status(response)

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        verdict = Verdict(Outcome.OK, "nothing to send")
        for out in self.render(item):
            verdict = self.classify(await self.send(client, out))
            if verdict.outcome is not Outcome.OK:
                return verdict
        return verdict


def retry_after_secs(response: httpx.Response, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if (seconds := parse_uint(value)) is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (epoch seconds, or seconds from now) when ``X-RateLimit-Remaining`` is 0;
    None when the quota is not used up or the reset cannot be read."""
    remaining, reset = response.headers.get("x-ratelimit-remaining"), response.headers.get("x-ratelimit-reset")
    if remaining != "0" or not reset:
        return None
    try:
        value = float(reset)
    except ValueError:
        return None
    return value - time.time() if value > 1e9 else value


def short_body(response: httpx.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def classify_status(response: httpx.Response) -> Verdict:
    """Network errors, 408, 425, 429 and 5xx (but 501) retry; other 4xx are permanent."""
    code = response.status_code
    if 200 <= code < 300:
        return Verdict(Outcome.OK, f"HTTP {code}", status=code)
    if code in (408, 425, 429) or (code >= 500 and code != 501):
        return Verdict(Outcome.RETRY, f"HTTP {code}: {short_body(response, 200)}",
                       retry_after=retry_after_secs(response), status=code)
    return Verdict(Outcome.PERMANENT, f"HTTP {code}: {short_body(response)}", status=code)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is not JSON or not an object (an error page, a proxy's HTML)."""
    try:
        doc = response.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def verdict_for_exception(exc: BaseException, timeout: float | None = None) -> Verdict:
    """Exceptions while delivering: template errors are permanent, the network is retried."""
    from hub.errors import TemplateError

    if isinstance(exc, TemplateError):
        return Verdict(Outcome.PERMANENT, f"template error: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        after = f" after {timeout:g} s" if timeout else ""
        return Verdict(Outcome.RETRY, f"timeout{after} ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return Verdict(Outcome.RETRY, f"network error: {type(exc).__name__}: {exc}")
    logging.getLogger("hub.delivery").error("connector error: %s", exc, exc_info=exc)
    return Verdict(Outcome.RETRY, f"internal error: {type(exc).__name__}: {exc}")
