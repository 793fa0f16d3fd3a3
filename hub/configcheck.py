"""``hub check-config`` beyond loading: render every golden example of every mapping in use, and say what
was checked. Kept out of ``load_config``: rendering reads every example file, which ``hub serve`` and each
command need not pay; the static checks of templates and ``when`` run at every load (hub/contextcheck.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.errors import Problem
from hub.settings import Settings


@dataclass
class Checked:
    sources: int
    routes: int
    targets: int
    mappings: int
    templates: int
    examples: int = 0
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        return (f"ok: {_n(self.sources, 'source')}, {_n(self.routes, 'route')}, {_n(self.targets, 'target')}, "
                f"{_n(self.mappings, 'mapping')} ({_n(self.templates, 'template')}), "
                f"{_n(self.examples, 'golden example')} rendered")


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def check(config: Settings) -> Checked:
    from hub.goldens import render_all

    folders = {m.folder.resolve(): m for m in config.mappings.values()}
    templates = {(folder, p.template) for folder, m in folders.items() for p in m.payloads.values()}
    out = Checked(len(config.sources), len(config.routes), len(config.targets), len(folders), len(templates))
    for name, mapping in config.mappings.items():
        target = config.targets[name]
        rendered, problems = render_all(name, target.type, target, mapping, config.resolve("."))
        out.examples += rendered
        out.problems += problems
    out.problems = sorted(dict.fromkeys(out.problems))
    return out
