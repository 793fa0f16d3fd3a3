"""``Hub``: one running instance, and the only place that knows every part.

It builds each part with the narrow things that part uses (the store, the metrics, the clock, a config section)
and wires them together with callbacks: the receiver, the API and the pollers wake the pipeline when they store an
event; the pipeline, the SLA job, status sync and the workers wake the dispatcher's workers when they add outbox
rows. Nothing imports this module except the app (hub/app.py) and the CLI (hub/cli/).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx

from hub import dead_letters, gauges
from hub.api.base import ApiContext
from hub.connector import Connector, SupportsStatus
from hub.dead_letters import DeadLetters
from hub.delivery import Dispatcher
from hub.delivery.dispatcher import render_pool_for
from hub.enrichment import Enrichable, Enricher, Enrichment
from hub.leader import CHECK_SECS, Leadership
from hub.metrics import Metrics
from hub.parsing import SourceParsers
from hub.pipeline import Pipeline
from hub.polling import Poller
from hub.receiver import Receiver
from hub.recorder import Recorder
from hub.registry import connector_class
from hub.remote_status import RemoteStatuses, dismiss_states
from hub.retention import prune
from hub.routing import Router
from hub.scheduler import Job, build_scheduler, crontab, every
from hub.settings import Settings
from hub.sla_breaches import SlaBreaches
from hub.store import open_store
from hub.sync import StatusSync
from hub.ui.context import ConsoleContext

log = logging.getLogger("hub")


def build_connector(config: Settings, name: str) -> Connector:
    cfg = config.targets[name]
    return connector_class(cfg.type)(name, cfg, config.mappings[name], config.resolve("."))


class Hub:
    def __init__(self, config: Settings, *, clock: Callable[[], float] = time.time,
                 transports: dict[str, httpx.AsyncBaseTransport] | None = None, scheduler: bool = True):
        self.config, self.clock = config, clock
        transports = transports or {}
        self.metrics = metrics = Metrics()
        self.store = store = open_store(config.store_location, busy_timeout_ms=config.storage.busy_timeout_ms,
                                        synchronous=config.storage.synchronous, pool_size=config.storage.pool_size,
                                        max_pending=config.server.max_pending_writes, on_batch=metrics.on_batch)
        router = Router(config.routes, metrics.route_errors)
        connectors = {name: build_connector(config, name) for name in config.targets}
        recorder = Recorder(router, frozenset(name for name, c in connectors.items() if c.work_items))
        remote = RemoteStatuses(recorder, config.sla, dismiss_states(config.targets))
        self.dispatcher = dispatcher = Dispatcher(
            connectors, store, metrics, clock=clock, lease_secs=config.pipeline.claim_lease_secs,
            route_dead=DeadLetters(router).route, transports=transports, shared=config.storage.url is not None,
            render_pool=render_pool_for(connectors, config.pipeline.render_process, config.resolve(".")))
        parsers = SourceParsers(config)
        self.enrichment = Enrichment({  # settings.py admits enrich: only where the adapter is Enrichable
            name: Enricher(name, src.enrich, cast(Enrichable, parsers.adapters[name]), clock=clock,
                           transport=transports.get(f"enrich:{name}"))
            for name, src in config.sources.items() if src.enrich is not None})
        self.leadership = leadership = Leadership(config.storage.url, on_change=self._leadership_changed)
        self.pipeline = pipeline = Pipeline(
            store, parsers, recorder, remote, config.sla, clock=clock,
            batch_events=config.pipeline.batch_events, processed=metrics.events_processed,
            on_deliveries=dispatcher.wake, enrich=self.enrichment, active=leadership.is_leader)
        self.sla = SlaBreaches(store, recorder, clock, dispatcher.wake)
        self.pollers = {name: Poller(name, src.poll, store, clock=clock, on_stored=pipeline.wake,
                                     transport=transports.get(f"poll:{name}"))
                        for name, src in config.sources.items() if src.poll is not None}
        self.syncs = {name: StatusSync(name, w.connector, store, clock=clock, client=w.client, apply=remote.apply,
                                       on_deliveries=dispatcher.wake)
                      for name, w in dispatcher.workers.items() if isinstance(w.connector, SupportsStatus)}
        self.receiver = Receiver(config.sources, config.server, store, metrics, clock=clock, on_stored=pipeline.wake)
        self.api = ApiContext(store, config.api, metrics, clock, on_stored=pipeline.wake,
                              wake_deliveries=dispatcher.wake)
        self.console = ConsoleContext(store, config, metrics, clock, connectors, on_stored=pipeline.wake,
                                      wake_deliveries=dispatcher.wake)
        self.use_scheduler = scheduler
        self.scheduler: Any = None
        self.started = False

    async def refresh_gauges(self) -> None:
        await gauges.refresh(self.store, self.metrics, self.config.targets, self.clock())

    def _leadership_changed(self, leads: bool) -> None:
        if leads:
            self.pipeline.wake()  # events other processes stored while no one led

    def jobs(self) -> list[Job]:
        """The periodic jobs: the hub's own, one per polled source, one per target that reads ticket status. With
        several processes on one database (PostgreSQL) the leader alone runs those that must run once (``once``), and
        every process checks leadership and looks for work the others stored, every second."""
        config, store, leadership = self.config, self.store, self.leadership

        def once(fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                if leadership.is_leader():
                    await fn()
            return run

        async def statistics() -> None:  # PostgreSQL's queue tables kept vacuumed and analyzed (postgres.py says why)
            from hub.store.postgres import refresh_statistics, vacuum_dead

            # beside the group commit, not in it: an ANALYZE of 100,000 events took 240 ms, and every write of
            # its batch (the pipeline's, the workers') waited for it; a VACUUM cannot run in a transaction at all
            await store.peek(lambda conn: (vacuum_dead(conn), refresh_statistics(conn)))

        async def peers() -> None:
            await leadership.check()
            self.pipeline.wake()
            self.dispatcher.wake()

        async def safety_net() -> None:  # in case a wake-up was missed
            self.pipeline.wake()
            self.dispatcher.wake()

        async def refresh() -> None:
            await self.refresh_gauges()

        async def retention() -> None:
            await prune(store, config.storage.retention, self.clock())

        async def report_dead() -> None:
            await dead_letters.report(store)

        jobs = [Job("safety-net", safety_net, every(config.pipeline.safety_net_secs)),
                Job("sla", once(self.sla.check), every(60)), Job("gauges", refresh, every(15)),
                Job("retention", once(retention), every(config.storage.retention.every_secs)),
                Job("dead-letters", once(report_dead), every(3600))]
        if config.storage.url is not None:
            jobs.append(Job("leader", peers, every(CHECK_SECS)))
            jobs.append(Job("statistics", once(statistics), every(15)))
        for name, poller in self.pollers.items():
            cfg = poller.cfg
            trigger = crontab(cfg.cron) if cfg.cron else every(cfg.every_secs or 300)
            jobs.append(Job(f"poll:{name}", once(poller.run), trigger))
        for name, sync in self.syncs.items():
            sync_cfg = getattr(self.dispatcher.workers[name].cfg, "sync", None)
            jobs.append(Job(f"sync:{name}", once(sync.run),
                            every(sync_cfg.interval_secs if sync_cfg is not None else 300)))
        return jobs

    async def start(self) -> None:
        if self.started:
            return
        await self.store.start()
        await self.leadership.check()
        await self.dispatcher.start()
        self.pipeline.start()
        if self.use_scheduler:
            self.scheduler = build_scheduler(self.jobs())
            self.scheduler.start()
        self.started = True
        log.info("hub started: %d source(s), %d route(s), %d target(s), store %s", len(self.config.sources),
                 len(self.config.routes), len(self.config.targets), self.store.location)

    @property
    def scheduler_running(self) -> bool:
        return bool(self.scheduler is not None and self.scheduler.running)

    async def aclose(self) -> None:
        """Stop what ``start`` started, and close the store, which the constructor opened whether or not the hub
        started (on PostgreSQL a hub built and never started left its connection pool to the garbage collector,
        whose thread could not join itself)."""
        if self.started:
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=False)
            await self.pipeline.close()
            await self.leadership.close()
            await self.enrichment.aclose()
            await self.dispatcher.close()
        await self.store.close()
        self.started = False
