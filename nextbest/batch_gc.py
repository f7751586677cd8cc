"""Batches without the cyclic garbage collector's passes (`gc_paused`): what the decision engine's batches use."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_gc_lock = threading.Lock()
_gc_pauses = 0  # batches deciding now (the collector resumes after the last)
_gc_enabled = [True]  # whether it was on when the first of them started


@contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection while a batch is decided: a batch allocates millions of small objects
    and the collector's passes over the process's heap (a campaign holds its audience's rows) took ~30% of a
    batch's CPU; the decisions make (almost) no reference cycles, and collection resumes after the batch (nested
    and concurrent batches: after the last one)."""
    global _gc_pauses
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_enabled[0] = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_enabled[0]:
                gc.enable()
