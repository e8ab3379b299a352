"""Pausing Python's cyclic garbage collector around bulk batches.

A purge or sync batch allocates hundreds of thousands of short-lived objects (rows, ids, audit
details) that reference counting alone frees. The cyclic collector, triggered by allocation
counts, meanwhile rescans the growing batch again and again, for nothing: on a 100k-row external
purge that costs about a tenth of the run (`bench/connectors.py`), and half of reading the due
rows. It is paused while any batch runs and resumed when the last one ends, as it was before.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside; nested and concurrent uses resume it once, at the end."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
