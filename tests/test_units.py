"""Small units: the train/val split of the server, CLI overrides, dataset import into studies."""

import json
import os
import random

import numpy as np
import pytest
from PIL import Image

from breastlab.cli import _parse_overrides
from breastlab.formats.png import read_gray_png
from breastlab.server.datastore.studies import import_dataset
from breastlab.server.tasks.train import check_server, split_train_val


def items(n: int) -> list[dict]:
    return [{"image": f"/s/img{i:03d}.png", "label": f"/s/labels/final/img{i:03d}.png"} for i in range(n)]


@pytest.mark.parametrize("n,fraction,n_val", [(10, 0.2, 2), (10, 0.1, 1), (7, 0.5, 4), (100, 0.25, 25)])
def test_split_disjoint_and_complete(n, fraction, n_val):
    train, val = split_train_val(items(n), fraction)
    assert len(val) == n_val and len(train) == n - n_val
    assert not {d["image"] for d in train} & {d["image"] for d in val}
    assert sorted(d["image"] for d in train + val) == [d["image"] for d in items(n)]


def test_split_is_deterministic_and_order_independent():
    shuffled = items(20)
    random.Random(1).shuffle(shuffled)
    assert split_train_val(shuffled, 0.2) == split_train_val(items(20), 0.2)
    assert split_train_val(items(20), 0.2) == split_train_val(items(20), 0.2)
    assert [d["image"] for d in split_train_val(items(10), 0.2)[1]] == ["/s/img000.png", "/s/img005.png"]


@pytest.mark.parametrize("n", [0, 1])
def test_split_too_few_items_uses_same_list(n):
    train, val = split_train_val(items(n), 0.2)
    assert train == val == items(n)


def test_split_zero_fraction_validates_on_train():
    train, val = split_train_val(items(5), 0.0)
    assert train == val == items(5)


def test_parse_overrides_values():
    out = _parse_overrides(["epochs=5", "learning_rate=1e-3", "image_size=[128, 96]", "data_dir=/data/busi",
                            "amp=true", "name=", "expr=a=b"])
    assert out == {"epochs": 5, "learning_rate": 0.001, "image_size": [128, 96], "data_dir": "/data/busi",
                   "amp": True, "name": "", "expr": "a=b"}
    assert isinstance(out["epochs"], int) and isinstance(out["learning_rate"], float)
    assert _parse_overrides([]) == {}


def test_parse_overrides_requires_equals():
    with pytest.raises(ValueError, match="'epochs' is not key=value"):
        _parse_overrides(["lr=0.1", "epochs"])


