"""breast_us_interactive: click channels, point checks, clicks added in training and the bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.apps.deepgrow.transforms import AddGuidanceSignald
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged, Resized
from PIL import Image

from breastlab.bundle import as_image_array, get_bundle
from breastlab.engines import ClickInteraction
from breastlab.evaluation.clicks import predict_with_clicks
from breastlab.evaluation.evaluate import evaluate
from breastlab.transforms.clicks import AddClickChannelsd, AddClickd, ClickSignald, check_points, next_click

BUNDLE = "breast_us_interactive"


def _preprocess(path, size, **clicks):
    """Load (PILReader, [channel, x, y]) → click channels → resize → blobs, as the bundle's inference does."""
    pre = Compose([LoadImaged("image", image_only=True, ensure_channel_first=True, reader="PILReader"),
                   AddClickChannelsd("image"), Resized("image", size, mode="area"), ClickSignald("image", sigma=2)])
    return pre({"image": str(path), **clicks})["image"]


def _peak(channel) -> tuple[int, int]:
    """(row, column) of the maximum of a [x, y] channel, in PIL orientation."""
    array = as_image_array(channel[None])
    return tuple(int(i) for i in np.unravel_index(array.argmax(), array.shape))


@pytest.fixture
def png(tmp_path):
    """A 40-row × 60-column grayscale PNG (deliberately not square)."""
    path = tmp_path / "image.png"
    Image.fromarray(np.full((40, 60), 100, np.uint8)).save(path)
    return path


def test_click_lands_on_pil_row_y_and_column_x(png):
    image = _preprocess(png, (60, 40), foreground=[[50, 10]], background=[[3, 30]])  # no resize: [x, y] = [60, 40]
    assert image.shape == (3, 60, 40)
    assert _peak(image[1]) == (10, 50) and _peak(image[2]) == (30, 3)
    assert float(image[1].max()) == pytest.approx(1.0) and float(image[1].min()) == 0.0
    assert torch.equal(image[0], torch.full((60, 40), 100.0))  # the image channel is untouched


def test_clicks_move_with_the_resized_image(png):
    image = _preprocess(png, (64, 64), foreground=[[50, 10]], background=[[3, 30]])
    assert image.shape == (3, 64, 64)
    row, column = _peak(image[1])
    assert abs(row - 10 * 64 / 40) <= 1 and abs(column - 50 * 64 / 60) <= 1
    row, column = _peak(image[2])
    assert abs(row - 30 * 64 / 40) <= 1 and abs(column - 3 * 64 / 60) <= 1


@pytest.mark.parametrize("clicks", [{}, {"foreground": [], "background": None}], ids=["absent", "empty"])
def test_no_clicks_give_zero_guidance(png, clicks):
    image = _preprocess(png, (32, 32), **clicks)
    assert image.shape == (3, 32, 32) and not image[1:].any()


def test_click_channels_keep_the_metadata_for_invertd(png):
    image = _preprocess(png, (32, 32), foreground=[[1, 1]])
    assert isinstance(image, MetaTensor) and image.meta["filename_or_obj"] == str(png)
    assert [op["class"] for op in image.applied_operations] == ["Resize"]


def test_click_signal_equals_monai_deepgrow_signal():
    """At network size a click becomes exactly the blob of MONAI's AddGuidanceSignald (which training uses)."""
    image = torch.zeros((1, 32, 48))
    ours = AddClickChannelsd("image")({"image": image, "foreground": [[5, 20]], "background": [[30, 2], [31, 40]]})
    ours = ClickSignald("image", sigma=2)(ours)["image"]
    guidance = json.dumps([[[5, 20]], [[30, 2], [31, 40]]])
    theirs = AddGuidanceSignald("image", "guidance", sigma=2)({"image": image.numpy(), "guidance": guidance})["image"]
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


