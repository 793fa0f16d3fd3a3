"""``Hub``: one running instance (config, store, pipeline, dispatcher, scheduler), shared by app and CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from hub.delivery import Dispatcher
from hub.metrics import Metrics
from hub.pipeline import Pipeline
from hub.settings import Settings
from hub.store import Store

log = logging.getLogger("hub")


class Hub:
    def __init__(self, config: Settings, *, clock: Callable[[], float] = time.time,
                 transports: dict[str, httpx.AsyncBaseTransport] | None = None, scheduler: bool = True):
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.store = Store(config.db_path, busy_timeout_ms=config.storage.busy_timeout_ms,
                           synchronous=config.storage.synchronous, max_pending=config.server.max_pending_writes,
                           on_batch=self.metrics.on_batch)
        self.pipeline = Pipeline(self)
        self.dispatcher = Dispatcher(self, transports)
        from hub.polling import Poller

        self.pollers = {name: Poller(self, name, (transports or {}).get(f"poll:{name}"))
                        for name, src in config.sources.items() if src.poll is not None}
        self.pipeline.on_deliveries = self.dispatcher.wake
        self.use_scheduler = scheduler
        self.scheduler: Any = None
        self.started = False

    def on_event_stored(self) -> None:
        """Called after an event is committed: process it now, not at the next safety-net tick."""
        self.pipeline.wake()

    def refresh_gauges(self) -> None:
        """Queue depth, oldest pending age and dead letters per target (on each scrape and every 15 s)."""
        from hub.ids import parse_iso
        from hub.store import deliveries as outbox

        stats, dead, now = outbox.queue_stats(self.store.conn), outbox.dead_stats(self.store.conn), self.clock()
        for name in self.config.targets:
            count, oldest = stats.get(name, (0, None))
            self.metrics.queue_depth.labels(name).set(count)
            self.metrics.oldest_pending.labels(name).set(max(0.0, now - parse_iso(oldest)) if oldest else 0)
            self.metrics.dead_letters.labels(name).set(dead.get(name, (0, None))[0])

    def extra_jobs(self) -> list[tuple[str, Any, Callable[[], Awaitable[Any]]]]:
        """Periodic jobs contributed by targets (status sync) and sources (polling): (id, trigger, coroutine fn)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        from hub.connector import SupportsStatus
        from hub.sync import sync_target

        jobs: list[tuple[str, Any, Callable[[], Awaitable[Any]]]] = []
        for name, poller in self.pollers.items():
            cfg = poller.cfg
            trigger = CronTrigger.from_crontab(cfg.cron, timezone="UTC") if cfg.cron else \
                IntervalTrigger(seconds=cfg.every_secs or 300)
            jobs.append((f"poll:{name}", trigger, poller.run))
        for name, worker in self.dispatcher.workers.items():
            if isinstance(worker.connector, SupportsStatus):
                sync = getattr(worker.cfg, "sync", None)
                every = sync.interval_secs if sync is not None else 300
                jobs.append((f"sync:{name}", IntervalTrigger(seconds=every),
                             lambda name=name: sync_target(self, name)))  # type: ignore[misc]
        return jobs

    async def start(self) -> None:
        if self.started:
            return
        await self.store.start()
        await self.dispatcher.start()
        self.pipeline.start()
        if self.use_scheduler:
            from hub.scheduler import build_scheduler

            self.scheduler = build_scheduler(self)
            self.scheduler.start()
        self.started = True
        log.info("hub started: %d source(s), %d route(s), %d target(s), store %s", len(self.config.sources),
                 len(self.config.routes), len(self.config.targets), self.store.path)

    @property
    def scheduler_running(self) -> bool:
        return bool(self.scheduler is not None and self.scheduler.running)

    async def aclose(self) -> None:
        if not self.started:
            return
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        await self.pipeline.close()
        await self.dispatcher.close()
        await self.store.close()
        self.started = False
