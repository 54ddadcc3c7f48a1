"""Scoring jobs for active learning: score every unlabelled image once, write the scores to an index."""

from __future__ import annotations

import os
import time
from pathlib import Path

from monailabel.interfaces.tasks.scoring import ScoringMethod
from tqdm import tqdm

from breastlab.bundle import Bundle
from breastlab.server import errors
from breastlab.server.scores import ScoreIndex
from breastlab.uncertainty import tta_variance

FLUSH_EVERY = 50  # images between index writes, so a long job shows progress


class TTAUncertaintyScoring(ScoringMethod):
    """Test-time-augmentation variance (four flips) of a segmentation bundle on every unlabelled image.

    Request params: ``model`` (default: the first segmentation bundle). Uses the weights being served.
    """

    name = "tta_uncertainty"

    def __init__(self, bundles: dict[str, Bundle], weights: dict[str, list[Path]]):
        super().__init__("Segmentation uncertainty: variance of the predictions under four flips")
        self.bundles = {n: b for n, b in bundles.items() if b.task == "segmentation"}
        self.weights = weights

    def __call__(self, request, datastore):
        model = request.get("model") or next(iter(self.bundles), None)
        if model not in self.bundles:
            raise errors.not_found(f"no segmentation model {model!r}; available: {', '.join(self.bundles)}")
        weights = [p for p in self.weights[model] if p.is_file()][-1]  # as the infer task: the last that exists
        predictor = self.bundles[model].predictor(weights)
        index = ScoreIndex.of(datastore.root, self.name)
        meta = {"model": model, "weights": weights.name, "weights_modified": os.stat(weights).st_mtime}
        scores: dict[str, float] = {}
        images = datastore.get_unlabeled_images()
        for n, image_id in enumerate(tqdm(images, desc=f"{self.name} ({model})", unit="image"), start=1):
            image = predictor.network_input(datastore.get_image_uri(image_id))
            scores[image_id] = tta_variance(predictor.network, image)
            if n % FLUSH_EVERY == 0:
                index.save(scores, **meta, complete=False)
        index.save(scores, **meta, complete=True, finished=time.time())
        return {"method": self.name, "model": model, "scored": len(scores), "index": str(index.path)}
