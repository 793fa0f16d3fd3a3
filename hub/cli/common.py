"""What every ``hub`` subcommand shares: the command group, loading the config, opening the store, printing."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click
import orjson

from hub.errors import ConfigError, HubError
from hub.settings import Settings, load_config

if TYPE_CHECKING:
    from hub.store import Store

CONFIG_HELP = "Config file (default ./hub.yaml)."
config_option = click.option("--config", "config_path", default="./hub.yaml", show_default=False, help=CONFIG_HELP,
                             type=click.Path(dir_okay=False))


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load(path: str, notes: bool = True) -> Settings:
    """The config, or exit 2 listing its problems. Its notes (a secret from the file's default) are printed
    once, to stderr, unless ``notes`` is False: ``hub serve`` logs them instead, in the log's own format."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {path}", err=True)
        sys.exit(2)
    for note in config.notes if notes else ():
        click.echo(f"note: {note}", err=True)
    return config


def setup_logging(level: str, fmt: str = "text", public_url: str | None = None) -> None:
    from hub import logs

    logs.setup(level, fmt, public_url=public_url)


def echo_json_lines(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        click.echo(orjson.dumps(row).decode())


def listed_elsewhere(rows: list[dict[str, Any]], as_json: bool, what: str) -> bool:
    """The part every list command shares: JSON lines, or "no <what>"; True when that said it all and the
    caller's table is not wanted."""
    if as_json:
        echo_json_lines(rows)
        return True
    if not rows:
        click.echo(f"no {what}")
        return True
    return False


def dumps(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="findings-hub")
def main() -> None:
    """Findings Hub: verified webhook intake, deduplicated findings, delivery to ticketing and SIEMs."""


def open_store(config: Settings) -> Store:
    from hub.store import open_store as open_at

    try:
        store = open_at(config.store_location, busy_timeout_ms=config.storage.busy_timeout_ms, pool_size=2)
    except HubError as exc:
        fail(str(exc))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # closed when the command ends: PostgreSQL's pool has threads and connections to end
        ctx.call_on_close(store.shutdown)
    return store
