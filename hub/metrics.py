"""Prometheus metrics, one registry per hub instance (tests build many hubs in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # the *_created series double the output and nobody graphs them

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.received = Counter("hub_webhooks_received_total", "Webhook requests received.", ["source"], registry=r)
        self.rejected = Counter("hub_webhooks_rejected_total", "Webhook requests rejected.", ["source", "reason"],
                                registry=r)
        self.stored = Counter("hub_events_stored_total", "Events committed to the store.", ["source"], registry=r)
        self.duplicate = Counter("hub_events_duplicate_total", "Events answered as duplicates.", ["source"],
                                 registry=r)
        self.latency = Histogram("hub_http_request_duration_seconds", "Time to answer a webhook request.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.commit_batch = Histogram("hub_store_commit_batch_size", "Writes per group commit.",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)
        self.commit_seconds = Histogram("hub_store_commit_seconds", "Time of one group commit, fsync included.",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.write_queue = Gauge("hub_store_write_queue", "Writes waiting for the next commit.", registry=r)
        self.events_processed = Counter("hub_events_processed_total", "Stored events processed, by result.",
                                        ["source", "result"], registry=r)
        self.route_errors = Counter("hub_route_errors_total", "Events a route was skipped for because its `when` "
                                    "failed on them (the other routes still delivered).", ["route"], registry=r)
        self.deliveries = Counter("hub_deliveries_total", "Delivery attempts by target and outcome.",
                                  ["target", "outcome"], registry=r)
        self.delivery_latency = Histogram("hub_delivery_latency_seconds", "Received -> delivered, end to end.",
                                          ["target"], buckets=(*LATENCY_BUCKETS, 10.0, 30.0, 60.0, 300.0), registry=r)
        self.queue_depth = Gauge("hub_delivery_queue_depth", "Deliveries pending or in flight.", ["target"], registry=r)
        self.oldest_pending = Gauge("hub_delivery_oldest_pending_seconds", "Age of the oldest pending delivery.",
                                    ["target"], registry=r)
        self.dead_letters = Gauge("hub_dead_letters", "Dead letters waiting for a fix and a replay.", ["target"],
                                  registry=r)
        self.render_batches = Counter("hub_render_batches_total", "SIEM batches encoded, by where: the render "
                                      "process, or the event loop (small batch, no process, or it failed).",
                                      ["target", "where"], registry=r)
        self.dropped = Counter("hub_connections_dropped_total", "Connections the edge refused or closed, by reason "
                               "(over_capacity, header_timeout, body_timeout, headers_too_large, idle).", ["reason"],
                               registry=r)
        self.circuit_open = Gauge("hub_target_circuit_open",
                                  "1 while a target's circuit breaker is open or probing (half-open).", ["target"],
                                  registry=r)
        self.anonymous_limited = Counter("hub_api_anonymous_limited_total", "API requests without a valid token "
                                         "answered 429 (and not audited): past their address's budget.", registry=r)

    def on_batch(self, size: int, seconds: float) -> None:
        self.commit_batch.observe(size)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
