"""Active-learning strategies that stay fast on large datastores."""

from __future__ import annotations

import random
import threading
import time

from monailabel.interfaces.tasks.strategy import Strategy

from breastlab.server.datastore.review import Review, is_read, readers_of
from breastlab.server.datastore.score_index import ScoreIndex
from breastlab.server.http import errors

MAX_TOP_K = 100
MAX_READERS = 10


class HandOuts:
    """Images handed to an annotator in the last ``hold_seconds`` (in memory), shared by the strategies."""

    def __init__(self, hold_seconds: float = 600):
        self.hold_seconds = hold_seconds
        self.lock = threading.Lock()
        self._times: dict[str, float] = {}

    def recent(self) -> set[str]:
        now = time.monotonic()
        self._times = {i: t for i, t in self._times.items() if now - t < self.hold_seconds}
        return set(self._times)

    def add(self, image_id: str) -> None:
        self._times[image_id] = time.monotonic()


class RandomUnlabeled(Strategy):
    """A random image without a final label, not handed to anyone recently.

    MONAI Label's ``Random`` reads every image's info and rewrites the whole datastore index on each
    call (about 10 s at 2,000 images, MONAILabel#1236). This one samples ids directly.
    """

    def __init__(self, hand_outs: HandOuts):
        super().__init__("Random image without a final label (recently handed-out images skipped)")
        self.hand_outs = hand_outs

    def __call__(self, request, datastore):
        with self.hand_outs.lock:
            image_id = datastore.random_unlabeled(exclude=self.hand_outs.recent()) or datastore.random_unlabeled()
            if image_id is not None:
                self.hand_outs.add(image_id)
        return {"id": image_id} if image_id else None


class TopScored(Strategy):
    """The unlabelled image with the highest score in the index of a scoring job (``top_k`` for more): the most
    uncertain, or the first in a diversity order.

    Falls back to ``RandomUnlabeled`` (and says so) while no scored image is left.
    """

    def __init__(self, method: str, hand_outs: HandOuts, description: str = ""):
        super().__init__(f"{description or f'Highest {method!r} score'} among images without a final label; "
                         "param top_k (1-100)")
        self.method, self.hand_outs = method, hand_outs
        self.fallback = RandomUnlabeled(hand_outs)
        self._indexes: dict[str, ScoreIndex] = {}

    def __call__(self, request, datastore):
        k = errors.integer_param(request.get("top_k", 1), "top_k", MAX_TOP_K)
        index = self._indexes.setdefault(datastore.root, ScoreIndex.of(datastore.root, self.method)).load()
        objects = datastore.objects
        with self.hand_outs.lock:
            recent = self.hand_outs.recent()
            top = index.top(k, skip=lambda i: i in recent or i not in objects
                            or is_read(objects[i].labels))
            if top:
                self.hand_outs.add(top[0][0])
        if not top:
            result = self.fallback(request, datastore)
            return {**result, "fallback": "random"} if result else None
        return {"id": top[0][0], "score": top[0][1], "top": [{"id": i, "score": s} for i, s in top],
                "scored_with": index.meta}



class ReviewQueue(Strategy):
    """For a reviewer: the image awaiting review (two or more readers, not approved or returned) whose readers agree
    least (mean pairwise Dice) first; handing it out puts it in review."""

    def __init__(self, hand_outs: HandOuts):
        super().__init__("Lowest reader agreement first among images awaiting review (2+ readers)")
        self.hand_outs = hand_outs

    def __call__(self, request, datastore):
        review = Review.of(datastore)
        with self.hand_outs.lock:
            recent = self.hand_outs.recent()
            waiting = [i for i, obj in datastore.objects.items() if len(readers_of(obj.labels)) >= 2
                       and i not in recent and review.status(i)["status"] in ("labelled", "in_review")]
            if not waiting:
                return None
            image = min(waiting, key=lambda i: (_or_one(review.agreement(i)["mean_dice"]), i))
            self.hand_outs.add(image)
        review.start(image, request["reader"])
        return {"id": image, "mean_dice": review.agreement(image)["mean_dice"], "waiting": len(waiting)}


class SecondRead(Strategy):
    """For a reader: an image returned to them first; else one with fewer than ``readers`` readers (param, default
    2), none of them this reader and not approved, the most-read first (pairs are completed before new images)."""

    def __init__(self, hand_outs: HandOuts):
        super().__init__("An image returned to this reader, else one with fewer than N readers (param readers, "
                         "default 2) and none by this reader")
        self.hand_outs = hand_outs

    def __call__(self, request, datastore):
        reader, needed = request["reader"], errors.integer_param(request.get("readers", 2), "readers", MAX_READERS)
        review = Review.of(datastore)
        with self.hand_outs.lock:
            recent, returned, open_ = self.hand_outs.recent(), [], {}
            for image, obj in datastore.objects.items():
                readers = readers_of(obj.labels)
                state = review.status(image)["status"] if readers else "unlabelled"  # no events to replay
                if reader in readers and state == "returned":  # whoever had it last (the reviewer) is done with it
                    returned.append(image)
                elif reader not in readers and image not in recent and len(readers) < needed and state not in (
                        "approved", "returned"):
                    open_.setdefault(len(readers), []).append(image)
            if not returned and not open_:
                return None
            image = returned[0] if returned else random.choice(open_[max(open_)])
            self.hand_outs.add(image)
        return {"id": image, **review.status(image)}


def _or_one(value: float | None) -> float:
    return 1.0 if value is None else value
