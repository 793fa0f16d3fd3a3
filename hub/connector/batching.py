"""Helpers for ``SupportsBatch`` connectors (SIEMs): ``BatchConnector``, encode items, split into requests, gzip.

A batch is acknowledged item by item: an item whose template fails is PERMANENT on its own; items
are split into requests by ``max_events`` and ``max_bytes``; each request's answer becomes one verdict
per item it carried (the connector decides, e.g. from Elasticsearch's per-item results).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from hub.connector import ConfigT, Connector, Item, Outcome, Verdict
from hub.connector.config import BatchConfig
from hub.connector.http import verdict_for_exception
from hub.errors import TemplateError


class BatchConnector(Connector[ConfigT]):
    """Many items per request, one verdict per item (``SupportsBatch``); a single delivery is a batch of one."""

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        return (await self.deliver_batch(client, [item]))[0]

    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        raise NotImplementedError


@dataclass(slots=True)  # not frozen: made per item, and a frozen __init__ costs several times more
class Encoded:
    index: int  # position in the batch the dispatcher passed
    item: Item
    data: bytes


def encode_one(item: Item, encode: Callable[[Item], bytes]) -> bytes | Verdict:
    """The item's bytes (made now, or already by the render process), or its own PERMANENT verdict when its
    template fails: one item's template error never fails the others."""
    if item.encoded is not None:
        return item.encoded
    try:
        return encode(item)
    except TemplateError as exc:
        return verdict_for_exception(exc)


def encode_all(items: Sequence[Item], encode: Callable[[Item], bytes]) -> tuple[list[Encoded], dict[int, Verdict]]:
    """``encode_one`` for every item: the encoded ones in order, and the failed ones' verdicts by position."""
    ok: list[Encoded] = []
    failed: dict[int, Verdict] = {}
    for i, item in enumerate(items):
        data = encode_one(item, encode)
        if isinstance(data, Verdict):
            failed[i] = data
        else:
            ok.append(Encoded(i, item, data))
    return ok, failed


def split(encoded: Sequence[Encoded], max_events: int, max_bytes: int, separator: int = 0,
          overhead: int = 0) -> list[list[Encoded]]:
    """Requests of at most ``max_events`` items and ``max_bytes`` bytes (items + separators + overhead).

    An item larger than ``max_bytes`` on its own still gets a request of its own: the target decides
    (usually a 413, which the connector reports as PERMANENT for that one item).
    """
    chunks: list[list[Encoded]] = []
    current: list[Encoded] = []
    size = overhead
    for enc in encoded:
        extra = len(enc.data) + (separator if current else 0)
        if current and (len(current) >= max_events or size + extra > max_bytes):
            chunks.append(current)
            current, size, extra = [], overhead, len(enc.data)
        current.append(enc)
        size += extra
    if current:
        chunks.append(current)
    return chunks


def gzip_body(data: bytes, level: int = 5) -> bytes:
    """gzip with mtime 0 (the same input always gives the same bytes)."""
    return gzip.compress(data, compresslevel=level, mtime=0)


GZIP_IN_THREAD = 64 * 1024


async def gzip_request(data: bytes, level: int = 5) -> bytes:
    """``gzip_body`` for a request about to go out: bodies over 64 KiB are compressed on a thread (zlib lets
    go of the GIL, so they compress on the other core while the loop renders the next batch)."""
    return await asyncio.to_thread(gzip_body, data, level) if len(data) > GZIP_IN_THREAD else gzip_body(data, level)


SendChunk = Callable[[list[Encoded]], Awaitable[list[Verdict]]]


async def deliver_chunks(items: Sequence[Item], encode: Callable[[Item], bytes], batch: BatchConfig,
                         send: SendChunk, *, separator: int = 0, overhead: int = 0) -> list[Verdict]:
    """Encode, split, send the chunks one after another and assemble one verdict per item, in order.

    ``send`` gets one chunk and returns one verdict per item in it. A chunk whose send raises (network
    error, timeout) gets that error's verdict for its items; chunks already answered keep theirs.
    """
    encoded, verdicts = encode_all(items, encode)
    for chunk in split(encoded, batch.max_events, batch.max_bytes, separator, overhead):
        try:
            results = await send(chunk)
        except Exception as exc:  # noqa: BLE001  (any failure of one chunk becomes its items' verdict)
            results = [verdict_for_exception(exc)] * len(chunk)
        if len(results) != len(chunk):
            raise RuntimeError(f"send returned {len(results)} verdicts for {len(chunk)} items")
        for enc, verdict in zip(chunk, results, strict=True):
            verdicts[enc.index] = verdict
    return [verdicts[i] for i in range(len(items))]


async def halves_on_413(chunk: list[Encoded], send: SendChunk, too_large: Callable[[list[Verdict]], bool]
                        ) -> list[Verdict]:
    """Send; when the target answers "too large" (413), split the chunk in halves and send each.

    A single item that is still too large is PERMANENT: no retry can make it fit.
    """
    verdicts = await send(chunk)
    if not too_large(verdicts):
        return verdicts
    if len(chunk) == 1:
        return [Verdict(Outcome.PERMANENT, "item is larger than the target accepts (HTTP 413)", status=413)]
    mid = len(chunk) // 2
    left, right = await asyncio.gather(halves_on_413(chunk[:mid], send, too_large),
                                       halves_on_413(chunk[mid:], send, too_large))
    return [*left, *right]
