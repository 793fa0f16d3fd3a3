"""hub serve, check-config, sign, send-test: running the hub and getting a first event in."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from hub import samples
from hub.cli.common import config_option, fail, load, main, setup_logging
from hub.errors import HubError
from hub.ids import new_id
from hub.settings import Settings

log = logging.getLogger("hub.serve")


@main.command()
@config_option
@click.option("--host", help="Override server.host.")
@click.option("--port", type=int, help="Override server.port.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Override logging.level (default info).")
@click.option("--access-log/--no-access-log", default=None, help="Override server.access_log.")
def serve(config_path: str, host: str | None, port: int | None, log_level: str | None,
          access_log: bool | None) -> None:
    """Run the receiver, API, dispatcher and scheduler in one process."""
    import uvicorn

    from hub.app import create_app
    from hub.edge import EdgeLimits, connection_cap, protocol_class
    from hub.runtime import Hub
    from hub.store.lock import hold

    config = load(config_path, notes=False)
    log_level = log_level or config.logging.level
    setup_logging(log_level, config.logging.format, config.console.public_url)
    for note in config.notes:  # through the log: with logging.format json, every line of stderr is JSON
        log.warning("note: %s", note)
    try:
        if config.storage.url is None:
            hold(config.db_path)  # one `hub serve` per store, for this process's life (hub/store/lock.py)
        hub = Hub(config)
        hub.store.check_writable()  # a read-only file or folder: one line naming the path, before listening
    except HubError as exc:
        fail(str(exc))
    server = config.server
    cap = connection_cap(server.max_connections)
    if cap < server.max_connections:
        log.warning("server.max_connections lowered from %d to %d to fit the open-file limit (ulimit -n)",
                    server.max_connections, cap)
    dropped = hub.metrics.dropped
    limits = EdgeLimits(server.header_timeout_secs, server.body_timeout_secs, cap, server.max_header_bytes,
                        on_drop=lambda reason: dropped.labels(reason).inc())
    signal.signal(signal.SIGTERM, _stopped)
    settings = uvicorn.Config(create_app(hub), host=host or server.host, port=port or server.port, log_config=None,
                              access_log=server.access_log if access_log is None else access_log, lifespan="on",
                              server_header=False, log_level=log_level, http=protocol_class(limits),
                              timeout_keep_alive=server.keepalive_timeout_secs)
    sockets = [shared_socket(settings.host, settings.port)] if server.reuse_port else None
    uvicorn.Server(settings).run(sockets=sockets)


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket other processes may bind too (SO_REUSEPORT): the kernel spreads connections among them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    return sock


def _stopped(signum: int, frame: Any) -> None:
    """SIGTERM is a stop asked for: exit 0. Uvicorn shuts down gracefully on it (the hub closes: deliveries in flight
    finish or are released), then raises the signal again with the handler it found, this one: without it the default
    action ends the process as killed by SIGTERM (status -15), which supervisors and orchestrators read as a crash.
    A SIGTERM before uvicorn listens lands here too: nothing was accepted yet, so exiting at once loses nothing."""
    raise SystemExit(0)


@main.command("check-config")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@config_option
def check_config(file: str | None, config_path: str) -> None:
    """Validate a config file and render its mappings' golden examples; every problem as file:line: path: message.
    Exit 0 ok (saying what was checked), 2 problems."""
    from hub.configcheck import check

    path = file or config_path
    checked = check(load(path))
    for problem in checked.problems:
        click.echo(str(problem), err=True)
    if checked.problems:
        click.echo(f"{len(checked.problems)} problem(s) in {path}", err=True)
        sys.exit(2)
    click.echo(f"{path}: {checked.summary()}")


def _source(config: Settings, name: str) -> Any:
    if name not in config.sources:
        known = ", ".join(sorted(config.sources)) or "none configured"
        fail(f"no source named {name!r} (sources: {known})", 2)
    if config.sources[name].verify is None:
        fail(f"source {name!r} has no verify: block (it is only polled): nothing to sign", 2)
    return config.sources[name]


def _read_body(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)


def _signed_headers(config: Settings, source: str, body: bytes, form: bool = False) -> dict[str, str]:
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
    headers = _signed_headers(config, source, body, form and _source(config, source).verify.scheme == "slack")
    if not curl:
        for name, value in headers.items():
            click.echo(f"{name}: {value}")
        return
    args = " ".join(f"-H '{n}: {v}'" for n, v in headers.items())
    click.echo(f"curl -sS -X POST {args} --data-binary @{body_path} '{url or _hook_url(config, source)}'")


def _hook_url(config: Settings, source: str) -> str:
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


