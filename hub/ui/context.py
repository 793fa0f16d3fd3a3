"""What the console uses of the running hub, handed over by hub/runtime.py (the console never sees the hub)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hub.connector import Connector
from hub.metrics import Metrics
from hub.settings import Settings
from hub.store import Store


@dataclass(frozen=True)
class ConsoleContext:
    store: Store
    settings: Settings  # routes for Explain, the console section, target names for the filters
    metrics: Metrics  # rejected and duplicate requests, circuit state
    clock: Callable[[], float]
    connectors: Mapping[str, Connector]  # to render a delivery's request as it would be sent (secrets masked)
    on_stored: Callable[[], None]  # events were put back to pending: the pipeline processes them now
    wake_deliveries: Callable[[], None]  # deliveries were put back to pending: the workers claim them now
