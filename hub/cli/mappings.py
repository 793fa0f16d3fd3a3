"""hub render, hub test-mappings: preview the exact outgoing requests, check the golden examples."""

from __future__ import annotations

import contextlib
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import orjson

from hub.cli.common import config_option, dumps, fail, load, main
from hub.errors import ConfigError, HubError
from hub.models import EVENT_TYPES


@main.command()
@config_option
@click.option("--target", required=True, help="Target name from the config.")
@click.option("--finding", "finding_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="A Finding as JSON, or {kind, changes, finding} / {kind: event.received, event} / "
              "{kind: delivery.dead, finding, dead} like the examples.")
@click.option("--kind", type=click.Choice(EVENT_TYPES), help="Lifecycle step to render (default: from the file, "
              "else finding.created).")
@click.option("--remote-id", help="Render as if the finding already has this ticket at the target.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {method, url, headers, body}.")
def render(config_path: str, target: str, finding_path: str, kind: str | None, remote_id: str | None,
           as_json: bool) -> None:
    """Print the exact request(s) a delivery would send (secret headers masked)."""
    from hub.goldens import item_for
    from hub.mappings import example_from
    from hub.registry import connector_class

    config = load(config_path)
    if target not in config.targets:
        fail(f"no target named {target!r} (targets: {', '.join(sorted(config.targets)) or 'none'})", 2)
    try:
        example = example_from("preview", orjson.loads(Path(finding_path).read_bytes()))
    except (orjson.JSONDecodeError, ValueError) as exc:
        fail(f"{finding_path}: not a Finding: {exc}", 2)
    if example.finding is not None and not example.finding.id:
        example = replace(example, finding=example.finding.model_copy(update={"id": "fnd_preview"}))
    if kind:
        example = replace(example, kind=kind)
    cfg = config.targets[target]
    connector = connector_class(cfg.type)(target, cfg, config.mappings[target], config.resolve("."))
    try:
        requests = connector.render(item_for(example, target, remote_id))
    except HubError as exc:
        fail(str(exc), 1)
    out: list[dict[str, Any]] = [{"method": r.method, "url": r.url, "headers": r.masked_headers(),
            "body": r.body.decode("utf-8", "replace")} for r in requests]
    if as_json:
        click.echo(orjson.dumps(out).decode())
        return
    for i, r in enumerate(out):
        if i:
            click.echo("")
        click.echo(f"{r['method']} {r['url']}")
        for name, value in r["headers"].items():
            click.echo(f"{name}: {value}")
        click.echo("")
        body = r["body"]
        with contextlib.suppress(orjson.JSONDecodeError):
            body = dumps(orjson.loads(body)) if body.strip() else body
        click.echo(body)


@main.command("test-mappings")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Also check the mappings of this config's targets (custom mapping folders included).")
@click.option("--type", "types", multiple=True, help="Only these connector types.")
def test_mappings(config_path: str | None, types: tuple[str, ...]) -> None:
    """Render every golden example and compare with its expected output. Exit 1 on a mismatch."""
    from hub.goldens import check
    from hub.mappings import BUILTIN_ROOT, load_mapping
    from hub.registry import connector_class, connector_paths

    folders: dict[str, tuple[str, Path]] = {}
    for type_name in connector_paths():
        if (BUILTIN_ROOT / type_name).is_dir():
            folders[f"built-in {type_name}"] = (type_name, BUILTIN_ROOT / type_name)
    if config_path:
        config = load(config_path)
        for name, cfg in config.targets.items():
            folders.setdefault(str(config.mappings[name].folder), (cfg.type, config.mappings[name].folder))
    failed = 0
    for label, (type_name, folder) in sorted(folders.items()):
        if types and type_name not in types:
            continue
        try:
            mapping = load_mapping(type_name, folder, connector_class(type_name).payloads)
            compared, bad = check(type_name, mapping)
        except ConfigError as exc:
            failed += 1
            click.echo(f"FAIL {label}:\n" + "\n".join(f"  {p}" for p in exc.problems))
            continue
        except (HubError, ValueError) as exc:  # ValueError: examples/target.yaml does not validate
            failed += 1
            click.echo(f"FAIL {label}: {exc}")
            continue
        if bad:
            failed += 1
            click.echo(f"FAIL {label}: {len(bad)} of {compared} example output(s) differ")
            for m in bad:
                click.echo(textwrap.indent(str(m), "  "))
        else:
            click.echo(f"ok   {label}: {compared} example output(s)")
    if failed:
        fail(f"{failed} mapping folder(s) failed")