@pytest.mark.parametrize("points, message", [
    ("10,20", "expected a list of \\[x, y\\] points"),
    ([[1, 2, 3]], r"foreground\[0\]: expected \[x, y\]"),
    ([[1, "2"]], r"foreground\[0\]: expected \[x, y\]"),
    ([[True, 2]], r"foreground\[0\]: expected \[x, y\]"),
    ([[float("nan"), 2]], r"foreground\[0\]: expected \[x, y\]"),
    ([[0, 0], 5], r"foreground\[1\]: expected \[x, y\]"),
    ([[60, 0]], r"foreground\[0\] = \[60, 0\] is outside the 60 x 40 image \(x = column in 0..59, y = row in 0..39\)"),
    ([[0, 40]], "is outside the 60 x 40 image"),
    ([[-1, 5]], "is outside the 60 x 40 image"),
])
def test_check_points_rejects(points, message):
    with pytest.raises(ValueError, match=message):
        check_points(points, 60, 40, "foreground")


def test_check_points_accepts_and_rounds():
    assert check_points(None, 60, 40) == [] and check_points([], 60, 40) == []
    assert check_points([[0, 0], [59, 39], (10.4, 2.6)], 60, 40) == [(0, 0), (59, 39), (10, 3)]
    assert check_points(np.array([[3, 4]]), 60, 40) == [(3, 4)]


def test_bad_click_in_the_pipeline_names_the_point(png):
    with pytest.raises(RuntimeError) as info:
        _preprocess(png, (32, 32), background=[[100, 5]])
    assert isinstance(info.value.__cause__, ValueError) and "background[0]" in str(info.value.__cause__)


def test_next_click_centre_of_the_largest_error_region():
    missed = np.zeros((20, 30), bool)
    missed[2:5, 2:5] = True  # small missed region
    false_positive = np.zeros((20, 30), bool)
    false_positive[0:9, 0:9] = False
    false_positive[10:19, 10:19] = True  # larger false positive: a background click at its centre
    assert next_click(missed, false_positive) == ((14, 14), False)
    assert next_click(missed, np.zeros_like(missed)) == ((3, 3), True)
    assert next_click(np.zeros_like(missed), np.zeros_like(missed)) is None


def test_next_click_treats_the_image_border_as_edge():
    """A region touching the border is clicked at its centre, not at the border (MONAI's chamfer distance would)."""
    false_positive = np.zeros((40, 40), bool)
    false_positive[0:15, 0:15] = True
    (row, column), foreground = next_click(np.zeros_like(false_positive), false_positive)
    assert not foreground and (row, column) == (7, 7)
    clicks = np.array([next_click(np.zeros_like(false_positive), false_positive, np.random.RandomState(s))[0]
                       for s in range(50)])
    assert clicks.min() >= 1 and clicks.max() <= 13 and len(np.unique(clicks, axis=0)) > 1  # drawn, never at the edge
    assert np.abs(clicks.mean(axis=0) - 7).max() < 1.0  # around the centre


def test_add_click_first_at_the_lesion_centre_then_on_errors():
    label = np.zeros((1, 30, 30), np.float32)
    label[0, 5:16, 10:21] = 1
    seed = AddClickd(random=False)({"label": label})
    assert json.loads(seed["guidance"]) == [[[10, 15]], []]
    empty = AddClickd(random=False)({"label": np.zeros_like(label)})  # a normal image: no click, no error
    assert json.loads(empty["guidance"]) == [[], []]
    false_positive = np.zeros_like(label)
    false_positive[0, 20:29, 0:9] = 1
    data = {**seed, "discrepancy": [np.zeros_like(label), false_positive], "probability": 1.0}
    assert json.loads(AddClickd(random=False)(data)["guidance"]) == [[[10, 15]], [[24, 4]]]
    assert json.loads(AddClickd(random=False)({**data, "probability": 0.0})["guidance"]) == [[[10, 15]], []]


class _Engine:
    """What ``Interaction`` uses of a trainer: prepare_batch, inferer, network, amp, state, events, _iteration."""

    def __init__(self):
        from types import SimpleNamespace

        from monai.engines.utils import default_prepare_batch

        self.prepare_batch, self.amp, self.state = default_prepare_batch, False, SimpleNamespace(device="cpu")
        self.network = torch.nn.Conv2d(3, 1, 1)
        self.inferer = lambda inputs, network: torch.full_like(inputs[:, :1], -10.0)  # predicts nothing
        self.seen = None

    def fire_event(self, event):
        pass

    def _iteration(self, engine, batchdata):
        self.seen = batchdata
        return {}


