"""The connector contract as checks a test can run over any connector type, built-in or a plugin's.

A ``ContractEntry`` says how to build one connector (a minimal valid config with distinctive secrets), which golden
example to deliver, how the vendor answers (its strict fake) and what the vendor's own 400 looks like. ``Forced`` sits
in front of the fake and answers each delivery request with a forced status, or lets it reach the fake and then loses
the answer. Each ``check_*`` raises AssertionError with what broke; ``CHECKS`` lists them all, so a plugin's test is:

    @pytest.mark.parametrize("check", CHECKS)
    async def test_contract(check): await check(MY_ENTRY)

What the dispatcher relies on (docs/writing-connectors.md): 429 with Retry-After -> RETRY with that delay; 5xx ->
RETRY; the vendor's 400 -> PERMANENT with a reason; a lost answer -> RETRY (an httpx transport error out of
``deliver`` is allowed: the dispatcher makes it RETRY with ``verdict_for_exception``; any other exception is a bug);
one verdict per item of a batch; no secret in the repr, any reason, any log record or the ``hub render`` preview.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from click.testing import CliRunner

from hub.cli import main
from hub.connector import Connector, Item, Outcome, Ref, SupportsBatch, Verdict
from hub.connector.http import verdict_for_exception
from hub.goldens import item_for
from hub.mappings import BUILTIN_ROOT, example_from, load_mapping
from hub.registry import connector_class

BATCH = 3  # items per batch for a batching connector


@dataclass(frozen=True)
class ContractEntry:
    type_name: str
    config: dict[str, Any]  # the target block, without ``type``; secrets given literally
    secrets: tuple[str, ...]  # every secret value in ``config``: none may show anywhere
    vendor: Callable[[], Any]  # a fresh ASGI app of the vendor (its strict fake)
    invalid: Callable[[], httpx.Response]  # the vendor's own 400 for a request it rejects
    case: str = "created"  # golden example (<mapping>/examples/<case>.finding.json) delivered
    mapping: Path | None = None  # the mapping folder; default: the built-in one
    delivery: Callable[[httpx.Request], bool] = field(default=lambda request: True)  # requests the script applies to
    connector: type[Connector] | None = None  # the class itself; default: the type's registered class (entry point)

    @property
    def folder(self) -> Path:
        return self.mapping or BUILTIN_ROOT / self.type_name


class Forced(httpx.AsyncBaseTransport):
    """In front of the vendor: every delivery request (``entry.delivery``) gets ``step``: an int status, (status,
    {headers}), a Response factory, or ``lost:<Exception name>`` (the vendor gets and handles the request, then the
    answer is lost). Other requests (a token endpoint, a lookup) reach the vendor."""

    def __init__(self, entry: ContractEntry, step: Any):
        self.inner = httpx.ASGITransport(app=entry.vendor())
        self.entry, self.step = entry, step
        self.forced = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.entry.delivery(request):
            return await self.inner.handle_async_request(request)
        self.forced += 1
        step = self.step
        if isinstance(step, str) and step.startswith("lost:"):
            response = await self.inner.handle_async_request(request)
            await response.aread()
            error = {"ReadTimeout": httpx.ReadTimeout, "RemoteProtocolError": httpx.RemoteProtocolError}[step[5:]]
            raise error("the answer was lost after the vendor took the request", request=request)
        if callable(step):
            response = step()
            return httpx.Response(response.status_code, headers=response.headers, content=response.content,
                                  request=request)
        status, headers = step if isinstance(step, tuple) else (step, {})
        return httpx.Response(status, headers=headers, json={"error": "forced by the contract test"}, request=request)


def build(entry: ContractEntry, target: str = "contract") -> Connector:
    cls = entry.connector or connector_class(entry.type_name)
    config = cls.Config.model_validate({"type": entry.type_name, **entry.config})
    return cls(target, config, load_mapping(entry.type_name, entry.folder, cls.payloads))


def items(entry: ContractEntry, connector: Connector) -> list[Item]:
    """The golden example as the dispatcher would pass it: BATCH distinct items for a batching connector, else one;
    a work-item connector gets the ``creating`` ref the dispatcher writes before a create."""
    doc = orjson.loads((entry.folder / "examples" / f"{entry.case}.finding.json").read_bytes())
    base = item_for(example_from(entry.case, doc), connector.target)
    out = []
    for n in range(BATCH if isinstance(connector, SupportsBatch) else 1):
        finding = {**base.finding, "id": f"{base.finding['id']}{n}"} if base.finding else None
        ref = Ref(finding["id"], connector.target) if connector.work_items and finding else None
        out.append(replace(base, id=f"dlv_contract_{n}", idempotency_key=f"fh_contract_{n:036d}", finding=finding,
                           ref=ref))
    return out


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(logging.Formatter("%(name)s %(message)s").format(record) + repr(record.__dict__))


async def deliver(entry: ContractEntry, step: Any) -> tuple[list[Verdict], list[str], Forced]:
    """Deliver the entry's items through ``Forced(step)``: (verdicts, the text of every log record, the transport).
    An exception out of deliver/deliver_batch becomes verdicts the way the dispatcher makes them."""
    connector = build(entry)
    batch = items(entry, connector)
    transport = Forced(entry, step)
    handler, root = _Records(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        async with connector.client(transport) as client:
            try:
                if isinstance(connector, SupportsBatch):
                    verdicts = await connector.deliver_batch(client, batch)
                else:
                    verdicts = [await connector.deliver(client, batch[0])]
            except httpx.TransportError as exc:  # allowed by the contract: the dispatcher retries it
                verdicts = [verdict_for_exception(exc, connector.config.request.timeout_secs)] * len(batch)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert len(verdicts) == len(batch), f"{len(verdicts)} verdicts for {len(batch)} items"
    assert transport.forced, "no request reached the vendor's delivery endpoint"
    _no_secrets(entry, "a reason", [v.reason for v in verdicts])
    _no_secrets(entry, "a log record", handler.texts)
    return verdicts, handler.texts, transport


def _no_secrets(entry: ContractEntry, where: str, texts: Sequence[str]) -> None:
    for text in texts:
        for secret in entry.secrets:
            assert secret not in text, f"{entry.type_name}: a secret shows in {where}: {text[:300]}"


def _outcomes(verdicts: list[Verdict]) -> list[tuple[Outcome, str]]:
    return [(v.outcome, v.reason) for v in verdicts]


async def check_rate_limited(entry: ContractEntry) -> None:
    """429 + Retry-After: 7 -> RETRY after 7 s, for every item, with status 429: the dispatcher pauses the whole
    target only for a verdict that says 429 (hub/delivery.py)."""
    verdicts, _, _ = await deliver(entry, (429, {"retry-after": "7"}))
    assert all(v.outcome is Outcome.RETRY and v.retry_after == 7 and v.status == 429 for v in verdicts), \
        [(v.outcome, v.retry_after, v.status, v.reason) for v in verdicts]


async def check_unavailable(entry: ContractEntry) -> None:
    """503 -> RETRY."""
    verdicts, _, _ = await deliver(entry, 503)
    assert all(v.outcome is Outcome.RETRY for v in verdicts), _outcomes(verdicts)


async def check_rejected(entry: ContractEntry) -> None:
    """The vendor's own 400 -> PERMANENT, with a reason that says something."""
    verdicts, _, _ = await deliver(entry, entry.invalid)
    assert all(v.outcome is Outcome.PERMANENT and v.reason.strip() for v in verdicts), _outcomes(verdicts)


