"""pydantic models for hub.yaml, and ``parse``: the first of the two validation phases.

``parse`` checks the file against the models below: unknown keys, types, and the cross-field rules in
``problems()`` (routes must name real sources and targets, ...). Targets stay raw mappings here: which
model validates one depends on its connector. That, and everything else the models only name
(connectors, mappings, adapters, templates), is the second phase, in hub/settings.py, which also builds
what the running hub reads. This module imports nothing above the models, so every layer can use them.
Secrets are ``SecretStr``: reprs, logs and messages never show them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator

from hub import signatures
from hub.errors import ConfigError, Problem
from hub.models import EVENT_TYPES
from hub.strict import Loc, Name, StrictModel, translate, unknown_message
from hub.yamlsrc import YamlDoc

EventType = Literal["event.received", "finding.created", "finding.updated", "finding.resolved", "finding.reopened",
                    "finding.sla_breached", "finding.dismissed", "delivery.dead"]
assert set(EventType.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]


class ServerConfig(StrictModel):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port to listen on.")
    max_body_bytes: int = Field(1_048_576, gt=0, le=104_857_600,
                                description="Largest webhook body accepted (413 above).")
    access_log: bool = Field(False, description="Log every request (costs about half the throughput).")
    max_pending_writes: int = Field(10_000, gt=0, description="Writes queued for the store before answering 503.")
    header_timeout_secs: float = Field(10, gt=0, le=300, description="From a request's first byte (or the accept) "
                                       "to the end of its headers; a slower client gets 408 and is closed.")
    body_timeout_secs: float = Field(20, gt=0, le=600, description="From the end of the headers to the end of "
                                     "the body; a slower client gets 408 and is closed.")
    keepalive_timeout_secs: int = Field(5, ge=1, le=300, description="An idle keep-alive connection is closed "
                                          "after this long.")
    max_connections: int = Field(1000, ge=1, description="Open connections; one more is answered 503 and closed "
                                 "(lowered at start to fit the process's open-file limit).")
    max_header_bytes: int = Field(16_384, ge=1024, le=1_048_576, description="Request line and headers together; "
                                  "more is answered 431 and never stored.")
    reuse_port: bool = Field(False, description="Several `hub serve` processes on this host listen on one "
                             "host:port (SO_REUSEPORT, Linux): the kernel spreads new connections among them. Needs "
                             "the PostgreSQL store; SQLite keeps one `hub serve` per store.")


class RetentionConfig(StrictModel):
    """How long finished traffic stays in the store; ``null`` keeps it forever. Findings never expire."""

    deliveries_days: float | None = Field(30, gt=0, description="Done deliveries and their attempt logs.")
    dead_days: float | None = Field(90, gt=0, description="Dead letters, and events that failed processing.")
    events_days: float | None = Field(30, gt=0, description="Processed events (raw bodies) no delivery still needs.")
    audit_days: float | None = Field(365, gt=0, description="API audit log rows, by when they were written.")
    every_secs: int = Field(3600, ge=60, description="How often the retention job runs.")


class StorageConfig(StrictModel):
    path: str = Field("./hub.db", description="SQLite file, relative to the config file's folder.")
    url: str | None = Field(None, description="PostgreSQL instead of SQLite: postgresql://user:${PGPASSWORD}@host/db "
                            "(several hub processes may share it); empty: SQLite at path.")
    pool_size: int = Field(8, ge=1, le=100, description="PostgreSQL: connections (and writer threads) per process.")

    @field_validator("url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        """``url: "${HUB_DATABASE_URL:-}"``: one config for both engines, PostgreSQL when the variable is set."""
        return value.strip() or None if value is not None else None
    busy_timeout_ms: int = Field(5_000, ge=0, description="How long a write waits for another process's lock.")
    synchronous: Literal["full", "extra"] = Field("full", description="SQLite synchronous level: a 202 means on disk.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description="What old traffic is pruned.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.url is not None and not self.url.startswith(("postgresql://", "postgres://")):
            yield ("url",), "must be a PostgreSQL URL (postgresql://user:password@host:5432/database)"


class VerifyConfig(StrictModel):
    scheme: Literal["hmac-sha256", "github", "standard-webhooks", "stripe", "slack", "shopify", "token"] = Field(
        description="How the sender signs: see docs/configuration.md for each scheme's headers.")
    secrets: list[SecretStr] = Field(min_length=1, description="Several secrets = rotation; all are tried.")
    header: str | None = Field(None, description="hmac-sha256 and token: the header carrying the signature/token.")
    prefix: str = Field("", description='hmac-sha256: text before the signature, e.g. "sha256=".')
    encoding: Literal["hex", "base64"] = Field("hex", description="hmac-sha256: how the signature is encoded.")
    tolerance_secs: int = Field(300, gt=0, le=86_400, description="Timestamped schemes: allowed clock difference.")
    replay_window_secs: int = Field(300, ge=0, le=604_800, description="Schemes without a signed timestamp: how "
                                    "long an accepted body is remembered, so the same request again is a duplicate "
                                    "(0: off).")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        header_schemes = {"hmac-sha256", "token"}
        given = self.model_fields_set
        if self.scheme in header_schemes and not self.header:
            yield ("header",), f"required for scheme {self.scheme}"
        if self.scheme not in header_schemes and "header" in given:
            yield ("header",), f"not used by scheme {self.scheme} (its header is fixed); remove it"
        for key in ("prefix", "encoding"):
            if key in given and self.scheme != "hmac-sha256":
                yield (key,), "only used by scheme hmac-sha256; remove it"
        if "tolerance_secs" in given and self.scheme not in signatures.TIMESTAMPED:
            yield ("tolerance_secs",), f"scheme {self.scheme} signs no timestamp; remove it"
        if "replay_window_secs" in given and self.scheme in signatures.TIMESTAMPED:
            yield ("replay_window_secs",), f"scheme {self.scheme} signs a timestamp: replays are refused for " \
                                           "tolerance_secs; remove it"
        try:
            self.build()
        except ValueError as exc:
            yield ("secrets",), str(exc)

    def build(self) -> signatures.Scheme:
        return signatures.build(
            self.scheme, [s.get_secret_value() for s in self.secrets], header=self.header,
            prefix=self.prefix, encoding=self.encoding, tolerance=self.tolerance_secs,
        )


class FingerprintConfig(StrictModel):
    use: Literal["default", "tool_id", "fields", "both"] = Field(
        "default", description="default: asset + rule/CVE/title + location; tool_id: the tool's own id; "
                               "fields: a hash of `fields`; both: tool id and `fields`.")
    fields: list[str] = Field(default_factory=list, description="Finding fields (asset.* allowed) for fields/both.")
    scope: Name | None = Field(None, description="Sources with the same scope fingerprint as one: the same tool id "
                                                 "(or the same inputs) from any of them is one finding. Default: "
                                                 "the source's own name.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        if self.use in ("fields", "both") and not self.fields:
            yield ("fields",), f"list the fields to hash when use is {self.use}"
        if self.use in ("default", "tool_id") and self.fields:
            yield ("fields",), f"not used when use is {self.use}; remove it"


class PollAuth(StrictModel):
    bearer: SecretStr | None = Field(None, description="Sent as Authorization: Bearer <token>.")
    header: str | None = Field(None, description="Or: the name of a header that carries an API key ...")
    value: SecretStr | None = Field(None, description="... and its value.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        if (self.bearer is None) == (self.header is None):
            yield (), "set either bearer, or header and value"
        if (self.header is None) != (self.value is None):
            yield ("value" if self.header else "header",), "header and value go together"


class PollParents(StrictModel):
    """A list whose items (engagements, projects) each have their own endpoint to pull: ``{id}`` in ``poll.url``."""

    url: str = Field(pattern=r"^https?://", description="The list of parents, e.g. .../api/v1/engagements.")
    items_path: str | None = Field(None, description="Where the list sits in its answer (default: as for pages).")
    id_path: str = Field("id", description="Dotted path of each parent's id, put in place of {id} in poll.url.")
    pagination: Literal["page", "none"] = Field("page", description="page: paged like the poll (page_param, "
                                                                    "size_param, page_size); none: one answer.")


class PollRateLimit(StrictModel):
    """The platform's sliding window, kept on our side so that its 429 is the exception, not the pacing."""

    requests: int = Field(ge=1, description="At most this many requests ...")
    per_secs: float = Field(60.0, gt=0, description="... in any window of this many seconds.")


