"""``load_config``: a validated hub.yaml wired to the code it names, as one frozen ``Settings``.

hub/config.py parses the file and checks it against its own rules. What the models only name is
wired here, in the second phase: each target's ``type`` picks a connector whose own Config model
validates that target, each target's mapping is loaded and its templates checked against what they
will be given, each source's adapter validates its ``options``, each route's ``when`` compiles. Every
problem of both phases is collected and reported together. The result is built once, at the end,
and never changed: the running hub reads one view of its targets, typed by their connectors.
This module sits above the connectors, adapters and mappings so that hub/config.py need not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from hub import adapters, contextcheck, enrichment, registry, templating
from hub.config import (
    ApiConfig,
    ConsoleConfig,
    HubConfig,
    LoggingConfig,
    PipelineConfig,
    RouteConfig,
    ServerConfig,
    SlaConfig,
    SourceConfig,
    StorageConfig,
    parse,
)
from hub.connector import Connector, TargetConfig
from hub.errors import ConfigError, HubError, Problem, TemplateError, format_path
from hub.mappings import Mapping as PayloadMapping
from hub.mappings import folder_for, load_mapping
from hub.strict import Loc, StrictModel, translate
from hub.yamlsrc import YamlDoc, load


@dataclass(frozen=True)
class Settings:
    """A loaded config as the hub runs it. The model's sections read as attributes (``settings.sources``), so
    code that needs a setting does not care which phase checked it; ``targets`` are the connectors' models."""

    config: HubConfig
    file: str
    base_dir: Path
    targets: Mapping[str, TargetConfig]
    mappings: Mapping[str, PayloadMapping]
    options: Mapping[str, StrictModel]
    notes: tuple[Problem, ...]  # warnings that do not stop the hub (a secret taken from the file's default, ...)

    @property
    def server(self) -> ServerConfig:
        return self.config.server

    @property
    def storage(self) -> StorageConfig:
        return self.config.storage

    @property
    def sources(self) -> Mapping[str, SourceConfig]:
        return self.config.sources

    @property
    def routes(self) -> list[RouteConfig]:
        return self.config.routes

    @property
    def sla(self) -> SlaConfig:
        return self.config.sla

    @property
    def pipeline(self) -> PipelineConfig:
        return self.config.pipeline

    @property
    def api(self) -> ApiConfig:
        return self.config.api

    @property
    def console(self) -> ConsoleConfig:
        return self.config.console

    @property
    def logging(self) -> LoggingConfig:
        return self.config.logging

    def adapter_options(self, source: str) -> StrictModel | None:
        """The source's adapter options, validated by the adapter's Options model; None if it takes none."""
        return self.options.get(source)

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        return _resolve(self.base_dir, path)

    @property
    def db_path(self) -> Path:
        return self.resolve(self.storage.path)

    @property
    def store_location(self) -> str | Path:
        """The store: its PostgreSQL URL, or the SQLite file's path."""
        return self.storage.url if self.storage.url is not None else self.db_path


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Load, interpolate, validate and wire; raises ConfigError listing every problem of both phases."""
    doc, base_dir = load(path, env), Path(path).resolve().parent
    config, problems = parse(doc)
    if config is None:
        raise ConfigError(_shown(doc, problems))
    targets, mappings, target_problems = _targets(config, doc, base_dir)
    options, option_problems = _options(config, doc)
    problems += [*_when_problems(config, doc), *target_problems, *_kind_problems(config, doc, targets),
                 *option_problems, *_writeback_problems(config, doc, targets), *_enrich_problems(config, doc),
                 *_server_problems(config, doc)]
    if problems := _shown(doc, problems):
        raise ConfigError(problems)
    return Settings(config, doc.file, base_dir, MappingProxyType(targets), MappingProxyType(mappings),
                    MappingProxyType(options), (*_default_notes(doc), *_split_platform_notes(config, doc)))


def _resolve(base_dir: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def _shown(doc: YamlDoc, problems: list[Problem]) -> list[Problem]:
    """Each problem once, without the follow-on problems of an unset variable (its value became empty)."""
    return [p for p in dict.fromkeys(problems) if p in doc.problems or not _hides_unset(doc, p)]


def _hides_unset(doc: YamlDoc, problem: Problem) -> bool:
    return any(problem.path == format_path(loc) or format_path(loc).startswith(problem.path + "[")
               or format_path(loc).startswith(problem.path + ".") for loc in doc.unset)


def _when_problems(config: HubConfig, doc: YamlDoc) -> list[Problem]:
    """A route's ``when`` must compile, and read only what the events it is on will give it."""
    problems = []
    for i, route in enumerate(config.routes):
        if route.when is None:
            continue
        loc = ("routes", i, "when")
        try:
            templating.compile_expression(route.when)
        except TemplateError as exc:
            problems.append(doc.problem(loc, f"invalid expression: {exc}"))
            continue
        problems += [doc.problem(loc, f"{chain}: {message}") for _, chain, message
                     in contextcheck.when_problems(route.when, list(route.on), templating.expression_env)]
    return problems


