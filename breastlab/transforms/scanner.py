"""What differs between ultrasound machines, as training-time augmentation: ``scanner_augmentation()`` lists MONAI
transforms for gain, speckle, depth-dependent brightness and resolution, plus :class:`RandScreenMarksd` for the
calipers and text that some exports burn into the image."""

from __future__ import annotations

import torch
from monai.config import KeysCollection
from monai.transforms import (
    MapTransform,
    RandBiasFieldd,
    RandomizableTransform,
    RandRicianNoised,
    RandScaleIntensityd,
    RandSimulateLowResolutiond,
)


class RandScreenMarksd(RandomizableTransform, MapTransform):
    """Burn ``count`` marks into the image (1 channel, intensities in [0, 1]): caliper crosses ("+", 7-15 px) and
    text-like bars (a row of short bright dashes) at random places, at the image's brightest value. Masks are left
    alone: the marks are not lesion."""

    def __init__(self, keys: KeysCollection, prob: float = 0.3, count: tuple[int, int] = (1, 4)):
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)
        self.count = count

    def __call__(self, data: dict) -> dict:
        self.randomize(None)
        if not self._do_transform:
            return dict(data)
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = self.mark(out[key])
        return out

    def mark(self, image: torch.Tensor) -> torch.Tensor:
        image = image.clone()
        height, width = image.shape[-2:]
        value = image.max()
        for _ in range(self.R.randint(self.count[0], self.count[1] + 1)):
            y, x = self.R.randint(0, height), self.R.randint(0, width)
            if self.R.rand() < 0.5:
                arm = self.R.randint(3, 8)
                image[..., max(y - arm, 0):y + arm + 1, x] = value
                image[..., y, max(x - arm, 0):x + arm + 1] = value
            else:
                for start in range(x, min(x + self.R.randint(20, 80), width), 6):
                    image[..., y:y + 2, start:start + 4] = value
        return image


def scanner_augmentation(image_key: str = "image", prob: float = 0.3) -> list:
    """Gain (intensity scale), speckle (Rician noise, as envelope-detected echoes), time-gain and depth differences
    (a smooth multiplicative bias field), lower resolution (down- then up-sampling), burnt-in marks."""
    return [
        RandScaleIntensityd(image_key, factors=0.3, prob=prob),
        RandRicianNoised(image_key, prob=prob, std=0.05, relative=True, sample_std=True),
        RandBiasFieldd(image_key, degree=2, coeff_range=(0.0, 0.3), prob=prob),
        RandSimulateLowResolutiond(image_key, prob=prob, downsample_mode="area", upsample_mode="bilinear",
                                   zoom_range=(0.5, 1.0)),
        RandScreenMarksd(image_key, prob=prob),
    ]


__all__ = ["RandScreenMarksd", "scanner_augmentation"]
