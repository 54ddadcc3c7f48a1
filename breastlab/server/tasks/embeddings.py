"""Image embeddings of a promptable model, computed once per image and kept, so that a box or click round trip is
one decoder pass.

An entry is keyed by the image file (path, size, modification time) and the weights, so a changed image or new
weights miss it; at most ``capacity`` entries are kept (least recently used out first). A request for an image
whose embedding is being computed waits for that computation instead of starting another; ``prefetch`` starts one
in the background (when an image is handed out or uploaded), at most one waiting behind the one running, so that
a burst of uploads cannot queue unbounded work (``BREASTLAB_PREFETCH=0`` turns it off).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

logger = logging.getLogger(__name__)


def file_key(path: str) -> tuple:
    stat = os.stat(path)
    return path, stat.st_size, stat.st_mtime_ns


class EmbeddingCache:
    """``get(key, compute)`` returns the embedding stored under ``key``, computing it with ``compute()`` once."""

    def __init__(self, capacity: int = 50):
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._background = ThreadPoolExecutor(1, thread_name_prefix="embeddings")
        self._queued = 0  # background computations not started yet
        self.prefetching = os.environ.get("BREASTLAB_PREFETCH", "1") != "0"

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        """Computed or being computed."""
        return key in self._entries

    def get(self, key: Hashable, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        future, mine = self._claim(key)
        if mine:
            self._run(key, future, compute)
        return future.result()

    def prefetch(self, key: Hashable, compute: Callable[[], torch.Tensor]) -> None:
        with self._lock:
            if not self.prefetching or self._queued or key in self._entries:
                return
            self._queued += 1
        future, mine = self._claim(key)
        if mine:
            self._background.submit(self._run_queued, key, future, compute)
        else:
            with self._lock:
                self._queued -= 1

    def _run_queued(self, key: Hashable, future: Future, compute: Callable[[], torch.Tensor]) -> None:
        with self._lock:
            self._queued -= 1
        self._run(key, future, compute)

    def _claim(self, key: Hashable) -> tuple[Future, bool]:
        """The entry's future, and whether this caller must compute it (the first to ask)."""
        with self._lock:
            future = self._entries.get(key)
            if future is not None:
                self._entries.move_to_end(key)
                return future, False
            future = self._entries[key] = Future()
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return future, True

    def _run(self, key: Hashable, future: Future, compute: Callable[[], torch.Tensor]) -> None:
        try:
            future.set_result(compute().detach())
        except BaseException as e:  # the waiters get the error; the next request tries again
            with self._lock:
                if self._entries.get(key) is future:
                    del self._entries[key]
            future.set_exception(e)
            if not isinstance(e, Exception):
                raise
            logger.warning(f"embedding of {key!r} failed: {e}")
