"""Pausing Python's cycle collector while a large acyclic heap (parsed JSON) is built.

Parsed JSON holds no reference cycles, so the collector finds nothing to free while an export is
read; left on, it re-scans the growing heap again and again (three quarters of the time spent
reading a Bulk Data export). Garbage is still freed by reference counting while paused.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """Overlapping pauses (several threads reading exports) resume the collector once, at the
    end of the last one, and only when it was enabled before the first one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._resume = False

    def begin(self) -> None:
        with self._lock:
            if self._active == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._active += 1

    def end(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active:
                return
            if not gc.get_freeze_count():  # never thaw what someone else froze (pre-fork)
                # freeze + unfreeze moves the new objects to the oldest generation without a
                # scan; otherwise the first young collections after the pause scan them all
                gc.freeze()
                gc.unfreeze()
            if self._resume:
                gc.enable()


_PAUSES = _Pauses()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cycle collector for the duration; its state is restored afterwards."""
    _PAUSES.begin()
    try:
        yield
    finally:
        _PAUSES.end()
