"""Pausing Python's cyclic garbage collector around work that allocates in bulk."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block.

    For work that allocates many short-lived, acyclic objects (a mailing's planned rows, a
    webhook batch's thousand events): each young-generation collection walks them all again,
    and every tenth promotes them to be walked once more, for nothing; reference counting
    frees them anyway. The few cycles made meanwhile wait for the next collection. The
    collector is process-wide, so other threads collect later too; the first block to pause it
    is the one that turns it back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