class PollConfig(StrictModel):
    adapter: Name | None = Field(None, description="Adapter for the pulled pages (default: the source's adapter).")
    url: str = Field(pattern=r"^https?://", description="The list endpoint to pull.")
    auth: PollAuth | None = Field(None, description="Credentials for the platform's API.")
    every_secs: int | None = Field(None, ge=10, description="Run every N seconds ...")
    cron: str | None = Field(None, description='... or on a cron schedule (UTC), e.g. "*/5 * * * *".')
    mode: Literal["pages", "secuprobe"] = Field("pages", description="pages: a paged list endpoint; secuprobe: "
                                                "list scans, wait for completed, read their vulnerabilities.")
    pagination: Literal["page", "cursor", "none"] = Field("page", description="How pages are requested.")
    page_param: str = Field("page", description="Query parameter of the page number (page pagination).")
    size_param: str = Field("per_page", description="Query parameter of the page size (NEURO: limit).")
    page_size: int = Field(100, ge=1, le=1000, description="Items asked for per page.")
    cursor_param: str = Field("cursor", description="Query parameter carrying the cursor (cursor pagination).")
    cursor_path: str = Field("meta.next_cursor", description="Where the next cursor sits in a page (dotted path).")
    items_path: str | None = Field(None, description="Where the list sits in a page (default: data, findings, "
                                                     "items, results or vulnerabilities).")
    since_param: str | None = Field(None, description="Query parameter for incremental runs, e.g. updated_since.")
    params: dict[str, str] = Field(default_factory=dict, description="Extra query parameters on every request.")
    full_import: bool = Field(False, description="A complete run is a re-import: open findings it did not see resolve.")
    max_pages: int = Field(1000, ge=1, description="Safety stop per run.")
    timeout_secs: float = Field(30.0, gt=0, description="Timeout of one request.")
    max_wait_secs: float = Field(60.0, ge=0, description="Longest Retry-After / rate-limit reset honoured inside a "
                                                         "run; longer waits end the run, which resumes next time.")
    parents: PollParents | None = Field(None, description="Pull url once per item of this list ({id} in url).")
    rate_limit: PollRateLimit | None = Field(None, description="Client-side sliding window (e.g. Obexum: 60 per 60 s).")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        if (self.every_secs is None) == (self.cron is None):
            yield (), "set either every_secs or cron"
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron, timezone="UTC")
            except ValueError as exc:
                yield ("cron",), f"invalid cron expression: {exc}"
        if self.full_import and self.since_param:
            yield ("full_import",), "a full import must pull everything: remove since_param"
        if self.parents is not None and "{id}" not in self.url:
            yield ("url",), "with parents, url must contain {id} (each parent's id goes there)"
        if self.parents is None and "{id}" in self.url:
            yield ("parents",), "url contains {id}: say which list the ids come from in parents"
        if self.parents is not None and self.mode != "pages":
            yield ("parents",), f"not used with mode {self.mode}; remove it"


