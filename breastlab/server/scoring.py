"""Scoring jobs for active learning: score every unlabelled image once, write the scores to an index."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monailabel.interfaces.tasks.scoring import ScoringMethod
from tqdm import tqdm

from breastlab.bundle import Bundle
from breastlab.explain.uncertainty import predictive_entropy, tta_variance
from breastlab.server import errors
from breastlab.server.scores import ScoreIndex

FLUSH_EVERY = 50  # images between index writes, so a long job shows progress


class UncertaintyScoring(ScoringMethod):
    """Scores every unlabelled image with one bundle's uncertainty, written to one index.

    Segmentation bundles: the variance of the lesion map under four test-time flips; classifiers: the
    predictive entropy of their class probabilities. Request params: ``model`` (default: the first
    bundle). Uses the weights being served.
    """

    name = "uncertainty"

    def __init__(self, bundles: dict[str, Bundle], weights: dict[str, list[Path]]):
        super().__init__("Uncertainty: flip variance of the lesion map (segmentation), class entropy (classifiers)")
        self.bundles = bundles
        self.weights = weights

    def __call__(self, request, datastore):
        model = request.get("model") or next(iter(self.bundles), None)
        if model not in self.bundles:
            raise errors.not_found(f"no model {model!r}; available: {', '.join(self.bundles)}")
        weights = [p for p in self.weights[model] if p.is_file()][-1]  # as the infer task: the last that exists
        score = self.scorer(self.bundles[model], weights)
        index = ScoreIndex.of(datastore.root, self.name)
        meta = {"model": model, "measure": score.__name__, "weights": weights.name,
                "weights_modified": os.stat(weights).st_mtime}
        scores: dict[str, float] = {}
        images = datastore.get_unlabeled_images()
        for n, image_id in enumerate(tqdm(images, desc=f"{self.name} ({model})", unit="image", disable=None), start=1):
            scores[image_id] = score(datastore.get_image_uri(image_id))
            if n % FLUSH_EVERY == 0:
                index.save(scores, **meta, complete=False)
        index.save(scores, **meta, complete=True, finished=time.time())
        return {"method": self.name, "model": model, "measure": score.__name__, "scored": len(scores),
                "index": str(index.path)}

    @staticmethod
    def scorer(bundle: Bundle, weights: Path) -> Callable[[str], float]:
        """image path → uncertainty, by the bundle's task."""
        predictor = bundle.predictor(weights)

        def flip_variance(path: str) -> float:
            return tta_variance(predictor.network, predictor.network_input(path), predictor.inferer)

        def class_entropy(path: str) -> float:
            probabilities = torch.tensor(list(predictor(path)["class_probabilities"].values()))
            return float(predictive_entropy(probabilities))

        return class_entropy if bundle.task == "classification" else flip_variance
