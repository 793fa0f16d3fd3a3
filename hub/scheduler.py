"""Builds the AsyncIOScheduler and registers the periodic jobs; nothing else.

Jobs are rebuilt from config at every start (memory job store); the store records what is due, so
a missed run is harmless. ``max_instances=1`` means a job never runs twice at once.

Each job's id and name say what it does (``safety-net``, ``sla``, ``gauges``, ``retention``, ``dead-letters``,
``poll:<source>``, ``sync:<target>``): APScheduler names a job after its function otherwise, and every job
here runs through ``_guarded``'s ``run``. Its per-run INFO lines are silenced by hub/logs.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub import retention

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger("hub.scheduler")
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}


def _guarded(name: str, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await fn()
        except Exception:
            log.exception("job %s failed; it runs again at its next time", name)

    return run


def build_scheduler(hub: Hub) -> AsyncIOScheduler:
    sched = AsyncIOScheduler(timezone="UTC", job_defaults=JOB_DEFAULTS)

    def add(job_id: str, fn: Callable[[], Awaitable[Any]], trigger: Any, **trigger_args: Any) -> None:
        sched.add_job(_guarded(job_id, fn), trigger, id=job_id, name=job_id, **trigger_args)

    async def safety_net() -> None:
        hub.pipeline.wake()
        hub.dispatcher.wake()

    async def gauges() -> None:
        hub.refresh_gauges()

    add("safety-net", safety_net, "interval", seconds=hub.config.pipeline.safety_net_secs)
    add("sla", hub.pipeline.check_sla, "interval", seconds=60)
    add("gauges", gauges, "interval", seconds=15)
    add("retention", lambda: retention.run(hub), "interval", seconds=hub.config.storage.retention.every_secs)
    add("dead-letters", lambda: retention.report_dead(hub), "interval", seconds=3600)
    for job_id, trigger, fn in hub.extra_jobs():
        add(job_id, fn, trigger)
    return sched
