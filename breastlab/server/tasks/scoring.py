"""Scoring jobs for active learning: score every unlabelled image once, write the scores to an index; embed every
image and write the diverse and hybrid hand-out orders."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monailabel.interfaces.tasks.scoring import ScoringMethod

from breastlab.activelearning.diversity import ImageEncoder, grouping, selection_order
from breastlab.activelearning.uncertainty import lesion_uncertainty, predictive_entropy
from breastlab.bundle import Bundle
from breastlab.progress import progress
from breastlab.server.datastore.score_index import EmbeddingIndex, ScoreIndex
from breastlab.server.http import errors
from breastlab.server.tasks.weights import read_served

FLUSH_EVERY = 50  # images between index writes, so a long job shows progress
DEFAULT_BUDGET = 20  # images per labelling round: diversity clusters = labelled images + budget
MAX_BUDGET = 10_000


class UncertaintyScoring(ScoringMethod):
    """Scores every unlabelled image with one bundle's uncertainty, written to one index.

    Segmentation bundles: how much the lesion masks of four test-time flips disagree (``lesion_uncertainty``);
    classifiers: the predictive entropy of their class probabilities. Request params: ``model`` (default: the
    first bundle). Uses the weights being served. Afterwards the ``hybrid`` order is rewritten with these scores.
    """

    name = "uncertainty"

    def __init__(self, bundles: dict[str, Bundle], weights: dict[str, list[Path]]):
        super().__init__("Uncertainty: flip disagreement of lesion masks (segmentation), class entropy (classifiers)")
        self.bundles = bundles
        self.weights = weights

    def __call__(self, request, datastore):
        model = request.get("model") or next(iter(self.bundles), None)
        if model not in self.bundles:
            raise errors.not_found(f"no model {model!r}; available: {', '.join(self.bundles)}")
        path, state, modified = read_served(self.weights[model])  # as the infer task: the last that exists
        score = self.scorer(self.bundles[model], state)
        index = ScoreIndex.of(datastore.root, self.name)
        meta = {"model": model, "measure": score.__name__, "weights": path.name, "weights_modified": modified}
        scores: dict[str, float] = {}
        images = datastore.get_unlabeled_images()
        for n, image_id in enumerate(progress(images, f"{self.name} scores ({model})"), start=1):
            scores[image_id] = score(datastore.get_image_uri(image_id))
            if n % FLUSH_EVERY == 0:
                index.save(scores, **meta, complete=False)
        index.save(scores, **meta, complete=True, finished=time.time())
        write_orders(datastore)
        return {"method": self.name, "model": model, "measure": score.__name__, "scored": len(scores),
                "index": index.path.relative_to(datastore.root).as_posix()}  # no server path

    @staticmethod
    def scorer(bundle: Bundle, weights: Path | dict) -> Callable[[str], float]:
        """image path → uncertainty, by the bundle's task, with ``weights`` (a file or a state dict)."""
        predictor = bundle.predictor(weights)

        def flip_disagreement(path: str) -> float:
            return lesion_uncertainty(predictor.network, predictor.network_input(path), predictor.inferer)

        def class_entropy(path: str) -> float:
            probabilities = torch.tensor(list(predictor(path)["class_probabilities"].values()))
            return float(predictive_entropy(probabilities))

        return class_entropy if bundle.task == "classification" else flip_disagreement


class DiversityScoring(ScoringMethod):
    """Embeds every image with an ImageNet encoder (only images new or changed since the last run), then writes the
    ``diverse`` and ``hybrid`` hand-out orders. Request params: ``budget`` (images per labelling round, default 20).
    """

    name = "diversity"

    def __init__(self):
        super().__init__("Diversity: ImageNet features, k-means clusters, typical images first (TypiClust)")

    def __call__(self, request, datastore):
        budget = errors.integer_param(request.get("budget", DEFAULT_BUDGET), "budget", MAX_BUDGET)
        images = {i: path for i in datastore.list_images() if (path := datastore.get_image_uri(i))}
        encoder = ImageEncoder()
        shown = partial(progress, desc="diversity embeddings")
        ids, vectors, encoded = EmbeddingIndex.of(datastore.root).update(images, encoder, encoder.name, shown)
        orders = write_orders(datastore, budget, ids, vectors)
        return {"method": self.name, "encoder": encoder.name, "embedded": len(ids), "encoded": encoded, **orders}


def write_orders(datastore, budget: int | None = None, ids: list[str] | None = None,
                 vectors: np.ndarray | None = None) -> dict:
    """Rewrite the ``diverse`` and ``hybrid`` indexes (score: higher is handed out first) from the stored embeddings
    and the current final labels. ``hybrid`` uses the uncertainty index's scores when it has any, and is ``diverse``
    until then. Without embeddings (no diversity job yet) nothing is written."""
    root = datastore.root
    if ids is None:
        _, entries = EmbeddingIndex.of(root).load()
        present = set(datastore.list_images())
        ids = [i for i in entries if i in present]
        vectors = np.stack([entries[i][1] for i in ids]).astype(np.float32) if ids else None
    if not ids:
        return {"diverse": 0, "hybrid": 0}
    previous = ScoreIndex.of(root, "diverse").load().meta
    budget = budget or previous.get("budget", DEFAULT_BUDGET)
    final = set(datastore.get_labeled_images())
    labelled = np.array([i in final for i in ids])
    uncertain = ScoreIndex.of(root, UncertaintyScoring.name).load()
    measured = {"diverse": None, "hybrid": None}
    if uncertain.scores:
        measured["hybrid"] = np.array([uncertain.scores.get(i, -1.0) for i in ids])
    written, groups = {}, grouping(vectors, labelled, budget)
    for method, uncertainty in measured.items():
        order = selection_order(vectors, labelled, budget, uncertainty, groups=groups)
        scores = {ids[row]: float(len(order) - n) for n, row in enumerate(order)}
        ScoreIndex.of(root, method).save(scores, budget=budget, labelled=int(labelled.sum()), finished=time.time(),
                                         uncertainty=uncertain.meta if uncertainty is not None else None)
        written[method] = len(scores)
    return written

