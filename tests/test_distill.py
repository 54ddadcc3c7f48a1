"""T2KD losses against hand-computed values, the distillation step, and the distill config end to end."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from monai.inferers import SimpleInferer
from monai.networks.nets import AttentionUnet, FlexibleUNet

import breastlab.networks  # noqa: F401  (registers the EfficientNet-Lite backbones)
from breastlab.bundle import PROJECT_ROOT
from breastlab.engines.distillation import DistillationStep, load_teachers
from breastlab.losses import SoftDistillationLoss, WeightBalanceLoss

BUNDLE = PROJECT_ROOT / "bundles" / "breast_us_t2kd"
BENIGN, MALIGNANT, NORMAL = 1, 2, 0


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_weight_balance_gives_lesion_and_background_half_the_bce_each():
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 1.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # 1 lesion pixel of 4: weight 4 / (2 * 1) = 2; background: 4 / (2 * 3) = 2/3
    expected = (2 * softplus(-2.0) + 2 / 3 * (softplus(-1.0) + softplus(0.0) + softplus(1.0))) / 4
    loss = WeightBalanceLoss(dice_weight=0.0)(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_weight_balance_adds_soft_dice():
    logits, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # BCE: every pixel ln 2 and weights average to 1; Dice: 1 - 2 * 0.5 / (2 + 1)
    assert WeightBalanceLoss()(logits, target).item() == pytest.approx(math.log(2) + 2 / 3, rel=1e-5)


def test_weight_balance_keeps_unit_weights_without_lesion_and_caps_tiny_lesions():
    loss = WeightBalanceLoss(max_weight=50.0)
    normal = torch.zeros(1, 1, 4, 4)
    assert torch.equal(loss.pixel_weights(normal), torch.ones_like(normal))
    tiny = torch.zeros(1, 1, 100, 100)
    tiny[0, 0, 0, 0] = 1
    weights = loss.pixel_weights(tiny)
    assert weights[0, 0, 0, 0].item() == 50.0  # 10000 / 2 = 5000, capped
    assert weights[0, 0, 0, 1].item() == pytest.approx(10000 / (2 * 9999))


def binary_kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_distillation_is_t_squared_times_the_softened_binary_kl():
    student, teacher = torch.tensor([[[[2.0, -4.0]]]]), torch.tensor([[[[0.0, 1.0]]]])
    t = 2.0
    expected = (binary_kl(sigmoid(0.0), sigmoid(1.0)) + binary_kl(sigmoid(0.5), sigmoid(-2.0))) / 2 * t * t
    assert SoftDistillationLoss(t)(student, teacher).item() == pytest.approx(expected, rel=1e-5)
    assert SoftDistillationLoss(t)(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_mask_selects_images():
    kd = SoftDistillationLoss(1.0)
    student, teacher = torch.tensor([0.0, 3.0]).view(2, 1, 1, 1), torch.zeros(2, 1, 1, 1)
    assert kd(student, teacher, torch.tensor([True, False])).item() == pytest.approx(0.0, abs=1e-7)
    assert kd(student, teacher, torch.tensor([False, True])).item() == pytest.approx(binary_kl(0.5, sigmoid(3.0)))
    assert kd(student, teacher, torch.tensor([False, False])).item() == 0.0


class Constant(torch.nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((len(x), 1, *x.shape[2:]), self.value)


def test_matching_mode_uses_the_teacher_of_each_images_class():
    step = DistillationStep({"benign": Constant(1.0), "malignant": Constant(-1.0)}, WeightBalanceLoss(),
                            SoftDistillationLoss())
    logits, mask = step.teacher_logits(torch.zeros(3, 1, 4, 4), torch.tensor([MALIGNANT, NORMAL, BENIGN]))
    assert logits[:, 0, 0, 0].tolist() == [-1.0, 0.0, 1.0] and mask.tolist() == [True, False, True]
    ensemble = DistillationStep(step.teachers, step.seg_loss, step.kd_loss, mode="ensemble")
    logits, mask = ensemble.teacher_logits(torch.zeros(3, 1, 4, 4), torch.tensor([MALIGNANT, NORMAL, BENIGN]))
    assert logits.abs().max().item() == 0.0 and mask.all()
    with pytest.raises(ValueError):
        DistillationStep({}, WeightBalanceLoss(), SoftDistillationLoss(), mode="best")


def small_unet() -> AttentionUnet:
    return AttentionUnet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8, 16), strides=(2, 2))


STEP_LEARNING_RATE = 1e-2


def distillation(alpha: float, seg_weight: float, lr: float = STEP_LEARNING_RATE):
    """A distillation step with plain SGD at ``lr``, its engine with a float64 student, and a fixed batch; the same
    teachers, student weights and batch at every call."""
    torch.manual_seed(0)
    teachers = {"benign": small_unet().double().eval(), "malignant": small_unet().double().eval()}
    seg_loss = WeightBalanceLoss()
    step = DistillationStep(teachers, lambda x, y: seg_weight * seg_loss(x, y), SoftDistillationLoss(2.0), alpha)
    student = small_unet().double()
    engine = SimpleNamespace(state=SimpleNamespace(device=torch.device("cpu")), network=student,
                             inferer=SimpleInferer(), optimizer=torch.optim.SGD(student.parameters(), lr=lr),
                             fire_event=lambda event: None)
    batch = {"image": torch.rand(4, 1, 32, 32, dtype=torch.float64),
             "label": (torch.rand(4, 1, 32, 32) > 0.7).double(),
             "class": torch.tensor([BENIGN, MALIGNANT, BENIGN, NORMAL])}
    return step, engine, batch


def kd_before_and_after_one_step(alpha: float, seg_weight: float) -> tuple[float, float]:
    """The KD term of the fixed batch before and after one distillation step on it (a step reports the losses it
    computed before its own update)."""
    step, engine, batch = distillation(alpha, seg_weight)
    first = step(engine, batch)
    assert set(first) >= {"loss", "seg_loss", "kd_loss", "pred"}
    return first["kd_loss"], step(engine, batch)["kd_loss"]


def step_gradient(alpha: float, seg_weight: float) -> torch.Tensor:
    """The gradient one distillation step applies to the student's parameters (SGD at lr 0 leaves them as they
    are), flattened."""
    step, engine, batch = distillation(alpha, seg_weight, lr=0.0)
    step(engine, batch)
    return torch.cat([p.grad.flatten() for p in engine.network.parameters()])


def test_a_small_distillation_step_lowers_the_kd_term_of_its_batch():
    """By construction, in float64: one small plain gradient step on the KD term alone lowers it; with the
    segmentation loss too, the step with KD leaves a lower KD term than the same step without (to first order the
    difference is -lr x alpha x |KD gradient|^2)."""
    before, after = kd_before_and_after_one_step(alpha=1.0, seg_weight=0.0)
    assert after < before, (before, after)
    _, with_kd = kd_before_and_after_one_step(alpha=1.0, seg_weight=1.0)
    _, without_kd = kd_before_and_after_one_step(alpha=0.0, seg_weight=1.0)
    assert with_kd < without_kd, (with_kd, without_kd)


def test_the_step_descends_the_segmentation_loss_plus_alpha_times_the_kd_term():
    """alpha = 0: the step's gradient is the segmentation loss's alone; alpha > 0 adds exactly alpha x the KD
    gradient (float64)."""
    step, engine, batch = distillation(alpha=0.0, seg_weight=1.0)
    engine.network.train()
    WeightBalanceLoss()(engine.network(batch["image"]), batch["label"]).backward()
    segmentation_alone = torch.cat([p.grad.flatten() for p in engine.network.parameters()])
    segmentation, kd = step_gradient(alpha=0.0, seg_weight=1.0), step_gradient(alpha=1.0, seg_weight=0.0)
    torch.testing.assert_close(segmentation, segmentation_alone, rtol=1e-12, atol=1e-15)
    assert kd.abs().max() > 0 and segmentation.abs().max() > 0
    torch.testing.assert_close(step_gradient(alpha=0.5, seg_weight=1.0), segmentation + 0.5 * kd, rtol=1e-9,
                               atol=1e-12)


def test_load_teachers_checks_names_and_files(tmp_path):
    with pytest.raises(ValueError, match="class name"):
        load_teachers(small_unet, {"cyst": tmp_path / "x.pt"})
    with pytest.raises(FileNotFoundError, match="teacher.json"):
        load_teachers(small_unet, {"benign": tmp_path / "missing.pt"})
    torch.save(small_unet().state_dict(), tmp_path / "benign.pt")
    teacher = load_teachers(small_unet, {"benign": tmp_path / "benign.pt"})["benign"]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.slow
def test_distill_config_trains_one_epoch_on_the_samples(samples_dir, tmp_path):
    decoder = [16, 16, 8, 8, 8]
    for name in ("benign", "malignant"):
        net = FlexibleUNet(1, 1, "efficientnet-lite0", decoder_channels=decoder)
        torch.save(net.state_dict(), tmp_path / f"{name}.pt")
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
               "['configs/train.json','configs/distill.json']", "--data_dir", str(samples_dir),
               "--train_split", "demo", "--val_split", "demo", "--epochs", "1",
               "--teacher_def#backbone", "efficientnet-lite0", "--teacher_def#decoder_channels", str(decoder),
               "--teacher_paths", str({n: str(tmp_path / f"{n}.pt") for n in ("benign", "malignant")}),
               "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval"),
               "--kd_stats#iteration_log", "1"]
    result = subprocess.run(command, cwd=BUNDLE, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "kd_loss: " in result.stdout + result.stderr
    assert (tmp_path / "models" / "model.pt").is_file()
