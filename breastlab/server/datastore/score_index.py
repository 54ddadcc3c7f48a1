"""Per-image scores of a scoring job, kept in one index file so a strategy never re-reads images."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from breastlab.formats.png import write_atomic, write_text_atomic


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


class EmbeddingIndex:
    """``<studies>/.breastlab/scores/embeddings.npz``: one feature vector (float16) per image, with the image file's
    size and modification time, so an update encodes only new or changed images."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, studies: str | Path) -> "EmbeddingIndex":
        return cls(Path(studies) / ".breastlab" / "scores" / "embeddings.npz")

    def load(self) -> tuple[str, dict[str, tuple[tuple[int, int], np.ndarray]]]:
        """(encoder name, {image id: ((size, mtime ns), vector)}); empty when there is no index yet."""
        if not self.path.is_file():
            return "", {}
        with np.load(self.path) as content:
            keys = zip(content["sizes"].tolist(), content["mtimes"].tolist())
            return str(content["encoder"]), dict(zip(content["ids"].tolist(), zip(keys, content["vectors"])))

    def update(self, images: dict[str, str], encode: Callable[[str], np.ndarray], encoder: str,
               progress: Callable = iter) -> tuple[list[str], np.ndarray, int]:
        """Vectors of ``images`` ({id: path}), encoding only those new or changed since the last update (all of
        them for another encoder); stale ids are dropped. Returns (ids, vectors, how many were encoded)."""
        name, entries = self.load()
        entries = entries if name == encoder else {}
        kept, encoded = {}, 0
        for image_id in progress(sorted(images)):
            stat = os.stat(images[image_id])
            key = (stat.st_size, stat.st_mtime_ns)
            if image_id in entries and entries[image_id][0] == key:
                kept[image_id] = entries[image_id]
            else:
                kept[image_id] = (key, np.asarray(encode(images[image_id]), np.float16))
                encoded += 1
        ids = list(kept)
        vectors = np.stack([kept[i][1] for i in ids]) if ids else np.zeros((0, 0), np.float16)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, lambda f: np.savez(
            f, encoder=encoder, ids=np.array(ids, dtype=str), vectors=vectors,
            sizes=np.array([kept[i][0][0] for i in ids], np.int64), mtimes=np.array([kept[i][0][1] for i in ids],
                                                                                    np.int64)))
        return ids, vectors.astype(np.float32), encoded
