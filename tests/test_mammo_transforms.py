"""The mammogram dictionary transforms against the plain functions they wrap, on arrays and PILReader output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged
from PIL import Image
from test_mammo import synthetic_breast

from breastlab.bundle import as_image_array
from breastlab.formats.png import read_gray_png
from breastlab.transforms.mammo import (
    CropBreastd,
    MaskBreastd,
    OrientBreastd,
    breast_bbox,
    breast_mask,
    flip_columns,
    orient_breast,
)


@pytest.mark.parametrize("layout", ["xy", "yx"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_dictionary_transforms_match_the_functions(layout, as_tensor):
    image = synthetic_breast("right")
    label = (image > 100).astype(np.uint8)

    def channel_first(a):
        a = (a.T if layout == "xy" else a)[None].astype(np.float32)
        return torch.as_tensor(a) if as_tensor else a

    data = {"image": channel_first(image), "label": channel_first(label), "case": "x"}
    keys = ["image", "label"]
    out = CropBreastd(keys, margin=4, layout=layout)(OrientBreastd(keys, layout=layout)(data))
    oriented, flipped = orient_breast(image)
    r0, r1, c0, c1 = breast_bbox(oriented, margin=4)
    assert out["flipped"] is True and list(out["breast_box"]) == [r0, r1, c0, c1]
    back = as_image_array if layout == "xy" else (lambda a: torch.as_tensor(a)[0].numpy())
    assert np.array_equal(back(out["image"]), oriented[r0:r1, c0:c1])
    assert np.array_equal(back(out["label"]), flip_columns(label)[r0:r1, c0:c1])
    assert out["case"] == "x"
    with pytest.raises(ValueError, match="layout"):
        OrientBreastd("image", layout="hw")


@pytest.mark.parametrize("layout", ["xy", "yx"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_mask_breast_zeroes_the_label_and_film_edge_only(layout, as_tensor):
    image = synthetic_breast("left")
    plane = (image.T if layout == "xy" else image)[None].astype(np.float32)
    out = MaskBreastd("image", layout=layout)({"image": torch.as_tensor(plane) if as_tensor else plane})["image"]
    assert torch.is_tensor(out) == as_tensor
    masked = np.asarray(out[0]).T if layout == "xy" else np.asarray(out[0])
    keep = breast_mask(image)
    assert np.array_equal(masked[keep], image[keep]) and not masked[~keep].any()
    assert image[:, 2].all() and not masked[:, 2].any()  # the film edge
    assert image[~keep].max() == 255  # the label was bright


def test_transforms_on_pil_reader_arrays(tmp_path):
    path = tmp_path / "right.png"
    Image.fromarray(synthetic_breast("right", h=240, w=180)).save(path)
    load = LoadImaged("image", image_only=True, ensure_channel_first=True, reader="PILReader")
    out = CropBreastd("image")(OrientBreastd("image")(load({"image": str(path)})))
    oriented, _ = orient_breast(read_gray_png(path))
    r0, r1, c0, c1 = breast_bbox(oriented)
    assert out["flipped"] and np.array_equal(as_image_array(out["image"]).astype(np.uint8), oriented[r0:r1, c0:c1])
