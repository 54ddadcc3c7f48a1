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


def train_on_fixed_batch(alpha: float, seg_weight: float, steps: int = 30) -> tuple[float, float]:
    """KD term before and after ``steps`` distillation steps of a fresh student on one batch."""
    torch.manual_seed(0)
    teachers = {"benign": small_unet().eval(), "malignant": small_unet().eval()}
    seg_loss = WeightBalanceLoss()
    step = DistillationStep(teachers, lambda x, y: seg_weight * seg_loss(x, y), SoftDistillationLoss(2.0), alpha)
    student = small_unet()
    engine = SimpleNamespace(state=SimpleNamespace(device=torch.device("cpu")), network=student,
                             inferer=SimpleInferer(), optimizer=torch.optim.Adam(student.parameters(), lr=1e-2),
                             fire_event=lambda event: None)
    batch = {"image": torch.rand(4, 1, 32, 32), "label": (torch.rand(4, 1, 32, 32) > 0.7).float(),
             "class": torch.tensor([BENIGN, MALIGNANT, BENIGN, NORMAL])}
    first = step(engine, batch)
    assert set(first) >= {"loss", "seg_loss", "kd_loss", "pred"}
    for _ in range(steps):
        last = step(engine, batch)
    return first["kd_loss"], last["kd_loss"]


def test_distillation_steps_lower_the_kd_term_on_a_fixed_batch():
    before, after = train_on_fixed_batch(alpha=1.0, seg_weight=0.0)
    assert after < 0.2 * before
    _, with_kd = train_on_fixed_batch(alpha=1.0, seg_weight=1.0)
    _, without_kd = train_on_fixed_batch(alpha=0.0, seg_weight=1.0)
    assert with_kd < without_kd


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
