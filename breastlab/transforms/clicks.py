"""Click-guided (DeepEdit-style) segmentation transforms: click channels, their Gaussian signal, simulated clicks.

The network sees three channels: the image and one map each for the foreground and the background clicks
(a Gaussian blob of peak 1 at every click; all zeros without clicks, the automatic mode).

* Inference: MONAI Label's request keys ``foreground`` and ``background`` hold ``[x, y]`` points (x = column,
  y = row of the original image). :class:`AddClickChannelsd` marks them on the original image, a ``Resized``
  moves them with it, :class:`ClickSignald` draws the blobs.
* Training follows MONAI deepgrow: the clicks live in ``guidance`` (JSON ``[[foreground], [background]]``, points
  ``[i, j]`` in array indices), MONAI's ``AddGuidanceSignald`` draws them and :class:`AddClickd` adds one on the
  errors (:class:`breastlab.engines.ClickInteraction` runs it inside every trainer/evaluator iteration).

Arrays read by MONAI's ``PILReader`` are indexed ``[channel, x, y]`` (transposed with respect to PIL's rows and
columns), so a click ``[x, y]`` is the array element ``[:, x, y]``.
"""

from __future__ import annotations

import json
import math
import numbers

import numpy as np
import torch
from monai.transforms import GaussianSmooth, MapTransform, Randomizable, ScaleIntensity, Transform
from scipy import ndimage


def check_points(points, width: int, height: int, name: str = "points") -> list[tuple[int, int]]:
    """``points`` (``None`` or a list of ``[x, y]``, x = column, y = row) as integer pixels inside a ``width`` ×
    ``height`` image; ``ValueError`` naming the first bad point otherwise."""
    if points is None:
        return []
    if isinstance(points, np.ndarray):
        points = points.tolist()
    if not isinstance(points, (list, tuple)):
        raise ValueError(f"{name}: expected a list of [x, y] points, got {type(points).__name__} {points!r}")
    pixels = []
    for n, point in enumerate(points):
        if not (isinstance(point, (list, tuple)) and len(point) == 2 and all(_finite_number(v) for v in point)):
            raise ValueError(f"{name}[{n}]: expected [x, y], two numbers (x = column, y = row), got {point!r}")
        x, y = round(point[0]), round(point[1])
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"{name}[{n}] = {list(point)} is outside the {width} x {height} image "
                             f"(x = column in 0..{width - 1}, y = row in 0..{height - 1})")
        pixels.append((x, y))
    return pixels


def _finite_number(value) -> bool:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, numbers.Integral) or math.isfinite(value)  # ints of any size: out of the image later


class AddClickChannelsd(MapTransform):
    """Append a foreground and a background click channel to the image (``[channel, x, y]`` as ``PILReader`` gives
    it): 1 at each clicked pixel, so a following ``Resized`` moves the clicks with the image. The clicks are
    ``data[foreground]`` and ``data[background]`` (checked by :func:`check_points`; absent = no clicks)."""

    def __init__(self, keys="image", foreground: str = "foreground", background: str = "background"):
        super().__init__(keys)
        self.foreground, self.background = foreground, background

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            width, height = image.shape[-2:]
            clicks = torch.zeros((2, width, height), dtype=image.dtype)
            for channel, name in enumerate((self.foreground, self.background)):
                for x, y in check_points(d.get(name), width, height, name):
                    clicks[channel, x, y] = 1.0
            d[key] = torch.cat([image, clicks])  # a MetaTensor keeps its metadata (Invertd needs it)
        return d


class ClickSignald(MapTransform):
    """Draw the click channels (after the first ``intensity_channels``) as Gaussian blobs of ``sigma`` pixels scaled
    to peak 1, an empty channel staying 0: the signal of MONAI deepgrow's ``AddGuidanceSignald``, made from click
    maps already resized with the image."""

    def __init__(self, keys="image", sigma: float = 2.0, intensity_channels: int = 1):
        super().__init__(keys)
        self.smooth = GaussianSmooth(sigma)
        self.scale = ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True)
        self.intensity_channels = intensity_channels

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key].clone()
            n = self.intensity_channels
            image[n:] = torch.as_tensor(self.scale(self.smooth(image[n:])), dtype=image.dtype)
            d[key] = image
        return d


def next_click(missed: np.ndarray, false_positive: np.ndarray, rng: np.random.RandomState | None = None):
    """The next simulated click on 2-D error masks: in the largest connected error region (a missed one gives a
    foreground click, a false positive a background click) at its centre: the maximum of the distance to the
    region's edge (the image border counts as edge; ties: the middle one); with ``rng``, at a point drawn with weight
    exp(distance − max), i.e. near the centre. ``((i, j), is_foreground)`` in array indices, or ``None``."""
    best = None
    for foreground, error in ((True, missed), (False, false_positive)):
        regions, n = ndimage.label(np.asarray(error) > 0)
        if n:
            sizes = np.bincount(regions.ravel())[1:]
            if best is None or sizes.max() > best[0]:
                best = (sizes.max(), regions == sizes.argmax() + 1, foreground)
    if best is None:
        return None
    _, region, foreground = best
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    if rng is None:  # of the points farthest from the edge, the one nearest to their mean
        ridge = np.flatnonzero(distance == distance.max())
        coordinates = np.stack(np.unravel_index(ridge, region.shape), axis=1)
        index = int(ridge[np.linalg.norm(coordinates - coordinates.mean(axis=0), axis=1).argmin()])
    else:
        inside = np.flatnonzero(region)
        weights = np.exp(distance.ravel()[inside] - distance.max())
        index = int(rng.choice(inside, p=weights / weights.sum()))
    return tuple(int(i) for i in np.unravel_index(index, region.shape)), foreground


class AddClickd(Randomizable, Transform):
    """Add one simulated click (:func:`next_click`) to ``guidance``, the JSON ``[[foreground], [background]]`` that
    MONAI's ``AddGuidanceSignald`` draws. Errors: ``discrepancy`` (``[missed, false positive]`` from MONAI's
    ``FindDiscrepancyRegionsd``) or, before any prediction, the ``label`` alone, so the first click is at the
    centre of the largest lesion (no click for an empty mask). Clicks with the data's ``probability`` (set per
    round by ``Interaction``; 1 when absent); ``random`` draws the point near the centre instead of at it.

    Replaces MONAI's ``AddInitialSeedPointd`` (raises on the empty masks of normal images) and
    ``AddRandomGuidanced`` (a point anywhere in all errors, with chamfer distances that treat the image border as
    inside, so an error region touching the border is clicked at the border)."""

    def __init__(self, label: str = "label", discrepancy: str = "discrepancy", guidance: str = "guidance",
                 probability: str = "probability", random: bool = True):
        self.label, self.discrepancy, self.guidance, self.probability = label, discrepancy, guidance, probability
        self.random = random
        self._will_click = True

    def randomize(self, data) -> None:
        self._will_click = self.R.random_sample() < float(data.get(self.probability, 1.0))

    def __call__(self, data):
        d = dict(data)
        self.randomize(d)
        guidance = json.loads(d[self.guidance]) if self.guidance in d else [[], []]
        if self._will_click:
            if self.discrepancy in d:
                missed, false_positive = (np.asarray(e)[0] for e in d[self.discrepancy])
            else:
                missed = np.asarray(d[self.label])[0] > 0.5
                false_positive = np.zeros_like(missed)
            click = next_click(missed, false_positive, self.R if self.random else None)
            if click is not None:
                guidance[0 if click[1] else 1].append(list(click[0]))
        d[self.guidance] = json.dumps(guidance)
        return d
