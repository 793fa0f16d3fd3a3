"""The ``hub`` command. The only place where errors become text and exit codes.

Exit codes: 0 success, 1 the operation failed (a request was refused, a record is missing),
2 invalid configuration or arguments.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from hub import samples
from hub.config import HubConfig, load_config
from hub.errors import ConfigError, HubError
from hub.ids import new_id

CONFIG_HELP = "Config file (default ./hub.yaml)."
config_option = click.option("--config", "config_path", default="./hub.yaml", show_default=False, help=CONFIG_HELP,
                             type=click.Path(dir_okay=False))


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load(path: str) -> HubConfig:
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {path}", err=True)
        sys.exit(2)
    for note in config.notes:
        click.echo(f"note: {note}", err=True)
    return config


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)


def dumps(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="findings-hub")
def main() -> None:
    """Findings Hub: verified webhook intake, deduplicated findings, delivery to ticketing and SIEMs."""


@main.command()
@config_option
@click.option("--host", help="Override server.host.")
@click.option("--port", type=int, help="Override server.port.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--access-log/--no-access-log", default=None, help="Override server.access_log.")
def serve(config_path: str, host: str | None, port: int | None, log_level: str, access_log: bool | None) -> None:
    """Run the receiver, API, dispatcher and scheduler in one process."""
    import uvicorn

    from hub.app import create_app
    from hub.runtime import Hub

    setup_logging(log_level)
    config = load(config_path)
    try:
        hub = Hub(config)
    except HubError as exc:
        fail(str(exc))
    server = config.server
    uvicorn.run(create_app(hub), host=host or server.host, port=port or server.port, log_config=None,
                access_log=server.access_log if access_log is None else access_log, lifespan="on",
                server_header=False, log_level=log_level)


@main.command("check-config")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@config_option
def check_config(file: str | None, config_path: str) -> None:
    """Validate a config file; every problem as file:line: path: message. Exit 0 ok, 2 problems."""
    path = file or config_path
    config = load(path)
    click.echo(f"{path}: ok ({len(config.sources)} source(s))")


def _source(config: HubConfig, name: str) -> Any:
    if name not in config.sources:
        known = ", ".join(sorted(config.sources)) or "none configured"
        fail(f"no source named {name!r} (sources: {known})", 2)
    return config.sources[name]


def _read_body(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)


def _signed_headers(config: HubConfig, source: str, body: bytes, form: bool = False) -> dict[str, str]:
    src = _source(config, source)
    try:
        headers = src.verify.build().sign(body, time.time(), new_id("msg"))
    except ValueError as exc:
        fail(f"cannot sign for source {source!r}: {exc}", 2)
    ctype = "application/x-www-form-urlencoded" if form else "application/json"
    return {"Content-Type": ctype, **headers}


@main.command()
@config_option
@click.option("--source", required=True, help="Source name from the config.")
@click.option("--body", "body_path", required=True, help="File with the exact body to sign ('-' for stdin).")
@click.option("--curl", is_flag=True, help="Print a complete curl command instead of the headers.")
@click.option("--url", help="With --curl: the hub's URL (default from server.host/port).")
def sign(config_path: str, source: str, body_path: str, curl: bool, url: str | None) -> None:
    """Print the headers a sender would send for BODY (signed with the source's first secret)."""
    config = load(config_path)
    body = _read_body(body_path)
    form = not body.lstrip().startswith((b"{", b"["))
    headers = _signed_headers(config, source, body, form and config.sources[source].verify.scheme == "slack")
    if not curl:
        for name, value in headers.items():
            click.echo(f"{name}: {value}")
        return
    args = " ".join(f"-H '{n}: {v}'" for n, v in headers.items())
    click.echo(f"curl -sS -X POST {args} --data-binary @{body_path} '{url or _hook_url(config, source)}'")


def _hook_url(config: HubConfig, source: str) -> str:
    host = config.server.host if config.server.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.server.port}/hooks/{source}"


@main.command("send-test")
@config_option
@click.option("--source", required=True, help="Source name from the config.")
@click.option("--url", help="Hub URL to post to (default http://<server.host>:<server.port>/hooks/<source>).")
@click.option("--body", "body_path", help="Send this file instead of the built-in sample event.")
def send_test(config_path: str, source: str, url: str | None, body_path: str | None) -> None:
    """Sign and post a sample event to a running hub; prints the answer."""
    import httpx

    config = load(config_path)
    src = _source(config, source)
    form = src.verify.scheme == "slack" and body_path is None
    if body_path:
        body = _read_body(body_path)
    elif form:
        body = samples.slack_form_body()
    else:
        body = orjson.dumps(samples.sample_body(src.adapter, time.time()))
    headers = _signed_headers(config, source, body, form)
    target = url or _hook_url(config, source)
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        fail(f"could not reach the hub at {target}: {exc} (is `hub serve` running?)")
    click.echo(f"POST {target} -> {response.status_code}")
    click.echo(response.text)
    if not response.is_success:
        sys.exit(1)


@main.group()
def events() -> None:
    """Inspect stored inbound events."""


def _store(config: HubConfig) -> Any:
    from hub.store import Store

    try:
        return Store(config.db_path, busy_timeout_ms=config.storage.busy_timeout_ms)
    except HubError as exc:
        fail(str(exc))


@events.command("list")
@config_option
@click.option("--source", help="Only this source.")
@click.option("--state", type=click.Choice(["pending", "processed", "failed"]), help="Only this processing state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def events_list(config_path: str, source: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List events, newest first."""
    from hub.store import events as q

    store = _store(load(config_path))
    rows = q.listing(store.conn, source=source, state=state, limit=limit)
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
        return
    if not rows:
        click.echo("no events")
        return
    click.echo(f"{'ID':<31} {'SOURCE':<16} {'RECEIVED':<24} {'STATE':<10} {'SIZE':>7}  KEY")
    for r in rows:
        click.echo(f"{r['id']:<31} {r['source']:<16.16} {r['received_at']:<24} {r['state']:<10} {r['size']:>7}  "
                   f"{r['idempotency_key'] or '-'}")


@events.command("show")
@click.argument("event_id")
@config_option
def events_show(event_id: str, config_path: str) -> None:
    """Show one event: metadata, stored (redacted) headers and body."""
    from hub.store import events as q

    store = _store(load(config_path))
    row = q.get(store.conn, event_id)
    if row is None:
        fail(f"no event {event_id}")
    body: bytes = row.pop("body")
    row["headers"] = orjson.loads(row["headers"])
    try:
        row["body"] = orjson.loads(body)
    except orjson.JSONDecodeError:
        row["body"] = body.decode("utf-8", "replace")
    click.echo(dumps(row))
