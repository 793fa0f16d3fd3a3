"""A progress bar for long CLI work (bulk replay, reprocess, prune) when stdout is a terminal.

Piped or redirected (a cron job, CI, ``| tee``), the bar would be a stream of control characters in a file: the
command prints nothing while it works and its one summary line at the end, as always.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import click


def is_terminal() -> bool:
    return sys.stdout.isatty()


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``: a bar of ``total`` steps on a terminal, a no-op otherwise."""
    if total <= 0 or not is_terminal():
        yield lambda n: None
        return
    with click.progressbar(length=total, label=label, show_pos=True, show_eta=True) as bar:
        yield bar.update
