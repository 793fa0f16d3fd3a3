"""The dispatcher: outbox rows -> render -> send -> classify -> record, one worker per target.

Rows are the truth: a worker claims due deliveries (marking them in flight, under a lease, in a committed write),
delivers them, and records each verdict: OK -> done, RETRY -> pending again at the next time of the
schedule (or Retry-After), PERMANENT or schedule used up -> dead, with the reason. A crash leaves
rows in flight; the next start puts them back to pending, so nothing acknowledged is lost.

Each target has its own concurrency, token bucket and circuit breaker, so one dead target never
delays another. Targets whose connector ``SupportsBatch`` get many items per request and one verdict
per item. The worker wakes at once when the pipeline adds rows; the scheduler's safety-net job wakes
every worker periodically in case a wake-up was missed.

The modules: ``worker`` (when to claim and send: capacity, batches, probes), ``health`` (whether the target may
be tried: the breaker, a 429's pause), ``items`` (what a connector is
handed: items built in the loop or encoded by the render process), ``verdicts`` (recording what the target said,
and keeping it when the store cannot take it yet), ``dispatcher`` (the workers together: start, leases, wake-ups).
"""

from hub.delivery.dispatcher import Dispatcher
from hub.delivery.worker import Worker

__all__ = ["Dispatcher", "Worker"]