def _batch():
    label = torch.zeros((2, 1, 16, 16))
    label[:, :, 4:12, 4:12] = 1
    image = torch.cat([torch.rand((2, 1, 16, 16)), torch.ones((2, 2, 16, 16))], dim=1)
    return {"image": image, "label": label, "guidance": [json.dumps([[], []])] * 2}


def test_click_interaction_automatic_mode_zeroes_every_item():
    engine = _Engine()
    batch = _batch()
    ClickInteraction([], max_interactions=3, train=True, automatic_probability=1.0)(engine, batch)
    assert engine.seen["image"].shape == (2, 3, 16, 16) and not engine.seen["image"][:, 1:].any()
    assert torch.equal(engine.seen["image"][:, 0], batch["image"][:, 0])


def test_click_interaction_adds_clicks_on_the_errors():
    from monai.apps.deepgrow.transforms import FindDiscrepancyRegionsd
    from monai.transforms import Activationsd, EnsureTyped, ToNumpyd

    transforms = [Activationsd("pred", sigmoid=True), ToNumpyd(["pred", "label"]), FindDiscrepancyRegionsd(),
                  ToNumpyd(["image", "label"]), AddClickd(random=False), AddGuidanceSignald(),
                  EnsureTyped(["image", "label"], track_meta=False)]
    engine = _Engine()
    ClickInteraction(transforms, max_interactions=2, train=False)(engine, _batch())
    guidance = [json.loads(g) for g in engine.seen["guidance"]]
    assert guidance == [[[[7, 7], [7, 7]], []]] * 2  # the predictor never learns: the centre of the miss, twice
    assert engine.seen["image"][:, 1].amax(dim=(1, 2)).tolist() == [1.0, 1.0] and not engine.seen["image"][:, 2].any()


def test_metadata_and_network():
    bundle = get_bundle(BUNDLE)
    assert bundle.task == "deepedit" and bundle.labels == {"lesion": 1}
    image = bundle.metadata["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 3 and image["channel_def"] == {"0": "image", "1": "foreground", "2": "background"}
    network = bundle.network().eval()
    assert 1.8e6 <= sum(p.numel() for p in network.parameters()) <= 2.5e6
    with torch.no_grad():
        assert network(torch.rand((2, 3, 64, 64))).shape == (2, 1, 64, 64)


@pytest.mark.slow
def test_bundle_trains_then_predicts_with_and_without_clicks(samples_dir, two_samples, tmp_path):
    """``configs/train.json`` for 1 epoch at 64² on the samples, then the Predictor with and without clicks, and the
    click evaluation of two cases."""
    bundle = get_bundle(BUNDLE)
    parser = bundle.train(data_dir=str(samples_dir), train_split="demo", val_split="demo", epochs=1,
                          image_size=[64, 64], batch_size=3, ckpt_dir=str(tmp_path / "models"),
                          output_dir=str(tmp_path / "eval"), automatic_probability=0.0, train_interactions=2)
    assert (tmp_path / "models" / "model.pt").is_file()
    last_inputs = [item["image"] for item in parser.get_parsed_content("train#trainer").state.output]
    assert all(image.shape == (3, 64, 64) and image[1].max() == 1.0 for image in last_inputs)  # clicked lesions
    assert 0.0 <= parser.get_parsed_content("validate#evaluator").state.best_metric <= 1.0
    assert "val_auto_dice" in parser.get_parsed_content("validate_automatic#evaluator").state.metrics
    predictor = bundle.predictor(tmp_path / "models" / "model.pt")
    image = samples_dir / "images" / "case002.png"
    automatic = predictor(image)
    clicked = predict_with_clicks(predictor, image, foreground=[[380, 300]], background=[[20, 20], [740, 550]])
    for output in (automatic, clicked):
        assert output["mask"].shape == output["probability"].shape == (572, 761)
        assert set(np.unique(output["mask"])) <= {0, 1}
    assert not np.array_equal(automatic["probability"], clicked["probability"])
    clicks = evaluate(bundle, two_samples, weights=tmp_path / "models" / "model.pt")["clicks"]["summary"]
    assert clicks["n"] == 2 and len(clicks["dice_after_clicks"]) == 20 and 1 <= clicks["noc85"] <= 20
