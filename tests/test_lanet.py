"""LA-Net: attention blocks, network outputs, the f4·(1+M) path, the two stage losses, the bundle."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from breastlab.bundle import get_bundle
from breastlab.evaluation.evaluate import evaluate
from breastlab.losses import LANetStage2Loss, LesionMapLoss, mask_to_grid
from breastlab.networks.lanet import (
    ChannelGate,
    LANet,
    LesionAwareAttention,
    SpatialGate,
    modulate,
)
from breastlab.server.tasks.scoring import UncertaintyScoring


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return LANet("resnet18", in_channels=1, num_classes=2), LANet("resnet18", lesion_attention=False)


def test_channel_gate_shape_and_range():
    gate = ChannelGate(64)(torch.randn(2, 64, 16, 16) * 10)
    assert gate.shape == (2, 64, 1, 1)
    assert gate.min() >= 0 and gate.max() <= 1


def test_spatial_gate_shape_and_range():
    sg = SpatialGate()
    x = torch.randn(2, 32, 12, 20) * 10
    gate = sg(x)
    assert gate.shape == (2, 1, 12, 20)
    assert gate.min() >= 0 and gate.max() <= 1
    torch.testing.assert_close(gate, torch.sigmoid(sg.logits(x)))


def test_attention_block_keeps_shape():
    x = torch.randn(2, 128, 8, 8)
    refined, stage_map = LesionAwareAttention(128)(x)
    assert refined.shape == x.shape
    assert stage_map.shape == (2, 1, 8, 8)
    assert (refined.abs() <= x.abs() + 1e-6).all()


@pytest.mark.parametrize("side", [64, 256])
def test_lanet_output_shapes(nets, side):
    out = nets[0](torch.randn(2, 1, side, side))
    assert out["cls"].shape == (2, 2)
    assert out["lesion_map"].shape == (2, 1, side // 32, side // 32)
    assert [m.shape for m in out["stage_maps"]] == [(2, 1, side // s, side // s) for s in (4, 8, 16, 32)]


def test_finer_map_stride_keeps_the_weights_and_feeds_the_classifier_its_pooled_map(nets):
    torch.manual_seed(1)
    fine = LANet("resnet18", map_stride=8).eval()
    fine.load_state_dict(nets[0].state_dict())  # no parameter depends on the stride
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        out = fine(x)
        b = fine.backbone
        features = b.stem(x)
        for i, attention in enumerate(fine.attention):
            features, _ = attention(b.stage(i, features))
        pooled = torch.nn.functional.adaptive_avg_pool2d(out["lesion_map"], features.shape[-2:])
        expected = fine._classify(modulate(features, pooled))
    assert out["lesion_map"].shape == (1, 1, 8, 12) and out["stage_maps"][1].shape == (1, 1, 8, 12)
    torch.testing.assert_close(out["cls"], expected)
    with pytest.raises(ValueError, match="map_stride"):
        LANet(map_stride=2)


def test_non_square_input(nets):
    out = nets[0](torch.randn(1, 1, 64, 96))
    assert out["lesion_map"].shape == (1, 1, 2, 3)


def test_baseline_has_no_maps_and_fewer_parameters(nets):
    full, base = nets
    out = base(torch.randn(2, 1, 64, 64))
    assert set(out) == {"cls"} and out["cls"].shape == (2, 2)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(base) < count(full)
    assert not hasattr(base, "attention")


def test_modulate_identity_at_zero_and_doubling_at_one():
    f = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(modulate(f, torch.full((2, 1, 4, 4), -1e4)), f)
    torch.testing.assert_close(modulate(f, torch.full((2, 1, 4, 4), 1e4)), 2 * f)


def test_classifier_sees_modulated_f4(nets):
    net = nets[0].eval()
    seen = {}
    hooks = [net.attention[3].register_forward_hook(lambda m, i, o: seen.update(f4=o[0])),
             net.fc.register_forward_hook(lambda m, i, o: seen.update(fc_in=i[0]))]
    with torch.no_grad():
        out = net(torch.randn(2, 1, 64, 64))
    for hook in hooks:
        hook.remove()
    net.train()
    expected = (seen["f4"] * (1 + torch.sigmoid(out["lesion_map"]))).mean(dim=(2, 3))
    torch.testing.assert_close(seen["fc_in"], expected)


def test_mask_to_grid_area_fraction():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :32, :16] = 1
    torch.testing.assert_close(mask_to_grid(mask, (2, 2)), torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]]))


def test_stage1_ignores_images_without_mask():
    logits = torch.randn(3, 1, 2, 2, requires_grad=True)
    mask = torch.randint(0, 2, (3, 1, 64, 64)).float()
    has_mask = torch.tensor([True, False, True])
    loss_fn = LesionMapLoss()
    loss = loss_fn(logits, mask, has_mask)
    expected = F.binary_cross_entropy_with_logits(logits[[0, 2]], mask_to_grid(mask[[0, 2]], (2, 2)))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(loss_fn.terms["mask"], expected.detach())
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


def test_stage1_without_any_mask_is_zero_with_graph():
    logits = torch.randn(2, 1, 2, 2, requires_grad=True)
    loss = LesionMapLoss()(logits, torch.ones(2, 1, 64, 64), torch.tensor([False, False]))
    assert loss.item() == 0
    loss.backward()
    assert logits.grad.abs().sum() == 0


def _bce(logit: float, target: float) -> float:
    p = torch.sigmoid(torch.tensor(logit)).item()
    return -(target * torch.log(torch.tensor(p)) + (1 - target) * torch.log(torch.tensor(1 - p))).item()


def test_stage2_pseudo_mask_weighting_by_hand():
    p = torch.tensor([0.9, 0.5, 0.85, 0.1])  # image 0 has ground truth, image 1 gets pseudo-mask 1[p >= 0.8]
    logits = torch.logit(p).view(2, 1, 1, 2).clone().requires_grad_(True)
    mask = torch.zeros(2, 1, 32, 64)
    mask[0, :, :, 32:] = 1  # ground truth of image 0 on the 1x2 grid: [0, 1]
    mask[1] = 1  # image 1's mask is not usable and must be ignored
    cls_logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    label = torch.tensor([0, 1])
    loss_fn = LANetStage2Loss()
    total = loss_fn(cls_logits, logits, label, mask, torch.tensor([True, False]))

    x = logits.detach().flatten().tolist()
    mask_term = (1.0 * (_bce(x[0], 0) + _bce(x[1], 1)) + 0.1 * (_bce(x[2], 1) + _bce(x[3], 0))) / 4
    cls_term = F.cross_entropy(cls_logits, label).item()
    assert loss_fn.terms["mask"].item() == pytest.approx(mask_term, rel=1e-5)
    assert loss_fn.terms["cls"].item() == pytest.approx(cls_term, rel=1e-5)
    assert total.item() == pytest.approx(mask_term + cls_term, rel=1e-5)

    target, weight = loss_fn.targets(logits, mask, torch.tensor([True, False]))
    assert not target.requires_grad and not weight.requires_grad
    torch.testing.assert_close(target.flatten(), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    torch.testing.assert_close(weight.flatten(), torch.tensor([1.0, 0.1]))

    total.backward()  # pseudo-targets detached: gradient of BCE is w * (p - T) / N
    expected = torch.tensor([1.0 * (0.9 - 0), 1.0 * (0.5 - 1), 0.1 * (0.85 - 1), 0.1 * (0.1 - 0)]) / 4
    torch.testing.assert_close(logits.grad.flatten(), expected)


def test_stage2_pseudo_logits_from_teacher():
    logits = torch.zeros(1, 1, 1, 2)
    teacher = torch.tensor([[[[5.0, -5.0]]]])
    target, weight = LANetStage2Loss(pseudo_weight=0.3, threshold=0.6).targets(
        logits, torch.zeros(1, 1, 32, 64), torch.tensor([False]), pseudo_logits=teacher)
    torch.testing.assert_close(target.flatten(), torch.tensor([1.0, 0.0]))
    assert weight.item() == pytest.approx(0.3)


def test_stage_losses_backprop_through_lanet(nets):
    net = nets[0]
    x, mask = torch.randn(2, 1, 64, 64), torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 16:48] = 1
    out = net(x)
    loss = LANetStage2Loss()(out["cls"], out["lesion_map"], torch.tensor([0, 1]), mask, torch.tensor([True, False]))
    loss = loss + LesionMapLoss()(out["lesion_map"], mask, torch.tensor([True, False]))
    net.zero_grad()
    loss.backward()
    assert net.fuse[0].weight.grad.abs().sum() > 0
    assert net.attention[0].spatial.body[0].weight.grad.abs().sum() > 0
    net.zero_grad()


@pytest.mark.slow
def test_bundle_trains_both_stages_and_the_baseline_then_predicts(samples_dir, tmp_path):
    """``configs/stage1.json`` → ``train.json`` (stage 2 from stage 1) and ``baseline.json``, 1 epoch each at 64²."""
    bundle = get_bundle("breast_us_lanet")
    small = {"data_dir": str(samples_dir), "train_split": "demo", "val_split": "demo", "epochs": 1,
             "image_size": [64, 64], "batch_size": 3}
    stage1 = bundle.train("stage1", ckpt_dir=str(tmp_path / "stage1"), output_dir=str(tmp_path / "eval1"),
                          mask_fraction=0.5, **small)
    assert len(stage1.get_parsed_content("train_datalist")) == 4  # the annotated: round(3 × 0.5) per class
    bundle.train(ckpt_dir=str(tmp_path / "stage2"), output_dir=str(tmp_path / "eval2"), mask_fraction=0.5,
                 initial_weights=str(tmp_path / "stage1" / "model.pt"), **small)
    bundle.train("baseline", ckpt_dir=str(tmp_path / "base"), output_dir=str(tmp_path / "eval3"), **small)
    for name in ("stage1", "stage2", "base"):
        assert (tmp_path / name / "model.pt").is_file()
    output = bundle.predictor(tmp_path / "stage2" / "model.pt")(samples_dir / "images" / "case002.png")
    assert output["mask"].shape == output["probability"].shape == (572, 761)
    assert set(output["class_probabilities"]) == {"benign", "malignant"}
    assert sum(output["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    score = UncertaintyScoring.scorer(bundle, tmp_path / "stage2" / "model.pt")
    entropy = score(samples_dir / "images" / "case002.png")
    assert 0 < entropy <= math.log(2)
    report = evaluate(bundle, samples_dir, weights=tmp_path / "stage2" / "model.pt")
    assert report["classification"]["malignant vs benign"]["n"] == 6
    assert report["segmentation"]["overall"]["n"] == 6 and "box_iou_mean" in report["segmentation"]["overall"]


def test_map_prior_starts_the_lesion_map_at_the_expected_lesion_fraction():
    torch.manual_seed(0)
    net = LANet("resnet18", map_stride=8, map_prior=0.1).train()
    with torch.no_grad():
        lesion_map = net(torch.randn(4, 1, 64, 64))["lesion_map"]
    assert torch.sigmoid(lesion_map.mean()).item() == pytest.approx(0.1, abs=1e-3)  # the batch-norm'd mean
    assert LANet("resnet18").fuse[1].bias.item() == 0.0  # 0.5, the default: as before