def _targets(config: HubConfig, doc: YamlDoc, base_dir: Path) \
        -> tuple[dict[str, TargetConfig], dict[str, PayloadMapping], list[Problem]]:
    """Each target validated by its connector's Config model, with its mapping loaded and its templates checked."""
    targets: dict[str, TargetConfig] = {}
    mappings: dict[str, PayloadMapping] = {}
    problems: list[Problem] = []
    for name, raw in config.targets.items():
        loc: Loc = ("targets", name)
        type_name = raw.get("type")
        if not isinstance(type_name, str):
            problems.append(doc.problem(loc, "needs `type:` (the connector type, e.g. webhook, file, linear)"))
            continue
        try:
            cls = registry.connector_class(type_name)
        except HubError as exc:
            problems.append(doc.problem((*loc, "type"), str(exc)))
            continue
        try:
            target = cls.Config.model_validate(raw)
        except ValidationError as exc:
            problems += translate(doc, exc, cls.Config, loc)
            continue
        problems += [doc.problem((*loc, *sub), msg) for sub, msg in target.problems()]
        if (ca := target.request.ca_file) and target.request.verify_tls and not _resolve(base_dir, ca).is_file():
            problems.append(doc.problem((*loc, "request", "ca_file"), f"no such file: {_resolve(base_dir, ca)} (a "
                                        "path relative to this config file's folder)"))
        custom = _resolve(base_dir, target.mapping) if target.mapping else None
        try:
            mappings[name] = load_mapping(type_name, folder_for(type_name, custom), cls.payloads)
            mappings[name].public_url = config.console.public_url
        except ConfigError as exc:
            problems += exc.problems
        else:
            problems += _template_problems(name, cls, target, mappings[name])
        targets[name] = target
    return targets, mappings, problems


def _template_problems(name: str, cls: Any, target: TargetConfig, mapping: PayloadMapping) -> list[Problem]:
    """Fields a target's templates read that their context does not have (hub/contextcheck.py). A connector
    that builds its own context (overrides ``context``) is left alone: its templates may see more."""
    if cls.context is not Connector.context:
        return []
    roots = contextcheck.template_context(name, target, mapping)
    return [Problem(file, line, chain, message) for file, (line, chain, message)
            in contextcheck.template_problems(mapping, roots)]


def _kind_problems(config: HubConfig, doc: YamlDoc, targets: Mapping[str, TargetConfig]) -> list[Problem]:
    """A route may send a target only the event kinds its connector delivers."""
    problems = []
    for i, route in enumerate(config.routes):
        for j, name in enumerate(route.to):
            routed = targets.get(name)
            kinds = registry.connector_class(routed.type).kinds if routed else None
            if routed and kinds is not None and (unsupported := [k for k in route.on if k not in kinds]):
                problems.append(doc.problem(("routes", i, "to", j), f"target {name} ({routed.type}) cannot deliver "
                                            f"{', '.join(unsupported)}; it takes {', '.join(sorted(kinds))}"))
    return problems


def _writeback_problems(config: HubConfig, doc: YamlDoc, targets: Mapping[str, TargetConfig]) -> list[Problem]:
    """A write-back target (``secureendpoint``, ``neuro``) addresses findings by that platform's ids: a route to it
    must come only from sources of that platform's adapter, or another tool's id would dismiss the wrong finding."""
    problems = []
    for i, route in enumerate(config.routes):
        for name in route.to:
            routed = targets.get(name)
            platform = getattr(registry.connector_class(routed.type), "writes_back_to", None) if routed else None
            if platform is None:
                continue
            others = [s for s in route.from_ or [] if (src := config.sources.get(s)) is None
                      or (src.adapter or (src.poll.adapter if src.poll else None)) != platform]
            if route.from_ is None or others:
                problems.append(doc.problem(("routes", i, "from"), f"target {name} writes back to {platform}: list "
                                            f"only sources with adapter {platform} in from"
                                            + (f" (not {', '.join(others)})" if others else "")))
    return problems


