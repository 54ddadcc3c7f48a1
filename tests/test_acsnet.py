"""ACSNet: pure-PyTorch modulated deformable convolution, gate units, network shapes and the multi-task loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from breastlab.bundle import get_bundle
from breastlab.evaluation.evaluate import evaluate
from breastlab.losses import MultiTaskSegClsLoss, UncertaintyWeightedLoss
from breastlab.networks.acsnet import ACSNet, DeformableSpatialAttention, GateUnit
from breastlab.networks.deformable import ModulatedDeformConv2d, deform_conv2d

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread: these small ops gain nothing from more, and lose a lot on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _identity_deformation(x: torch.Tensor, taps: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero offsets and unit modulation for a stride-1 'same' convolution of ``x``."""
    b, _, h, w = x.shape
    return torch.zeros(b, 2 * taps, h, w, dtype=x.dtype), torch.ones(b, taps, h, w, dtype=x.dtype)


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation, groups",
    [
        (3, 1, 1, 1, 1),
        (3, 2, 1, 1, 1),
        (3, 1, 2, 2, 1),
        (3, 2, 0, 1, 2),
        (1, 1, 0, 1, 1),
        ((3, 5), (2, 1), (3, 1), (2, 1), 1),
    ],
)
def test_deform_conv_with_zero_offsets_and_unit_modulation_is_conv2d(kernel, stride, padding, dilation, groups):
    torch.manual_seed(0)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(2, 4, 9, 11, dtype=F64)
    weight = torch.randn(6, 4 // groups, kh, kw, dtype=F64)
    bias = torch.randn(6, dtype=F64)
    ref = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    offset = torch.zeros(2, 2 * kh * kw, *ref.shape[-2:], dtype=F64)
    mask = torch.ones(2, kh * kw, *ref.shape[-2:], dtype=F64)
    out = deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation, groups)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(deform_conv2d(x, offset, None, weight, bias, stride, padding, dilation, groups), ref)


def test_integer_offset_is_a_shifted_conv_and_half_pixel_offset_averages_neighbours():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 10, dtype=F64)
    weight = torch.randn(5, 3, 3, 3, dtype=F64)
    offset, mask = _identity_deformation(x)
    offset[:, 0::2] = 1.0  # dy = +1 for every tap: tap a of output row i reads input row i + a (zero outside)
    shifted = F.pad(x, (1, 1, 0, 2))
    expected = F.conv2d(shifted, weight)
    torch.testing.assert_close(deform_conv2d(x, offset, mask, weight, None, 1, 1), expected, rtol=1e-12, atol=1e-12)
    offset.zero_()
    offset[:, 1::2] = 0.5  # dx = +0.5: the mean of input columns j - 1 + b and j + b (zero outside)
    padded = F.pad(x, (1, 2, 1, 1))
    averaged = 0.5 * (padded[..., :-1] + padded[..., 1:])
    expected = F.conv2d(averaged, weight)
    torch.testing.assert_close(deform_conv2d(x, offset, mask, weight, None, 1, 1), expected, rtol=1e-12, atol=1e-12)


def test_modulation_scales_each_tap():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 6, dtype=F64)
    weight = torch.randn(3, 2, 3, 3, dtype=F64)
    offset, mask = _identity_deformation(x)
    mask[:, 4] = 0.0  # drop the centre tap
    expected = F.conv2d(x, weight * (torch.arange(9) != 4).view(1, 1, 3, 3), None, 1, 1)
    torch.testing.assert_close(deform_conv2d(x, offset, mask, weight, None, 1, 1), expected)


def test_gradients_reach_offsets_and_mask():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=F64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=F64, requires_grad=True)
    offset = (0.3 * torch.rand(1, 18, 4, 4, dtype=F64) + 0.1).requires_grad_()  # off the integer grid: smooth
    mask = torch.rand(1, 9, 4, 4, dtype=F64, requires_grad=True)
    inputs = (x, offset, mask, weight)
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d(*a, None, 1, 1), inputs, fast_mode=True)
    layer = ModulatedDeformConv2d(4, 4)
    layer(torch.randn(2, 4, 8, 8)).square().sum().backward()
    assert layer.offset_conv.weight.grad.abs().sum() > 0
    assert layer.weight.grad.abs().sum() > 0


