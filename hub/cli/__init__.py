"""The ``hub`` command. The only place where errors become text and exit codes.

Exit codes: 0 success, 1 the operation failed (a request was refused, a record is missing),
2 invalid configuration or arguments. The group and its shared helpers are in ``common``; each module beside it
adds its commands to the group when imported here.
"""

from hub.cli import deliveries, events, explain, findings, intake, mappings, poll, prune, sla, store, tokens
from hub.cli.common import main

__all__ = ["deliveries", "events", "explain", "findings", "intake", "main", "mappings", "poll", "prune", "sla",
           "store", "tokens"]
