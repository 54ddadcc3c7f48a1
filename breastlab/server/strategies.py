"""Active-learning strategies that stay fast on large datastores."""

from __future__ import annotations

import threading
import time

from monailabel.interfaces.tasks.strategy import Strategy


class RandomUnlabeled(Strategy):
    """A random image without a final label, not handed to anyone in the last ``hold_seconds``.

    MONAI Label's ``Random`` reads every image's info and rewrites the whole datastore index on each
    call (about 10 s at 2,000 images, MONAILabel#1236). This one samples ids directly and keeps the
    recently handed-out ids in memory, so two annotators asking at once get different images.
    """

    def __init__(self, hold_seconds: float = 600):
        super().__init__("Random image without a final label (recently handed-out images skipped)")
        self.hold_seconds = hold_seconds
        self._handed_out: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, request, datastore):
        with self._lock:
            now = time.monotonic()
            self._handed_out = {i: t for i, t in self._handed_out.items() if now - t < self.hold_seconds}
            image_id = datastore.random_unlabeled(exclude=self._handed_out.keys())
            if image_id is None:
                image_id = datastore.random_unlabeled()
            if image_id is None:
                return None
            self._handed_out[image_id] = now
            return {"id": image_id}
