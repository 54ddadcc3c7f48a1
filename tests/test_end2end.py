"""breast_mammo_end2end: fold split, map restoration, the served ensemble, and a short two-stage training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, LoadImaged, Resized

from breastlab.bundle import as_image_array, get_bundle, publish_weights
from breastlab.data import fold_split
from breastlab.formats.checkpoints import read_state_dict
from breastlab.networks.end2end import MammogramEnsemble, PatchClassifier, WholeImageClassifier
from breastlab.transforms.mammo import CropBreastd, OrientBreastd, RestoreBreastd, RestoreWindowsd


def test_fold_split_holds_out_whole_women(mammograms):
    held = [{c.case for c in fold_split(mammograms, f, k=5)[1]} for f in range(5)]
    assert set().union(*held) == {f"m{i:02d}" for i in range(10)} and sum(map(len, held)) == 10
    for f, cases in enumerate(held):
        training = {c.case for c in fold_split(mammograms, f, k=5)[0]}
        assert not cases & training
        assert all(f"m{2 * (int(c[1:]) // 2):02d}" in cases for c in cases)  # both images of a woman
    with pytest.raises(ValueError, match="fold"):
        fold_split(mammograms, 5, k=5)


@pytest.mark.parametrize("case", ["m00", "m01"])
def test_restore_puts_a_map_back_where_the_breast_was(mammograms, case):
    path = str(mammograms / "images" / f"{case}.png")
    pre = Compose([LoadImaged("image", image_only=True, ensure_channel_first=True, reader="PILReader"),
                   OrientBreastd("image"), CropBreastd("image"), Resized("image", (40, 80), mode="area")])
    data = pre({"image": path})
    data["map"] = data["image"].clone()  # a "map" equal to the network input must come back as the image
    restored = as_image_array(RestoreBreastd("map")(data)["map"])
    original = as_image_array(LoadImaged("image", image_only=True, ensure_channel_first=True,
                                         reader="PILReader")({"image": path})["image"])
    assert restored.shape == original.shape == (256, 192)
    tissue = (original >= 120) & (original < 180)  # the synthetic breast's texture
    assert (restored[tissue] > 0).mean() > 0.97  # back on the breast's side...
    assert np.abs(restored[tissue] - original[tissue]).mean() < 25  # ...blurred by the 40x80 round trip, not moved
    inside = restored > 0  # the breast box: zeros around it
    assert np.abs(restored[inside] - original[inside]).mean() < 25 and inside.mean() < 0.8


@pytest.mark.parametrize("case", ["m00", "m01"])
def test_windows_come_back_as_boxes_where_restore_puts_them(mammograms, case):
    pre = Compose([LoadImaged("image", image_only=True, ensure_channel_first=True, reader="PILReader"),
                   OrientBreastd("image"), CropBreastd("image"), Resized("image", (40, 80), mode="area")])
    data = pre({"image": str(mammograms / "images" / f"{case}.png")})
    corners = torch.tensor([[4, 50], [20, 10]])  # (x, y) in the 40 x 80 network input (PILReader's layout)
    data.update(corners=corners, patch_prob=torch.tensor([[0.1, 0.3], [0.6, 0.2]]))
    regions = RestoreWindowsd(["benign", "malignant"], size=16)(data)["regions"]
    assert [r["score"] for r in regions] == [0.6, 0.3]
    assert regions[0]["probabilities"] == {"benign": 0.6, "malignant": pytest.approx(0.2)}
    for region, (x, y) in zip(regions, corners.flip(0).tolist()):
        window = torch.zeros_like(data["image"])
        window[0, x:x + 16, y:y + 16] = 1
        restored = as_image_array(RestoreBreastd("window")({**data, "window": window})["window"]) > 0.5
        rows, cols = np.flatnonzero(restored.any(1)), np.flatnonzero(restored.any(0))
        expected = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        assert np.abs(np.array(region["box"]) - expected).max() <= 2


def test_ensemble_averages_members_and_flips_and_shares_each_trunk_with_the_patch_head():
    torch.manual_seed(0)
    small = {"trunk_channels": (8, 8, 16, 16), "top_channels": (16,), "num_outputs": 3}
    ensemble = MammogramEnsemble(2, classifier=small).eval()
    x = torch.rand(1, 1, 64, 128)
    patches = [PatchClassifier(channels=(8, 8, 16, 16)).eval() for _ in ensemble.classifiers]
    for patch, classifier, head in zip(patches, ensemble.classifiers, ensemble.patch_heads):
        patch.trunk.load_state_dict(classifier.trunk.state_dict())
        patch.head.load_state_dict(head.state_dict())
    with torch.no_grad():
        out = ensemble(x)
        expected = torch.stack([c(v).softmax(1) for c in ensemble.classifiers for v in (x, x.flip(-1))]).mean(0)
        heat = torch.stack([1 - p.dense(x, 2).softmax(1)[:, :1] for p in patches]).mean(0)
    assert torch.allclose(out["cls"], expected) and out["cls"].sum().item() == pytest.approx(1.0)
    assert out["heatmap"].shape == (1, 1, 3, 7) and torch.allclose(out["heatmap"], heat)


def test_class_map_ensemble_serves_each_locations_malignancy_without_patch_heads(tmp_path):
    torch.manual_seed(0)
    ensemble = MammogramEnsemble(classifier={"num_outputs": 3, "top_channels": []}, heatmap="class").eval()
    assert not any(k.startswith("patch_heads.") for k in ensemble.state_dict())
    x = torch.rand(1, 1, 64, 48)
    with torch.no_grad():
        out = ensemble(x)
        expected = ensemble.classifiers[0].logit_map(x).softmax(1)[:, 2:3]
    torch.testing.assert_close(out["heatmap"], expected)
    torch.save(ensemble.classifiers[0].state_dict(), tmp_path / "classifier.pt")
    state = MammogramEnsemble.state_dict_from([tmp_path / "classifier.pt"])
    assert set(state) == set(ensemble.state_dict())
    served = MammogramEnsemble(classifier={"num_outputs": 3, "top_channels": []}, heatmap="class")
    served.load_state_dict(read_state_dict(tmp_path / "classifier.pt"))  # a classifier's checkpoint as it is
    assert all(torch.equal(v, ensemble.state_dict()[k]) for k, v in served.state_dict().items())
    member = MammogramEnsemble.member_state_dict(served.state_dict())  # the served weights start a training
    assert all(torch.equal(v, ensemble.classifiers[0].state_dict()[k]) for k, v in member.items())
    with pytest.raises(KeyError, match="member 1"):
        MammogramEnsemble.member_state_dict(served.state_dict(), member=1)
    two = MammogramEnsemble(members=2, classifier={"num_outputs": 3, "top_channels": []}, heatmap="class")
    with pytest.raises(RuntimeError, match="Missing key"):
        two.load_state_dict(read_state_dict(tmp_path / "classifier.pt"))
    with pytest.raises(ValueError, match="heatmap"):
        MammogramEnsemble(heatmap="grad-cam")


def test_ensemble_state_dict_from_fold_checkpoints_keeps_one_trunk_per_member(tmp_path):
    classifiers, patches = [], []
    for i in range(2):
        patch = PatchClassifier()
        torch.save(patch.state_dict(), tmp_path / f"p{i}.pt")
        classifier = WholeImageClassifier(num_outputs=3, trunk_weights=patch)  # the frozen-trunk recipe
        torch.save({"model": classifier.state_dict()}, tmp_path / f"c{i}.pt")
        classifiers.append(tmp_path / f"c{i}.pt")
        patches.append(tmp_path / f"p{i}.pt")
    state = MammogramEnsemble.state_dict_from(classifiers, patches)
    MammogramEnsemble(2, classifier={"num_outputs": 3}).load_state_dict(state)  # strict
    assert not any(k.startswith("patch_heads.") and "trunk" in k for k in state)
    assert torch.equal(state["patch_heads.1.weight"], read_state_dict(patches[1])["head.weight"])
    with pytest.raises(ValueError, match="2 classifier"):
        MammogramEnsemble.state_dict_from(classifiers, patches[:1])
    with pytest.raises(ValueError, match="its trunk is not .*freeze_trunk"):
        MammogramEnsemble.state_dict_from(classifiers, patches[::-1])  # each classifier paired with the other trunk


def test_whole_image_pooling_of_the_class_logit_map():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 96)
    nets = {p: WholeImageClassifier(trunk_channels=(8, 8, 16, 16), top_channels=(16,), num_outputs=3, pooling=p,
                                    top_strides=1).eval() for p in ("avg", "lse", "max")}
    for net in list(nets.values())[1:]:
        net.load_state_dict(nets["avg"].state_dict())
    with torch.no_grad():
        logit_map = nets["avg"].logit_map(x)
        avg, lse, top = (nets[p](x) for p in ("avg", "lse", "max"))
        pooled_features = nets["avg"].fc(nets["avg"].features(x).mean((2, 3)))
    assert logit_map.shape == (2, 3, 4, 6)
    assert torch.allclose(avg, pooled_features, atol=1e-5)  # the method's average pooling, unchanged
    assert torch.all(avg <= lse + 1e-6) and torch.all(lse <= top + 1e-6) and torch.allclose(top, logit_map.amax((2, 3)))
    with pytest.raises(ValueError, match="pooling"):
        WholeImageClassifier(pooling="median")


def test_a_frozen_trunk_keeps_its_weights_and_batch_norm_statistics():
    torch.manual_seed(0)
    net = WholeImageClassifier(trunk_channels=(8, 8, 16, 16), top_channels=(), num_outputs=3, pooling="lse",
                               freeze_trunk=True).train()
    before = {k: v.clone() for k, v in net.trunk.state_dict().items()}
    top_before = net.fc.weight.clone()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 0.1)
    torch.nn.functional.cross_entropy(net(torch.rand(4, 1, 64, 64) * 3), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in net.trunk.state_dict().items())
    assert not net.trunk.training and net.training and not torch.equal(top_before, net.fc.weight)


@pytest.mark.slow
def test_mias_recipe_trains_both_stages_then_serves_probabilities_and_a_heat_map(mammograms, tmp_path):
    """``--with mias``, the 0.1.x recipe: a residual patch classifier, then a whole-image top on its frozen trunk."""
    bundle = get_bundle("breast_mammo_end2end", "mias")
    small = {"data_dir": str(mammograms), "fold": 0, "folds": 5, "epochs": 1, "image_size": [64, 96],
             "batch_size": 4}
    patch = bundle.train("patch", ckpt_dir=str(tmp_path / "patch"), output_dir=str(tmp_path / "e1"),
                         lesion_patches=4, background_patches=4, **small)
    assert {item["label"] for item in patch.get_parsed_content("train_datalist")} == {0, 1, 2}
    bundle.train(ckpt_dir=str(tmp_path / "classifier"), output_dir=str(tmp_path / "e2"),
                 patch_weights=str(tmp_path / "patch" / "model.pt"), trunk_lr_scale=0.0, **small)
    trained = read_state_dict(tmp_path / "classifier" / "last.pt")
    patch_trunk = read_state_dict(tmp_path / "patch" / "model.pt")
    assert torch.equal(trained["trunk.0.conv.weight"], patch_trunk["trunk.0.conv.weight"])  # loaded, then frozen
    weights = tmp_path / "member.pt"
    torch.save(MammogramEnsemble.state_dict_from([tmp_path / "classifier" / "model.pt"],
                                                 [tmp_path / "patch" / "model.pt"]), weights)
    predictor = get_bundle("breast_mammo_end2end", "mias", members=1, image_size=[64, 96]).predictor(weights)
    output = predictor(mammograms / "images" / "m01.png")  # breast on the right
    assert list(output["class_probabilities"]) == ["normal", "benign", "malignant"]
    assert sum(output["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    heat = output["probability"]
    assert heat.shape == output["mask"].shape == (256, 192)
    assert heat[:, :60].max() == 0 < heat[:, 100:].max()  # restored on the breast's side, zero outside its box


@pytest.mark.slow
def test_default_recipe_learns_malignant_vs_no_cancer_and_serves_the_classifiers_own_map(mammograms, tmp_path):
    """``--with mias --with patch --with patch_imagenet``, then ``train.json``, mammo_bcd's recipe (here on the
    synthetic set): the ImageNet-initialised trunk is fine-tuned by both stages on malignant vs no cancer (normal
    or benign); the classifier's checkpoint is served as it is, with its own malignancy map, and the served weights
    start the app's next training."""
    bundle = get_bundle("breast_mammo_end2end")
    small = {"data_dir": str(mammograms), "epochs": 1, "batch_size": 4}
    bundle.train("mias", "patch", "patch_imagenet", ckpt_dir=str(tmp_path / "patch"), output_dir=str(tmp_path / "e1"),
                 fold=0, lesion_patches=4, background_patches=4, patch_size=64, **small)
    trained = bundle.train(ckpt_dir=str(tmp_path / "classifier"), output_dir=str(tmp_path / "e2"),
                           train_split="dev", val_split="dev", image_size=[64, 96],
                           patch_weights=str(tmp_path / "patch" / "model.pt"), **small)
    assert sorted(item["target"] for item in trained.get_parsed_content("train_datalist")) == [0] * 7 + [1] * 3
    assert trained["classes"] == bundle.classes == ["no_cancer", "malignant"]  # the app targets (tasks/train.py)
    stem = "trunk.encoder._conv_stem.weight"
    patch_trunk, classifier = (read_state_dict(tmp_path / d / "model.pt")[stem] for d in ("patch", "classifier"))
    assert not torch.equal(patch_trunk, PatchClassifier(backbone="efficientnet-lite0").state_dict()[stem])
    assert not torch.equal(classifier, patch_trunk)
    served = publish_weights(bundle, tmp_path / "classifier" / "model.pt", out=tmp_path / "served.pt")
    restarted = bundle.parser("train", initial_weights=str(served)).get_parsed_content("network")
    assert torch.allclose(restarted.state_dict()[stem], classifier, atol=1e-2)  # float16 weights
    output = get_bundle("breast_mammo_end2end", image_size=[64, 96]).predictor(tmp_path / "classifier" / "model.pt")(
        mammograms / "images" / "m01.png")  # breast on the right
    probabilities = output["class_probabilities"]
    assert list(probabilities) == ["no_cancer", "malignant"] and sum(probabilities.values()) == pytest.approx(1.0)
    heat = output["probability"]
    assert heat.shape == (256, 192) and heat[:, :60].max() == 0 < heat[:, 100:].max()
