"""hub prune: apply the retention settings now (a running hub does it every storage.retention.every_secs)."""

from __future__ import annotations

import asyncio
import time

import click

from hub.cli.common import config_option, load, main
from hub.cli.progress import progress


@main.command()
@config_option
def prune(config_path: str) -> None:
    """Delete done deliveries, dead letters, processed events and audit rows older than storage.retention allows."""
    from hub.cli.common import open_store
    from hub.retention import prune as run_prune
    from hub.store.retention import extent

    config = load(config_path)
    cfg = config.storage.retention

    async def run() -> None:
        store = open_store(config)
        await store.start()
        try:
            total, done = extent(store.conn), [0]
            with progress(total, "pruning") as advance:

                def step(n: int) -> None:
                    done[0] += n
                    advance(n)

                pruned = await run_prune(store, cfg, time.time(), step)
                advance(total - done[0])  # a walk stops at the first range too young to prune: the rest is done
        finally:
            await store.close()
        days = {"deliveries": cfg.deliveries_days, "dead": cfg.dead_days, "events": cfg.events_days,
                "audit": cfg.audit_days}
        keep = ", ".join(f"{what} {n:g} days" if n else f"{what} forever" for what, n in days.items())
        click.echo(f"pruned {pruned.deliveries} deliveries, {pruned.events} events and {pruned.audit} audit rows "
                   f"(keeping {keep})")

    asyncio.run(run())
