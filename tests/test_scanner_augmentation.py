"""Ultrasound-scanner augmentation: burnt-in marks, the MONAI transforms it lists, the bundles' ``scanner`` overlay."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import Compose

from breastlab.bundle import get_bundle
from breastlab.transforms import RandScreenMarksd, scanner_augmentation


def test_screen_marks_are_bright_strokes_in_the_image_only():
    marks = RandScreenMarksd(["image"], prob=1.0, count=(3, 3))
    marks.set_random_state(0)
    data = {"image": torch.full((1, 64, 80), 0.2), "label": torch.zeros(1, 64, 80)}
    data["image"][0, 0, 0] = 0.9
    out = marks(data)
    changed = out["image"] != data["image"]
    assert 3 <= changed.sum() < 0.1 * changed.numel() and torch.all(out["image"][changed] == 0.9)
    assert torch.equal(out["label"], data["label"]) and data["image"].max() == 0.9  # the input is not changed
    assert RandScreenMarksd(["image"], prob=0.0)(data)["image"] is data["image"]


def test_scanner_augmentation_keeps_shape_and_range_and_leaves_masks_alone():
    transform = Compose(scanner_augmentation(prob=1.0))
    transform.set_random_state(1)
    image = torch.rand(1, 96, 128, generator=torch.Generator().manual_seed(0)) * 0.8
    out = transform({"image": image, "label": torch.ones(1, 96, 128)})
    assert out["image"].shape == image.shape and not torch.allclose(out["image"], image)
    assert out["image"].min() >= 0 and out["image"].max() < 2 and torch.all(out["label"] == 1)


@pytest.mark.parametrize("name, plain_overlays, robust_overlays", [("breast_us_lanet", [], ["scanner"]),  # an overlay
                                                 ("breast_us_acsnet", ["no_scanner"], [])])  # shipped with it
def test_scanner_augmentation_is_appended_to_training_only(name, plain_overlays, robust_overlays):
    bundle = get_bundle(name)
    plain = bundle.parser("train", *plain_overlays).get_parsed_content("train#preprocessing").transforms
    robust = bundle.parser("train", *robust_overlays).get_parsed_content("train#preprocessing").transforms
    assert len(robust) == len(plain) + 5 and isinstance(robust[-1], RandScreenMarksd)