async def check_lost_answer(entry: ContractEntry) -> None:
    """The request reached the vendor, the answer did not come back: RETRY, never PERMANENT."""
    for lost in ("lost:ReadTimeout", "lost:RemoteProtocolError"):
        verdicts, _, _ = await deliver(entry, lost)
        assert all(v.outcome is Outcome.RETRY for v in verdicts), (lost, _outcomes(verdicts))


async def check_secrets_hidden(entry: ContractEntry) -> None:
    """No secret in the connector's repr or its config's, nor in the ``hub render`` preview (secret headers masked)."""
    connector = build(entry)
    _no_secrets(entry, "a repr", [repr(connector), repr(connector.config), str(connector.config.public())])
    _no_secrets(entry, "a rendered request's URL or body",
                [o.url + o.body.decode("utf-8", "replace") for o in connector.render(items(entry, connector)[0])])
    _no_secrets(entry, "the render preview", [render_preview(entry)])


def render_preview(entry: ContractEntry) -> str:
    """``hub render --target contract`` of the entry's example, run through the CLI on a config file of its own; for
    a class given directly (not registered, so the CLI cannot find it) the same lines, built the way the CLI does."""
    import tempfile

    if entry.connector is not None:
        connector = build(entry)
        return "\n".join(f"{o.method} {o.url}\n{o.masked_headers()}\n{o.body.decode('utf-8', 'replace')}"
                         for o in connector.render(items(entry, connector)[0]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hub.yaml"
        target = {"type": entry.type_name, **entry.config, **({"mapping": str(entry.mapping)} if entry.mapping else {})}
        path.write_text(yaml.safe_dump({"storage": {"path": str(Path(tmp) / "hub.db")},
                                        "targets": {"contract": target}}))
        example = entry.folder / "examples" / f"{entry.case}.finding.json"
        result = CliRunner().invoke(main, ["render", "--config", str(path), "--target", "contract",
                                           "--finding", str(example)])
    assert result.exit_code == 0, result.output
    assert "********" in result.output or not entry.secrets, f"no masked header in:\n{result.output}"
    return result.output


CHECKS: tuple[Callable[[ContractEntry], Awaitable[None]], ...] = (
    check_rate_limited, check_unavailable, check_rejected, check_lost_answer, check_secrets_hidden)