def test_module_starts_at_zero_offsets_and_half_modulation():
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(3, 4, 3, stride=2, padding=1).double()
    x = torch.randn(2, 3, 10, 10, dtype=F64)
    offset, mask = layer.offsets_and_mask(x)
    assert offset.abs().max() == 0 and torch.all(mask == 0.5)
    expected = 0.5 * F.conv2d(x, layer.weight, None, 2, 1) + layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("size, channels", [(16, 256), (32, 128)])
def test_deformable_conv_runs_forward_and_backward_on_cpu_at_acsnet_scales(size, channels):
    """It runs on the CPU at the sizes ACSNet uses, forward and backward, with finite values; how fast is measured by
    bench/ (infer_latency.py, train_throughput.py), not asserted here."""
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(channels, channels)
    x = torch.randn(2, channels, size, size, requires_grad=True)
    out = layer(x)
    out.mean().backward()
    assert out.shape == x.shape and bool(torch.isfinite(out).all()) and bool(torch.isfinite(x.grad).all())
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in layer.parameters())


def test_gate_values_lie_in_unit_interval_and_scale_the_skip():
    torch.manual_seed(0)
    gate = GateUnit(skip_channels=8, decoder_channels=16)
    skip, decoder = 5 * torch.randn(3, 8, 8, 8), 5 * torch.randn(3, 16, 4, 4)
    values = gate.gate(skip, decoder)
    assert values.shape == (3, 1, 1, 1)
    assert torch.all((values >= 0) & (values <= 1))
    torch.testing.assert_close(gate(skip, decoder), skip * values)


def test_dsa_keeps_shape():
    assert DeformableSpatialAttention(8)(torch.randn(2, 8, 16, 16)).shape == (2, 8, 16, 16)


@pytest.fixture(scope="module")
def acsnet() -> ACSNet:
    torch.manual_seed(0)
    return ACSNet(in_channels=1, num_classes=3, seg_channels=1)


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 256, 224)])
def test_acsnet_output_shapes(acsnet, shape):
    with torch.no_grad():
        out = acsnet.eval()(torch.randn(*shape))
    assert out["seg"].shape == (shape[0], 1, *shape[2:])
    assert out["cls"].shape == (shape[0], 3)


def test_multitask_loss_gradients_reach_every_parameter_and_sigma():
    torch.manual_seed(0)
    net = ACSNet(num_classes=3).train()
    loss = MultiTaskSegClsLoss()
    out = net(torch.randn(2, 1, 32, 32))
    mask = (torch.rand(2, 1, 32, 32) > 0.7).float()
    loss(out, mask, torch.tensor([0, 2])).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing
    assert net.dsa[0].deform.offset_conv.weight.grad.abs().sum() > 0
    assert net.gates[0].to_map[1].weight.grad.abs().sum() > 0
    assert loss.uncertainty.log_var.grad.abs().sum() > 0


def _count(net, cls):
    return sum(isinstance(m, cls) for m in net.modules())


def test_ablation_switches_remove_modules(acsnet):
    full, no_dsa, no_gates = acsnet, ACSNet(use_dsa=False), ACSNet(use_gates=False)
    assert (_count(full, ModulatedDeformConv2d), _count(full, GateUnit)) == (2, 4)
    assert (_count(no_dsa, ModulatedDeformConv2d), _count(no_dsa, GateUnit)) == (0, 4)
    assert (_count(no_gates, ModulatedDeformConv2d), _count(no_gates, GateUnit)) == (2, 0)
    params = [sum(p.numel() for p in n.parameters()) for n in (full, no_dsa, no_gates)]
    assert params[0] > max(params[1:])
    assert 12e6 < params[0] < 16e6
    with torch.no_grad():
        assert no_dsa.eval()(torch.randn(1, 1, 64, 64))["seg"].shape == (1, 1, 64, 64)


