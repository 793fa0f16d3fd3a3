"""``file``: append one NDJSON line per delivery to a local file (archives, demos, log shippers).

Lines are written in batches with one write and one fsync; a delivery is done once its line is on
disk. Needs no credentials, which is why config.example.yaml routes to it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import ClassVar

import httpx
import orjson
from pydantic import Field

from hub.connector import Item, Outbound, Outcome, TargetConfig, Verdict
from hub.connector.batching import BatchConnector, encode_all
from hub.connector.config import BatchConfig


class FileConfig(TargetConfig):
    path: str = Field(description="File to append to, relative to the config file's folder.")
    fsync: bool = Field(True, description="fsync after each batch: done means on disk.")
    batch: BatchConfig = Field(BatchConfig(max_events=1000, timeout_secs=0, in_flight=1, compression=False),
                               description="Lines per write.")


class FileConnector(BatchConnector[FileConfig]):
    name: ClassVar[str] = "file"
    Config = FileConfig
    payloads = ("line",)

    @property
    def path(self) -> str:
        return str(self.base_dir / os.path.expanduser(self.config.path))

    def line(self, item: Item) -> bytes:
        """This item's line. Not named ``encode``: a batch connector with that method is ``SupportsEncode`` and has
        its big batches rendered in the render process, which a file target has never been."""
        doc = self.mapping.render_json("line", self.context(item))
        return orjson.dumps(doc) + b"\n"

    def render(self, item: Item) -> list[Outbound]:
        return [Outbound("APPEND", f"file://{self.path}", {}, self.line(item))]

    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        encoded, verdicts = encode_all(items, self.line)
        if encoded:
            try:
                await asyncio.to_thread(self._append, b"".join(e.data for e in encoded))
                ok = Verdict(Outcome.OK, f"appended to {self.config.path}")
            except OSError as exc:
                ok = Verdict(Outcome.RETRY, f"cannot write {self.config.path}: {exc.strerror}")
            verdicts.update((e.index, ok) for e in encoded)
        return [verdicts[i] for i in range(len(items))]

    def _append(self, data: bytes) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.config.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
