"""Cyclic garbage collection held off while a ranking pass runs.

Why: a worker's model is millions of Python objects (ids, per-user entries), and a pass allocates
tens of thousands more (each list's ``(item, score)`` pairs, which outlive it). Whichever
allocation crosses CPython's threshold pays a *full* collection, a walk over every tracked
object: about 0.23 s at 100k users x 100k items, landing inside a pass of about a thousand lists
as 0.24 ms per list (measured with ``gc.callbacks`` in the ``streamrec bench scale`` setting), in
some passes and not others. A pass makes no reference cycles of its own (arrays, tuples of
strings and floats, closures it drops at its end), so nothing it frees waits for the collector;
holding collection off during the pass moves that walk to the consume loop, where it delays one
event rather than every list of a pass. The collector runs as before once the pass ends (the
thresholds are untouched, the next allocation past them collects).

``gc.disable`` is process-wide: nested or concurrent pauses re-enable only where the outermost
one had found collection on.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def collection_paused() -> Iterator[None]:
    """Hold off cyclic collection inside the block (nested blocks: the outermost restores).

    >>> gc.isenabled()
    True
    >>> with collection_paused():
    ...     with collection_paused():
    ...         inner = gc.isenabled()
    ...     still = gc.isenabled()
    >>> inner, still, gc.isenabled()
    (False, False, True)
    """
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