class EnrichConfig(StrictModel):
    """The platform's API, read after a webhook is stored so the finding is built from the full record."""

    url: str = Field(pattern=r"^https?://", description="The API's base URL, e.g. https://api.secureendpoint.io/v1.")
    auth: PollAuth = Field(description="Credentials for the platform's API (bearer, or header and value).")
    timeout_secs: float = Field(10.0, gt=0, description="Timeout of one request.")
    cache_secs: float = Field(60.0, ge=0, description="A record fetched is reused for this long (0: never).")
    wait_max_secs: float = Field(3600.0, ge=0, description="While the API fails, an event waits at most this long "
                                                           "from its receipt, then is processed unenriched.")
    retry_secs: float = Field(5.0, gt=0, description="First wait after a failure; doubles per failure ...")
    retry_max_secs: float = Field(300.0, gt=0, description="... up to this.")
    max_inline_wait_secs: float = Field(2.0, ge=0, description="A Retry-After or rate-limit reset up to this long is "
                                                               "waited out in place; longer ones make the event wait.")


class SourceConfig(StrictModel):
    verify: VerifyConfig | None = Field(None, description="How requests to /hooks/<name> are verified "
                                                          "(none: the source is only polled).")
    poll: PollConfig | None = Field(None, description="Pull the platform's REST API on a schedule.")
    idempotency_key: str | None = Field(None,
                                        description="JSON pointer to the sender's event id in the body, e.g. /id.")
    adapter: Name | None = Field(None, description="Which adapter turns this source's events into findings "
                                                    "(none: events are stored and forwarded as event.received only).")
    options: dict[str, Any] | None = Field(None, description="The adapter's settings (see docs/adapters.md).")
    fingerprint: FingerprintConfig = Field(default_factory=FingerprintConfig, description="How duplicates are found.")
    enrich: EnrichConfig | None = Field(None, description="Fetch the full record from the platform's API before a "
                                                          "webhook's finding is built (adapters that support it).")

    @field_validator("idempotency_key")
    @classmethod
    def _pointer(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must be a JSON pointer starting with '/', e.g. /{value.lstrip('#')}")
        return value

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.verify is None and self.poll is None:
            yield (), "a source needs verify (webhooks), poll (API pulls) or both"
        if self.poll is not None and not (self.poll.adapter or self.adapter):
            yield ("poll", "adapter"), "polled pages need an adapter (here or in the source)"
        if self.enrich is not None and self.verify is None:
            yield ("enrich",), "enrichment completes webhook events: this source has no verify (webhooks)"

    def id_pointer(self) -> str | None:
        """The configured pointer, else the scheme's default (Stripe's event id); None if the scheme has an id
        header."""
        if self.verify is None:
            return self.idempotency_key
        return self.idempotency_key or signatures.DEFAULT_ID_POINTER.get(self.verify.scheme)


class RouteConfig(StrictModel):
    name: Name = Field(description="Shown in deliveries and metrics.")
    on: list[EventType] = Field(min_length=1, description="Event types this route handles.")
    from_: list[str] | None = Field(None, alias="from", description="Only events of these sources (default: all).")
    when: str | None = Field(None, description="Sandboxed Jinja expression over finding/event/changes; true = send.")
    to: list[str] = Field(min_length=1, description="Target names.")


class SlaConfig(StrictModel):
    critical: float | None = Field(7, gt=0, description="Days to fix a critical finding (none: no SLA).")
    high: float | None = Field(30, gt=0, description="Days to fix a high finding.")
    medium: float | None = Field(90, gt=0, description="Days to fix a medium finding.")
    low: float | None = Field(180, gt=0, description="Days to fix a low finding.")
    info: float | None = Field(None, gt=0, description="Days to fix an info finding.")


class PipelineConfig(StrictModel):
    batch_events: int = Field(100, ge=1, le=10_000, description="Stored events processed per round.")
    safety_net_secs: float = Field(5.0, gt=0, description="Interval of the job that picks up anything missed.")
    claim_lease_secs: float = Field(
        120.0, ge=1, description="How long a claimed delivery stays in flight before it is given back to pending "
        "if its result was never recorded (a store fault, a lost task); an attempt still running is never taken back.")
    render_process: bool | None = Field(
        None, description="Render big SIEM batches (splunk_hec, sentinel, elastic) in a child process, on another "
        "core than the event loop; default: on when the machine has 2 or more CPUs.")


class ApiConfig(StrictModel):
    enabled: bool = Field(True, description="Serve /api/v1 (bearer tokens from `hub tokens create`).")
    source: Name = Field("api", description="Source name of findings posted to POST /api/v1/findings.")
    rate_limit_per_min: int = Field(600, ge=1, description="Requests per minute per token (429 above).")
    max_body_bytes: int = Field(10_485_760, gt=0, description="Largest POST /api/v1/findings body.")


class ConsoleConfig(StrictModel):
    enabled: bool = Field(True, description="Serve the operator console at /ui/ (log in with an API token); off: "
                          "/ui/ is 404.")
    session_hours: float = Field(12, gt=0, le=720, description="How long a console login lasts.")
    session_secret: SecretStr | None = Field(None, min_length=32, description="Key that signs console sessions "
                                             "(32+ characters, e.g. from ${HUB_CONSOLE_SECRET}); unset: a random "
                                             "key per process start, so every restart ends the sessions.")
    public_url: str | None = Field(None, description="Where people reach the console, e.g. https://hub.example.com: "
                                   "JSON log lines then carry event_url, delivery_url and finding_url, and "
                                   "templates get links.event, links.delivery and links.finding (permalinks).")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL, e.g. https://hub.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment: the console's paths are added to it")
        return value.rstrip("/")


class LoggingConfig(StrictModel):
    format: Literal["text", "json"] = Field("text", description="text: one readable line per record; json: one "
                                            "JSON object per line (ts, level, logger, message, and event_id, "
                                            "delivery_id, finding_id, target, source when the line is about one).")
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged (hub serve --log-level overrides it). Below debug, the "
        "scheduler's per-run lines are not logged; its warnings and errors are.")


