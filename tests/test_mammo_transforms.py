"""The mammogram dictionary transforms against the plain functions they wrap, on arrays and PILReader output; inverted
displays found on synthetic and real mammograms."""

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
    UninvertMammogramd,
    breast_bbox,
    breast_mask,
    flip_columns,
    is_inverted,
    orient_breast,
    uninvert,
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


@pytest.mark.parametrize("side", ["left", "right"])
def test_an_inverted_display_is_found_and_undone(side):
    image = synthetic_breast(side)
    inverted = 255 - image
    assert not is_inverted(image) and is_inverted(inverted)
    assert uninvert(image) == (image, False)
    restored, was = uninvert(inverted)
    assert was and restored.dtype == np.uint8 and np.array_equal(restored, image)
    lifted = inverted // 2 + 100  # range 100..227: min + max - x, no uint8 overflow
    assert np.array_equal(uninvert(lifted)[0], 327 - lifted.astype(int))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_uninvert_transform_before_orientation(as_tensor):
    image = synthetic_breast("right")
    plane = ((255 - image).T[None] / 255.0).astype(np.float32)
    data = {"image": torch.as_tensor(plane) if as_tensor else plane}
    out = OrientBreastd("image")(UninvertMammogramd("image")(data))
    assert out["inverted"] and out["flipped"]
    assert np.allclose(np.asarray(out["image"][0]).T, flip_columns(image) / 255.0, atol=1e-6)
    plain = UninvertMammogramd("image")({"image": image.T[None]})
    assert not plain["inverted"] and np.array_equal(plain["image"][0].T, image)


def test_inverted_mammograms_of_the_shared_sets(shared_data):
    """mammo_bcd shows about one in six inverted (419 of 2,694, all counted in the bundle docs); these are spot
    checks. mini-MIAS has none."""
    from breastlab.data.mammo import read_mammogram

    images = shared_data / "mammo_bcd" / "images"
    inverted = ["bcd_105_397491913", "bcd_111_733212193", "bcd_14962_1306633485", "bcd_3174_2048033825"]
    upright = ["bcd_10130_1360338805", "bcd_2810_1181948538", "bcd_28747_2075658562", "bcd_3255_1527631432"]
    assert all(is_inverted(read_mammogram(images / f"{case}.jpg")) for case in inverted)
    assert not any(is_inverted(read_mammogram(images / f"{case}.jpg")) for case in upright)
    mias = shared_data / "mias" / "images"
    assert not any(is_inverted(read_mammogram(path)) for path in sorted(mias.glob("*.png")))
