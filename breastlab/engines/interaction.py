"""Click rounds inside MONAI's trainer/evaluator iterations, with DeepEdit's automatic mode."""

from __future__ import annotations

import numpy as np
from monai.apps.deepgrow.interaction import Interaction
from monai.utils import CommonKeys


class ClickInteraction(Interaction):
    """MONAI deepgrow's ``Interaction`` (``max_interactions`` rounds of predict → ``transforms`` (add a click) inside
    each trainer/evaluator iteration; in training a round clicks with probability 1 − round/max_interactions) with
    DeepEdit's automatic mode: with probability ``automatic_probability`` a batch runs with its click channels
    zeroed (1.0: always, to evaluate the automatic mode). MONAI's deepedit ``Interaction`` zeroes the clicks of
    only the first item of a batch, so it is not used."""

    def __init__(self, transforms, max_interactions: int, train: bool, automatic_probability: float = 0.0,
                 seed: int | None = None):
        super().__init__(transforms, max_interactions, train)
        self.automatic_probability = automatic_probability
        self.rng = np.random.RandomState(seed)
        if seed is not None:
            self.transforms.set_random_state(seed=seed)

    def __call__(self, engine, batchdata: dict) -> dict:
        if self.rng.random_sample() < self.automatic_probability:
            image = batchdata[CommonKeys.IMAGE].clone()
            image[:, 1:] = 0
            return engine._iteration(engine, {**batchdata, CommonKeys.IMAGE: image})
        return super().__call__(engine, batchdata)
