"""hub explain: why an event or a finding was delivered where it was, and not elsewhere (hub/explain.py)."""

from __future__ import annotations

import click
import orjson

from hub.cli.common import config_option, dumps, fail, load, main, open_store


@main.command()
@click.argument("ident", metavar="EVT_OR_FND_ID")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as one JSON document.")
def explain(ident: str, config_path: str, as_json: bool) -> None:
    """For each step of an event (evt_N) or a finding (fnd_X): every route, matched or not and why, with the
    values its `when` read, and the targets the step delivers to. Routes are the current config's."""
    from hub.explain import MISSING
    from hub.explain import explain as run

    config = load(config_path)
    if not ident.startswith(("evt_", "fnd_")):
        fail(f"{ident!r} is neither an event id (evt_N) nor a finding id (fnd_...)", 2)
    result = run(open_store(config).conn, config, ident)
    if result is None:
        fail(f"no {'event' if ident.startswith('evt_') else 'finding'} {ident}")
    if as_json:
        click.echo(dumps(result.to_json()))
        return
    if not config.routes:
        click.echo("no routes are configured: nothing is delivered anywhere")
    for i, step in enumerate(result.steps):
        if i:
            click.echo("")
        where = ", ".join(step.targets) or "nowhere"
        click.echo(f"{step.kind} {step.subject} from {step.source or '-'} at {step.at or '-'} -> {where}")
        for v in step.routes:
            click.echo(f"  {'+' if v.targets else '-'} {v.route}: {v.reason}"
                       + (f" -> {', '.join(v.targets)}" if v.targets else ""))
            for path, value in v.read.items():
                shown = MISSING if value == MISSING else orjson.dumps(value, default=str).decode()
                click.echo(f"      {path} = {shown[:200]}")
    if result.note:
        click.echo(f"\nnote: {result.note}")
