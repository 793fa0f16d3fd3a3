"""``webhook``: a signed HTTPS POST per delivery, Standard Webhooks style (what Svix and others send).

Headers ``webhook-id`` (the delivery's idempotency key, stable across retries), ``webhook-timestamp``
and ``webhook-signature`` (v1 HMAC-SHA256 with the ``whsec_`` secret), so any Standard Webhooks
receiver (including a Findings Hub source with ``scheme: standard-webhooks``) can verify and
deduplicate. The body comes from hub/builtin_mappings/webhook/body.json.j2.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar

import orjson
from pydantic import Field, SecretStr

from hub import signatures
from hub.connector import Item, Outbound, TargetConfig
from hub.connector.http import HttpConnector
from hub.redact import is_secret_header
from hub.strict import Loc


class WebhookConfig(TargetConfig):
    url: str = Field(description="Where to POST.")
    secret: SecretStr | None = Field(None, description="whsec_ secret: sign with Standard Webhooks headers.")
    headers: dict[str, str] = Field(default_factory=dict, repr=False,
                                    description="Extra headers sent with every request.")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield from super().__repr_args__()
        yield "headers", _masked(self.headers)

    def public(self) -> dict[str, Any]:
        """Templates see an ``authorization`` header as masked, like ``hub render`` shows it: the value is a
        credential given in a plain dict, so the generic SecretStr stripping does not see it."""
        return {**super().public(), "headers": _masked(self.headers)}

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.secret is not None:
            try:
                signatures.build("standard-webhooks", [self.secret.get_secret_value()])
            except ValueError as exc:
                yield ("secret",), str(exc)


class WebhookConnector(HttpConnector[WebhookConfig]):
    name: ClassVar[str] = "webhook"
    Config = WebhookConfig
    payloads = ("body",)

    def render(self, item: Item) -> list[Outbound]:
        cfg = self.config
        body = orjson.dumps(self.mapping.render_json("body", self.context(item)))
        headers = {"content-type": "application/json", **cfg.headers, "webhook-id": item.idempotency_key}
        secret: frozenset[str] = frozenset()
        if cfg.secret is not None:
            scheme = signatures.build("standard-webhooks", [cfg.secret.get_secret_value()])
            headers.update(scheme.sign(body, time.time(), item.idempotency_key))
            secret = frozenset({"webhook-signature"})
        return [Outbound("POST", cfg.url, headers, body, secret | _secretish(cfg.headers))]


def _secretish(headers: dict[str, str]) -> frozenset[str]:
    return frozenset(h for h in headers if is_secret_header(h))


def _masked(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("********" if is_secret_header(k) else v) for k, v in headers.items()}
