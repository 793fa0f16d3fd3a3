"""Builds the AsyncIOScheduler from a list of jobs; nothing else (hub/runtime.py says which jobs there are).

Jobs are rebuilt from config at every start (memory job store); the store records what is due, so
a missed run is harmless. ``max_instances=1`` means a job never runs twice at once.

Each job's id and name say what it does (``safety-net``, ``sla``, ``gauges``, ``retention``, ``dead-letters``,
``poll:<source>``, ``sync:<target>``): APScheduler names a job after its function otherwise, and every job
here runs through ``_guarded``'s ``run``. Its per-run INFO lines are silenced by hub/logs.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("hub.scheduler")
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}


@dataclass(frozen=True)
class Job:
    id: str
    run: Callable[[], Awaitable[Any]]
    trigger: BaseTrigger


def every(seconds: float) -> BaseTrigger:
    return IntervalTrigger(seconds=seconds)


def crontab(expression: str) -> BaseTrigger:
    return CronTrigger.from_crontab(expression, timezone="UTC")


def _guarded(name: str, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await fn()
        except Exception:
            log.exception("job %s failed; it runs again at its next time", name)

    return run


def build_scheduler(jobs: list[Job]) -> AsyncIOScheduler:
    sched = AsyncIOScheduler(timezone="UTC", job_defaults=JOB_DEFAULTS)
    for job in jobs:
        sched.add_job(_guarded(job.id, job.run), job.trigger, id=job.id, name=job.id)
    return sched