def image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def lesion(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[4:12, 6:20] = 255
    return mask


def test_import_dataset(make_dataset, tmp_path):
    images = {"a": image(20, 30, 0), "b": image(24, 18, 1), "c": image(16, 16, 2)}
    data = make_dataset(images, labels={"a": "benign", "b": "malignant", "c": ""},
                        splits={"a": "train", "b": "train", "c": "val"},
                        masks={"a": lesion(20, 30), "b": np.zeros((24, 18), np.uint8), "c": lesion(16, 16)})
    studies = tmp_path / "studies"
    assert import_dataset(data, studies, "train") == 2
    for case in ("a", "b"):
        np.testing.assert_array_equal(read_gray_png(studies / f"{case}.png"), images[case])
    assert not (studies / "c.png").exists()
    label_a = read_gray_png(studies / "labels" / "final" / "a.png")
    np.testing.assert_array_equal(label_a, (lesion(20, 30) > 0).astype(np.uint8))
    assert set(np.unique(read_gray_png(studies / "labels" / "final" / "b.png"))) == {0}
    objects = json.loads((studies / "datastore_v2.json").read_text())["objects"]
    assert set(objects) == {"a", "b"}
    assert objects["a"]["image"]["info"]["class"] == "benign"
    assert objects["b"]["image"]["info"]["class"] == "malignant"
    assert objects["a"]["image"]["info"]["height"] == 20 and objects["a"]["image"]["info"]["width"] == 30
    assert "final" in objects["a"]["labels"]


def test_import_without_masks_or_labels(make_dataset, tmp_path):
    data = make_dataset({"x": image(20, 20, 3), "y": image(20, 20, 4)}, labels={"x": "normal", "y": ""})
    assert import_dataset(data, tmp_path / "studies") == 2
    objects = json.loads((tmp_path / "studies" / "datastore_v2.json").read_text())["objects"]
    assert objects["x"]["image"]["info"]["class"] == "normal" and "class" not in objects["y"]["image"]["info"]
    assert objects["x"]["labels"] == {} and not list((tmp_path / "studies" / "labels" / "final").iterdir())


def test_import_bad_dataset_layout(make_dataset, tmp_path):
    data = make_dataset({"a": image(20, 20, 0)}, rows=[{"case": "a"}, {"case": "missing"}])
    with pytest.raises(ValueError, match=r"missing\{\.png,\.jpg,\.jpeg\} not found"):
        import_dataset(data, tmp_path / "studies")


def test_import_bad_image_names_the_case(make_dataset, tmp_path):
    rgb = Image.fromarray(image(20, 20, 0)).convert("RGB")
    data = make_dataset({"good": image(20, 20, 1), "bad_rgb": rgb})
    with pytest.raises((ValueError, LookupError), match="bad_rgb"):
        import_dataset(data, tmp_path / "studies")


def test_training_log_is_read_per_epoch_and_plotted(tmp_path):
    from breastlab.evaluation.plots import plot_metric_curves, plot_training_log, read_training_log

    log = tmp_path / "train.log"
    log.write_text(
        "2026-11-22 22:00:54,084 - INFO - Epoch: 1/2, Iter: 1/2 -- train_loss: 1.5000 \n"
        "2026-11-22 22:00:56,753 - INFO - Epoch: 1/2, Iter: 2/2 -- train_loss: 0.5000 \n"
        "2026-11-22 22:04:04,453 - INFO - Epoch[1] Metrics -- val_lesion_dice: 0.3196 val_lesion_iou: 0.2000 \n"
        "2026-11-22 22:05:00,000 - INFO - Epoch: 2/2, Iter: 1/2 -- cls: 0.1000 map: 0.0500 total: 0.2500 \n"
        "2026-11-22 22:06:00,000 - INFO - Epoch[2] Metrics -- val_lesion_dice: 0.5000 \n"
    )
    losses, metrics = read_training_log(log)
    assert losses == {1: 1.0, 2: 0.25}  # a loss logged as terms counts its total
    assert metrics == {"val_lesion_dice": {1: 0.3196, 2: 0.5}, "val_lesion_iou": {1: 0.2}}
    for png in (plot_training_log(log, tmp_path / "curve.png"),
                plot_metric_curves({"a": log, "b": log}, "val_lesion_dice", tmp_path / "dice.png")):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_command_takes_config_overrides_anywhere():
    from breastlab.cli import _parser

    args = _parser().parse_args(["train", "breast_us_t2kd", "--set", "learning_rate=0.0003", "--epochs", "3",
                                 "--set", "initial_weights=/x/model.pt"])
    assert args.bundle == "breast_us_t2kd" and args.epochs == 3
    assert args.override == ["learning_rate=0.0003", "initial_weights=/x/model.pt"]


def test_map_overlays_are_plotted_one_row_per_image(tmp_path):
    from breastlab.evaluation.plots import plot_map_overlays

    image, truth = np.random.default_rng(0).random((30, 40)), np.zeros((30, 40))
    truth[10:20, 10:25] = 1
    rows = [(f"case{i}", image, truth, {"M": truth * 0.9, "Grad-CAM": image}) for i in range(2)]
    one, two = plot_map_overlays(rows[:1], tmp_path / "one.png"), plot_map_overlays(rows, tmp_path / "two.png")
    (w1, h1), (w2, h2) = (Image.open(png).size for png in (one, two))
    assert w1 == w2 and h2 > 1.8 * h1  # a row per image, a column per method


def test_click_curves_are_plotted_from_click_summaries(tmp_path):
    from breastlab.evaluation.plots import plot_click_curves

    summary = {"n": 3, "automatic_dice": 0.5, "dice_after_clicks": [0.7, 0.8, 0.9]}
    png = plot_click_curves({"model": summary, "other": {**summary, "automatic_dice": 0.1}}, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    promptable = {"n": 3, "box_dice": 0.9, "box_click_dice": [0.92, 0.95], "dice_after_clicks": [0.6, 0.8, 0.9]}
    assert plot_click_curves({"box model": promptable}, tmp_path / "box.png").is_file()
    with pytest.raises(KeyError, match="dice_after_clicks"):
        plot_click_curves({"no clicks": {"n": 0}}, tmp_path / "none.png")


def test_a_training_whose_server_is_gone_stops_before_replacing_weights():
    check_server(os.getppid())
    with pytest.raises(RuntimeError, match="is gone"):
        check_server(os.getppid() + 1)


def test_background_tasks_are_bounded_and_their_history_trimmed(monkeypatch):
    from fastapi import HTTPException
    from monailabel.utils.async_tasks import utils as async_tasks

    from breastlab.server.tasks import background as tasks

    finished = [{"id": i, "status": "DONE"} for i in range(tasks.KEEP_FINISHED + 10)]
    history = [*finished, {"id": "run", "status": "RUNNING"}]
    monkeypatch.setitem(async_tasks.background_tasks, "train", history)
    for n in range(tasks.MAX_WAITING):
        with tasks.submitting("train"):
            history.append({"id": f"wait{n}", "status": tasks.WAITING})
    with pytest.raises(HTTPException) as refused, tasks.submitting("train"):
        history.append({"id": "one too many", "status": tasks.WAITING})
    assert refused.value.status_code == 429 and "already waiting" in refused.value.detail
    assert len(history) == tasks.KEEP_FINISHED + 1 + tasks.MAX_WAITING
    assert history[0]["id"] == 10 and history[-1]["id"] == f"wait{tasks.MAX_WAITING - 1}"


def test_lesion_gate_empties_masks_without_a_confident_large_enough_lesion():
    import torch

    from breastlab.transforms import LesionGated

    prob = torch.zeros(1, 10, 10)
    prob[0, :2, :5] = 0.8  # 10 % of the image at 0.8
    mask = (prob > 0.5).float()
    kept = LesionGated(min_peak=0.7, min_fraction=0.1)({"pred": mask, "prob": prob})
    assert torch.equal(kept["pred"], mask) and kept["prob"] is prob
    for gate in (LesionGated(min_peak=0.9), LesionGated(min_fraction=0.11)):
        assert gate({"pred": mask, "prob": prob})["pred"].sum() == 0
