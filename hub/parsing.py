"""Which adapter parses a stored event, and how its findings are fingerprinted: per source, built once from config.

A source's webhooks go to its ``adapter``; the pages its poller stores go to ``poll.adapter`` when that differs
(a platform whose REST records are shaped unlike its webhooks). ``POST /api/v1/findings`` is a source of its own,
parsed as Strobes-shaped items and identified by the tool's ids.
"""

from __future__ import annotations

from hub.adapters import Adapter, Parsed, adapter_class
from hub.config import FingerprintConfig, SourceConfig
from hub.lifecycle import scope_peers
from hub.pollmarks import PAGE, PollComplete
from hub.settings import Settings
from hub.store.events import StoredEvent


class SourceParsers:
    def __init__(self, config: Settings):
        sources = config.sources
        self.adapters: dict[str, Adapter] = {
            name: adapter_class(src.adapter)(name, config.adapter_options(name))
            for name, src in sources.items() if src.adapter}
        self.poll_adapters: dict[str, Adapter] = {
            name: adapter_class(src.poll.adapter)(name, None) for name, src in sources.items()
            if src.poll is not None and src.poll.adapter and src.poll.adapter != src.adapter}
        self.fingerprints = {name: self._fingerprint_config(name, src) for name, src in sources.items()}
        if config.api.enabled:
            api = config.api.source
            self.adapters[api] = adapter_class("strobes")(api, None)
            self.fingerprints[api] = FingerprintConfig(use="tool_id")
        self.peers = scope_peers(self.fingerprints)  # sources that share a fingerprint scope

    def _fingerprint_config(self, name: str, src: SourceConfig) -> FingerprintConfig:
        """The source's own setting, else its adapter's default (tool_id for platforms whose follow-ups carry only
        ids)."""
        if "use" in src.fingerprint.model_fields_set:
            return src.fingerprint
        adapter = self.adapters.get(name) or self.poll_adapters.get(name)
        return FingerprintConfig(use=getattr(adapter, "fingerprint", "default"), scope=src.fingerprint.scope)

    def parse(self, event: StoredEvent) -> Parsed:
        """The findings (and ticket states, or the end of a full import) an event carries."""
        if (mark := PollComplete.of(event)) is not None:
            return Parsed(full_scope=mark.scope, unseen_since=mark.since)
        adapter = (self.poll_adapters.get(event.source) if event.verified_by == PAGE else None) \
            or self.adapters.get(event.source)
        return adapter.parse(event) if adapter else Parsed()
