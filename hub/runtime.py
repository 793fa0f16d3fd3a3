"""``Hub``: one running instance (config, store, metrics, background work), shared by app and CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hub.config import HubConfig
from hub.metrics import Metrics
from hub.store import Store

log = logging.getLogger("hub")


class Hub:
    def __init__(self, config: HubConfig, *, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.store = Store(config.db_path, busy_timeout_ms=config.storage.busy_timeout_ms,
                           synchronous=config.storage.synchronous, max_pending=config.server.max_pending_writes,
                           on_batch=self.metrics.on_batch)
        self.started = False
        self._listeners: list[Callable[[], None]] = []

    async def start(self) -> None:
        if self.started:
            return
        await self.store.start()
        self.started = True
        log.info("hub started: %d source(s), store %s", len(self.config.sources), self.store.path)

    def on_event_stored(self) -> None:
        """Called after an event is committed; the pipeline subscribes to process it at once."""
        for listener in self._listeners:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    async def aclose(self) -> None:
        if self.started:
            await self.store.close()
            self.started = False