def _options(config: HubConfig, doc: YamlDoc) -> tuple[dict[str, StrictModel], list[Problem]]:
    """Each source's ``options`` validated by its adapter's Options model."""
    options: dict[str, StrictModel] = {}
    problems: list[Problem] = []
    for name, source in config.sources.items():
        loc: Loc = ("sources", name)
        if source.poll is not None and source.poll.adapter and source.poll.adapter != source.adapter:
            try:
                if adapters.adapter_class(source.poll.adapter).Options is not None:
                    problems.append(doc.problem((*loc, "poll", "adapter"), f"the {source.poll.adapter} adapter needs "
                                                "options: set it as the source's adapter instead"))
            except HubError as exc:
                problems.append(doc.problem((*loc, "poll", "adapter"), str(exc)))
        if source.adapter is None:
            if source.options is not None:
                problems.append(doc.problem((*loc, "options"), "options need an `adapter:`"))
            continue
        try:
            cls = adapters.adapter_class(source.adapter)
        except HubError as exc:
            problems.append(doc.problem((*loc, "adapter"), str(exc)))
            continue
        if cls.Options is None:
            if source.options:
                problems.append(doc.problem((*loc, "options"), f"the {source.adapter} adapter takes no options"))
            continue
        try:
            validated = cls.Options.model_validate(source.options or {})
        except ValidationError as exc:
            problems += translate(doc, exc, cls.Options, (*loc, "options"))
            continue
        problems += [doc.problem((*loc, "options", *sub), msg) for sub, msg in validated.problems()]
        options[name] = validated
    return options, problems


def _enrich_problems(config: HubConfig, doc: YamlDoc) -> list[Problem]:
    """``enrich`` only where the source's adapter knows its platform's API (hub/enrichment.py: Enrichable)."""
    problems = []
    for name, source in config.sources.items():
        if source.enrich is None:
            continue
        try:
            able = source.adapter is not None and enrichment.can_enrich(adapters.adapter_class(source.adapter))
        except HubError:
            continue  # an unknown adapter is reported at `adapter`
        if not able:
            which = f"the {source.adapter} adapter" if source.adapter else "a source without an adapter"
            problems.append(doc.problem(("sources", name, "enrich"), f"{which} cannot enrich; adapters that can: "
                                        f"{', '.join(enrichment.enriching_adapters())}"))
    return problems


def _server_problems(config: HubConfig, doc: YamlDoc) -> list[Problem]:
    if config.server.reuse_port and config.storage.url is None:
        return [doc.problem(("server", "reuse_port"), "several processes on one port need storage.url "
                            "(PostgreSQL): a SQLite store is held by one `hub serve`")]
    return []


def _split_platform_notes(config: HubConfig, doc: YamlDoc) -> list[Problem]:
    """A platform configured as a webhook source and a poll source without a shared fingerprint scope: the same
    issue would be two findings and two tickets, the trap a new user falls into first (one source takes both)."""
    hooks: dict[str, list[str]] = {}
    polls: dict[str, list[str]] = {}
    for name, src in config.sources.items():
        if src.verify is not None and src.adapter and src.adapter != "generic":
            hooks.setdefault(src.adapter, []).append(name)
        if src.poll is not None and (src.poll.adapter or src.adapter) not in (None, "generic"):
            polls.setdefault(str(src.poll.adapter or src.adapter), []).append(name)
    notes = []
    for adapter, pollers in polls.items():
        for poller in pollers:
            scope = config.sources[poller].fingerprint.scope
            apart = [h for h in hooks.get(adapter, []) if h != poller
                     and (scope is None or config.sources[h].fingerprint.scope != scope)]
            if apart:
                notes.append(doc.problem(("sources", poller), f"{adapter} is polled here and received by webhook in "
                                         f"{', '.join(apart)}: the same issue by both paths is two findings; make "
                                         "them one source with verify and poll, or share a fingerprint scope"))
    return notes


def _default_notes(doc: YamlDoc) -> list[Problem]:
    """One note per unset variable whose written default a secret uses, at its first place, naming the others:
    a secret shared by ten sources (a YAML anchor, or the same ``${VAR:-dev}``) is one line, not ten."""
    places: dict[str, list[tuple[str | int, ...]]] = {}
    for loc, names in doc.defaulted.items():
        if _SECRETISH.search(format_path(loc)):
            for name in names:
                places.setdefault(name, []).append(loc)
    notes = []
    for name, locs in places.items():
        also = f" (also at {', '.join(f'line {doc.line_of(loc)}' for loc in locs[1:])})" if len(locs) > 1 else ""
        notes.append(doc.problem(locs[0], f"{name} is not set: using the default written in the file{also} "
                                          "(fine for a demo, not for production)"))
    return notes


_SECRETISH = re.compile(r"secret|token|auth|password|api_key", re.IGNORECASE)
