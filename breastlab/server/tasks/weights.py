"""Served weights, swapped atomically: an inference uses one bundle's weights file under a shared lock from start to
end, ``PUT``/``DELETE /model`` replace or remove the file under the exclusive one, so an inference never sees the file
change or vanish between finding, loading and reporting it."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from breastlab.formats.checkpoints import read_state_dict


class SwapLock:
    """Many readers or one writer; a waiting writer goes before new readers (inferences cannot starve a swap)."""

    def __init__(self):
        self._changed = threading.Condition()
        self._readers = self._writers_waiting = 0
        self._writing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._changed:
            self._writers_waiting += 1
            self._changed.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._changed:
                self._writing = False
                self._changed.notify_all()


_LOCKS: defaultdict[str, SwapLock] = defaultdict(SwapLock)
_LOCKS_LOCK = threading.Lock()


def lock(bundle: str) -> SwapLock:
    """The swap lock of one bundle's served weights (this process)."""
    with _LOCKS_LOCK:
        return _LOCKS[bundle]


def read_served(paths: list[Path]) -> tuple[Path, dict, float]:
    """The last of ``paths`` that exists, read at once: (path, state dict, modification time). A file deleted or
    replaced meanwhile is skipped or read whole (an open file stays readable), never half-read."""
    for path in reversed(paths):
        try:
            with open(path, "rb") as f:
                return Path(path), read_state_dict(f), os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"none of the weights {', '.join(Path(p).name for p in paths)} exists")
