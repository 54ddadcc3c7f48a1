"""Per-image scores of a scoring job, kept in one index file so a strategy never re-reads images."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from breastlab.formats.png import write_text_atomic


class ScoreIndex:
    """``<studies>/.breastlab/scores/<method>.json``: ``{"scores": {image id: score}, ...metadata}``.

    Written atomically by the scoring job (another process); readers reload it when its modification
    time changes and keep the ids sorted by score, so ``top`` costs O(k + skipped ids).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta: dict = {}
        self.scores: dict[str, float] = {}
        self._order: list[str] = []
        self._mtime: float | None = None

    @classmethod
    def of(cls, studies: str | Path, method: str) -> "ScoreIndex":
        return cls(Path(studies) / ".breastlab" / "scores" / f"{method}.json")

    def load(self) -> "ScoreIndex":
        """Re-read the file if it changed since the last load; an absent file is an empty index."""
        mtime = os.stat(self.path).st_mtime if self.path.is_file() else None
        if mtime != self._mtime:
            content = json.loads(self.path.read_text()) if mtime is not None else {"scores": {}}
            self.scores = content.pop("scores")
            self.meta = content
            self._order = sorted(self.scores, key=self.scores.__getitem__, reverse=True)
            self._mtime = mtime
        return self

    def save(self, scores: dict[str, float], **meta) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps({**meta, "scores": scores}))

    def top(self, k: int, skip: Callable[[str], bool]) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring ids for which ``skip(id)`` is false, highest first."""
        found = []
        for image_id in self._order:
            if not skip(image_id):
                found.append((image_id, self.scores[image_id]))
                if len(found) == k:
                    break
        return found
