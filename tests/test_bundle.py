"""breastlab.bundle: bundle metadata, the network, weights loading and the Predictor."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from PIL import Image
from torch.utils.data import default_collate

from breastlab.bundle import BUNDLES_DIR, BundleError, Predictor, get_bundle, load_weights
from breastlab.formats.png import write_png
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.tasks.train import BundleTrainTask

BUNDLE_DIRS = sorted(p for p in BUNDLES_DIR.iterdir() if (p / "configs").is_dir())
REQUIRED_IDS = {
    "inference": ["network_def", "preprocessing", "inferer", "postprocessing"],
    "train": ["train#trainer", "train#dataset", "validate#evaluator"],
    "multi_gpu_train": ["network", "train#sampler", "validate#sampler", "initialize", "finalize"],
}


@pytest.fixture(scope="module")
def bundle():
    return get_bundle("breast_us_t2kd")


@pytest.fixture(scope="module")
def network(bundle):
    return bundle.network().eval()


def test_metadata(bundle):
    meta = bundle.metadata
    assert meta["version"] and meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["inputs"]["image"]["channel_def"] == {"0": "image"}
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "lesion"}
    assert bundle.labels == {"lesion": 1}
    assert bundle.task == "segmentation"


def test_unknown_bundle_lists_available():
    with pytest.raises(BundleError, match="unknown bundle 'nope'.*breast_us_t2kd"):
        get_bundle("nope")


def test_a_recipe_applies_to_training_and_inference_and_an_unknown_one_is_refused():
    recipe = get_bundle("breast_mammo_end2end", "mias")
    assert recipe.classes == ["normal", "benign", "malignant"] != get_bundle("breast_mammo_end2end").classes
    assert recipe.inference["members"] == 5 and recipe.parser("train")["image_size"] == [160, 320]
    with pytest.raises(BundleError, match="no recipe 'nope'.*mias"):
        get_bundle("breast_mammo_end2end", "nope")


def test_network_size(network):
    n = sum(p.numel() for p in network.parameters())
    assert 1.8e6 <= n <= 2.5e6, n


@pytest.mark.parametrize("shape", [(2, 1, 256, 256), (1, 1, 256, 192)])
def test_network_shape(network, shape):
    with torch.no_grad():
        assert tuple(network(torch.rand(shape)).shape) == shape


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "model-key"])
def test_load_weights_round_trip(tmp_path, wrap):
    torch.manual_seed(0)
    source = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    state = source.state_dict()
    torch.save({"model": state, "epoch": 3} if wrap else state, tmp_path / "w.pt")
    target = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    assert not torch.equal(target[0].weight, source[0].weight)
    assert load_weights(target, tmp_path / "w.pt") is target
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value), key


def test_load_weights_without_path_keeps_network():
    net = torch.nn.Linear(2, 2)
    before = net.weight.clone()
    assert torch.equal(load_weights(net, None).weight, before)


def test_predictor_returns_image_size(tmp_path, bundle, samples_dir):
    torch.manual_seed(0)
    torch.save(bundle.network().state_dict(), tmp_path / "model.pt")
    image = samples_dir / "images" / "case002.png"
    with Image.open(image) as im:
        width, height = im.size
    assert (width, height) == (761, 572)
    predictor = bundle.predictor(tmp_path / "model.pt")
    assert isinstance(predictor, Predictor)
    out = predictor(image)
    assert out["mask"].shape == (height, width) and out["probability"].shape == (height, width)
    assert out["mask"].dtype == np.uint8 and set(np.unique(out["mask"])) <= {0, 1}
    prob = out["probability"]
    assert np.issubdtype(prob.dtype, np.floating) and 0.0 <= prob.min() <= prob.max() <= 1.0
    np.testing.assert_array_equal(out["mask"], (prob >= 0.5).astype(np.uint8))


def test_bundles_found():
    assert [p.name for p in BUNDLE_DIRS] and "breast_us_t2kd" in [p.name for p in BUNDLE_DIRS]


@pytest.mark.parametrize("root", BUNDLE_DIRS, ids=[p.name for p in BUNDLE_DIRS])
def test_bundle_configs(root):
    assert isinstance(json.loads((root / "configs" / "metadata.json").read_text()), dict)
    for name, ids in REQUIRED_IDS.items():
        config = json.loads((root / "configs" / f"{name}.json").read_text())
        for id_ in (i for i in ids if i not in config):
            node = config
            for part in id_.split("#"):
                assert isinstance(node, dict) and part in node, f"{name}.json lacks {id_!r}"
                node = node[part]


@pytest.mark.slow
def test_train_calls_on_epoch_after_every_epoch(samples_dir, tmp_path):
    seen = []
    get_bundle("breast_us_t2kd").train(data_dir=str(samples_dir), train_split="demo", val_split="demo", epochs=2,
                                       ckpt_dir=str(tmp_path), output_dir=str(tmp_path / "eval"),
                                       on_epoch=lambda trainer: seen.append(trainer.state.epoch))
    assert seen == [1, 2]


def test_train_task_reports_progress_while_running(tmp_path):
    task = BundleTrainTask(get_bundle("breast_us_t2kd"), tmp_path / "served.pt")
    assert task.stats() == {}
    task._write_progress(SimpleNamespace(state=SimpleNamespace(epoch=2, max_epochs=5)))
    stats = task.stats()
    assert (stats["status"], stats["epoch"], stats["max_epochs"]) == ("RUNNING", 2, 5)


def test_train_task_uses_final_labels_and_for_classifiers_the_image_class(tmp_path):
    studies = tmp_path / "studies"
    image = np.zeros((32, 40), np.uint8)
    store = BreastLabDatastore(str(studies))
    with pytest.raises(HTTPException) as e:
        BundleTrainTask(get_bundle("breast_us_t2kd"), tmp_path / "t.pt").training_items(store)
    assert e.value.status_code == 409
    for case, label in (("a", "benign"), ("b", "malignant"), ("c", "normal"), ("d", None), ("e", "benign")):
        path = write_png(image, tmp_path / f"{case}.png")
        store.add_image(case, str(path), {"class": label} if label else {})
        if case != "e":
            store.save_label(case, str(path), "final", {})
    segmentation = BundleTrainTask(get_bundle("breast_us_t2kd"), tmp_path / "t.pt").training_items(store)
    assert [i["case"] for i in segmentation] == ["a", "b", "c", "d"]
    classifier = BundleTrainTask(get_bundle("breast_us_lanet"), tmp_path / "l.pt").training_items(store)
    assert [(i["case"], i["target"], i["has_mask"]) for i in classifier] == [("a", 0, True), ("b", 1, True)]


def test_train_task_batches_images_with_and_without_a_class(tmp_path):
    """Unlabelled-class items carry ``class`` -1, so a batch mixing them with labelled ones collates."""
    store = BreastLabDatastore(str(tmp_path / "studies"))
    for case, label in (("a", "benign"), ("b", None)):
        path = write_png(np.zeros((32, 40), np.uint8), tmp_path / f"{case}.png")
        store.add_image(case, str(path), {"class": label} if label else {})
        store.save_label(case, str(path), "final", {})
    items = BundleTrainTask(get_bundle("breast_us_t2kd"), tmp_path / "t.pt").training_items(store)
    assert torch.equal(default_collate([{"class": i["class"]} for i in items])["class"], torch.tensor([1, -1]))


def test_publish_writes_a_float16_state_dict_that_predicts_like_float32(tmp_path, samples_dir):
    import shutil

    from breastlab.bundle import Bundle, publish_weights

    copy = tmp_path / "breast_us_t2kd"
    shutil.copytree(BUNDLES_DIR / "breast_us_t2kd" / "configs", copy / "configs")
    bundle = Bundle(copy, precision="fp32")  # the weights' precision is tested, not the compute's
    torch.manual_seed(0)
    torch.save({"model": bundle.network().state_dict()}, tmp_path / "checkpoint.pt")
    path = publish_weights(bundle, tmp_path / "checkpoint.pt")
    state = torch.load(path, weights_only=True)
    assert path == copy / "models" / "model.pt"
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    image = samples_dir / "images" / "case002.png"
    half, full = bundle.predictor(path)(image), bundle.predictor(tmp_path / "checkpoint.pt")(image)
    assert np.abs(half["probability"] - full["probability"]).max() < 1e-2
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt does not fit breast_us_t2kd"):
        publish_weights(bundle, tmp_path / "other.pt")
    teacher = Bundle(copy, network_def="%" + str(copy / "configs" / "train.json") + "#teacher_def")  # a teacher
    torch.save(teacher.network().state_dict(), tmp_path / "teacher.pt")
    out = publish_weights(teacher, tmp_path / "teacher.pt", out=copy / "models" / "teachers" / "benign" / "model.pt")
    assert out.is_file() and set(torch.load(out, weights_only=True)) == set(teacher.network().state_dict())