class HubConfig(StrictModel):
    server: ServerConfig = Field(ServerConfig(), description="The HTTP listener.")
    storage: StorageConfig = Field(StorageConfig(), description="The SQLite store.")
    sources: dict[Name, SourceConfig] = Field(default_factory=dict, description="Inbound webhooks by name.")
    routes: list[RouteConfig] = Field(default_factory=list, description="Which events go to which targets.")
    targets: dict[Name, dict[str, Any]] = Field(default_factory=dict, description="Where deliveries go, by name.")
    sla: SlaConfig = Field(SlaConfig(), description="Days to fix, by severity: sets sla_due_at.")
    pipeline: PipelineConfig = Field(PipelineConfig(), description="Event processing settings.")
    api: ApiConfig = Field(ApiConfig(), description="The hub's own HTTP API.")
    console: ConsoleConfig = Field(ConsoleConfig(), description="The operator console at /ui/.")
    logging: LoggingConfig = Field(LoggingConfig(), description="Log format and level.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.api.enabled and self.api.source in self.sources:
            yield ("api", "source"), f"{self.api.source!r} is also a configured source; give the API another name"
        yield from self._scope_problems()
        seen: set[str] = set()
        for i, route in enumerate(self.routes):
            if route.name in seen:
                yield ("routes", i, "name"), f"route name {route.name!r} is used twice"
            seen.add(route.name)
            for j, name in enumerate(route.from_ or []):
                if name not in self.source_names:
                    yield ("routes", i, "from", j), _unknown("source", name, self.source_names)
            for j, name in enumerate(route.to):
                if name not in self.targets:
                    yield ("routes", i, "to", j), _unknown("target", name, list(self.targets))

    def _scope_problems(self) -> Iterator[tuple[Loc, str]]:
        """Sources of one fingerprint scope must hash the same inputs, or the same issue would still be two findings."""
        first: dict[str, tuple[str, FingerprintConfig]] = {}
        for name, src in self.sources.items():
            fp = src.fingerprint
            if fp.scope is None:
                continue
            if fp.scope in self.sources and fp.scope != name and self.sources[fp.scope].fingerprint.scope != fp.scope:
                yield ("sources", name, "fingerprint", "scope"), \
                    f"{fp.scope!r} is a source outside this scope; give its fingerprint scope: {fp.scope} too, " \
                    "or name the scope differently"
            if fp.scope not in first:
                first[fp.scope] = (name, fp)
                continue
            other, ofp = first[fp.scope]
            explicit = ("use" in fp.model_fields_set, "use" in ofp.model_fields_set)
            if explicit[0] != explicit[1] or (fp.use, fp.fields) != (ofp.use, ofp.fields):
                yield ("sources", name, "fingerprint"), \
                    f"shares scope {fp.scope!r} with source {other!r} but not its use/fields; give both the same"

    @property
    def source_names(self) -> list[str]:
        """Configured sources, plus the API's pseudo-source when the API is on."""
        return [*self.sources, *([self.api.source] if self.api.enabled else [])]


def _unknown(kind: str, name: str, known: list[str]) -> str:
    return unknown_message(kind, name, known) if known else f"unknown {kind} {name!r} (none configured)"


# Sections whose entries are checked one by one when the whole config fails, so that one broken
# entry does not hide the cross-field problems of the others.
SECTIONS: dict[str, type[StrictModel]] = {"sources": SourceConfig}


def parse(doc: YamlDoc) -> tuple[HubConfig | None, list[Problem]]:
    """First phase: the file against the models and their cross-field rules. The model is None when the file
    does not fit it; the problems are all those found, the document's own included."""
    problems = list(doc.problems)
    if doc.data is None and problems:
        raise ConfigError(problems)
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem(doc.file, 1, "",
                                   "the config must be a mapping of keys (server, storage, sources, ...)")])
    try:
        config = HubConfig.model_validate(doc.data)
    except ValidationError as exc:
        return None, [*problems, *translate(doc, exc, HubConfig), *_entry_problems(doc)]
    return config, [*problems, *(doc.problem(loc, msg) for loc, msg in config.problems())]


def _entry_problems(doc: YamlDoc) -> list[Problem]:
    out = []
    for section, model in SECTIONS.items():
        entries = doc.data.get(section)
        items = entries.items() if isinstance(entries, dict) else \
            enumerate(entries) if isinstance(entries, list) else []
        for key, raw in items:
            try:
                entry = model.model_validate(raw)
            except ValidationError:
                continue
            out += [doc.problem((section, key, *loc), msg) for loc, msg in entry.problems()]
    return out
