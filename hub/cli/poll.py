"""hub poll: run one pull of a polled source now (a running hub processes the stored pages)."""

from __future__ import annotations

import asyncio

import click

from hub.cli.common import config_option, fail, load, main


@main.command()
@config_option
@click.option("--source", required=True, help="A source with a poll: block.")
def poll(config_path: str, source: str) -> None:
    """Pull the source's API once now; pages are stored as events like a scheduled run would."""
    from hub.runtime import Hub

    config = load(config_path)
    if source not in config.sources or config.sources[source].poll is None:
        polled = sorted(n for n, s in config.sources.items() if s.poll is not None)
        fail(f"no polled source named {source!r} (polled sources: {', '.join(polled) or 'none'})", 2)

    async def run() -> None:
        hub = Hub(config, scheduler=False)
        await hub.store.start()  # store only: pages are processed by the running hub (or the next start)
        try:
            report = await hub.pollers[source].run()
        finally:
            await hub.store.close()
        state = "complete" if report.complete else f"stopped: {report.error}"
        click.echo(f"{source}: {report.pages} page(s) read, {report.stored} new, {state}")
        if not report.complete:
            raise SystemExit(1)

    asyncio.run(run())