def test_uncertainty_weighting_matches_hand_computed_values():
    weighting = UncertaintyWeightedLoss(["seg", "cls"])
    losses = {"seg": torch.tensor(0.8), "cls": torch.tensor(1.2)}
    expected = 0.5 * 0.8 + math.log(2) + 0.5 * 1.2 + math.log(2)  # σ = 1
    torch.testing.assert_close(weighting(losses), torch.tensor(expected))
    torch.testing.assert_close(weighting([torch.tensor(0.8), torch.tensor(1.2)]), torch.tensor(expected))
    with torch.no_grad():
        weighting.log_var.copy_(torch.log(torch.tensor([4.0, 0.25])))  # σ² = 4 and 1/4
    expected = 0.5 / 4 * 0.8 + math.log(5) + 0.5 / 0.25 * 1.2 + math.log(1.25)
    torch.testing.assert_close(weighting(losses), torch.tensor(expected))
    assert weighting.sigmas()["seg"].item() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        weighting([torch.tensor(1.0)])


def test_uncertainty_gradient_reaches_sigma():
    weighting = UncertaintyWeightedLoss(2, init_sigma=1.0)
    weighting([torch.tensor(3.0), torch.tensor(0.1)]).backward()
    # d/ds [0.5 e^-s L + softplus(s)] at s = 0 is -0.5 L + 0.5
    torch.testing.assert_close(weighting.log_var.grad, torch.tensor([-1.0, 0.45]))


def test_multitask_loss_combines_dice_bce_and_ce():
    loss = MultiTaskSegClsLoss()
    seg = torch.tensor([[[[3.0, -2.0], [0.5, -1.0]]]])
    mask = torch.tensor([[[[255.0, 0.0], [255.0, 0.0]]]])  # any positive mask value is lesion
    cls = torch.tensor([[2.0, 0.0, -1.0]])
    total = loss({"seg": seg, "cls": cls}, mask, torch.tensor([1]))
    p = torch.sigmoid(seg)
    target = (mask > 0).float()
    dice = 1 - (2 * (p * target).sum() + 1e-5) / (p.sum() + target.sum() + 1e-5)
    bce = F.binary_cross_entropy(p, target)
    ce = -torch.log_softmax(cls, 1)[0, 1]
    expected = 0.5 * (dice + bce) + 0.5 * ce + 2 * math.log(2)
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(loss.terms["dice"], dice)
    torch.testing.assert_close(loss.terms["cls"], ce)
    assert set(loss.terms) == {"total", "seg", "dice", "bce", "cls", "sigma_seg", "sigma_cls"}
    assert [n for n, _ in loss.named_parameters()] == ["uncertainty.log_var"]


@pytest.mark.slow
def test_bundle_trains_an_epoch_and_its_ablations_build_then_predicts(samples_dir, tmp_path):
    bundle = get_bundle("breast_us_acsnet")
    small = {"data_dir": str(samples_dir), "train_split": "demo", "val_split": "demo", "epochs": 1,
             "image_size": [64, 64], "batch_size": 3}
    parser = bundle.train(ckpt_dir=str(tmp_path / "run"), output_dir=str(tmp_path / "eval"), **small)
    log_var = parser.get_parsed_content("loss").loss.uncertainty.log_var  # log σ², 0 at the start
    saved = torch.load(tmp_path / "run" / "last.pt")["loss"]["loss.uncertainty.log_var"]
    assert torch.equal(saved, log_var.detach()) and bool((saved != 0).all())  # learned and checkpointed
    for ablation, switch in (("no_dsa", "use_dsa"), ("no_gates", "use_gates")):
        assert bundle.parser("train", ablation).get_parsed_content(f"network_def#{switch}") is False
    output = bundle.predictor(tmp_path / "run" / "model.pt")(samples_dir / "images" / "case002.png")
    assert output["mask"].shape == output["probability"].shape == (572, 761)
    assert list(output["class_probabilities"]) == ["normal", "benign", "malignant"]
    report = evaluate(bundle, samples_dir, weights=tmp_path / "run" / "model.pt")
    assert report["segmentation"]["overall"]["n"] == 6
    assert report["classification"]["malignant vs normal/benign"]["n"] == 6
    assert report["classification"]["malignant vs benign"]["n"] == 6
    assert report["multiclass"]["n"] == 6 and report["multiclass"]["macro_auc"]["value"] is None  # no normal case
    assert "asd_mean" in report["segmentation"]["overall"]  # None when an epoch-old model misses every lesion
