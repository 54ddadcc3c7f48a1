"""The mixed-precision switch: which dtype it picks where, bfloat16 training steps that learn, float32 results."""

import numpy as np
import pytest
import torch

from breastlab.bundle import find_bundles, get_bundle
from breastlab.engines import MixedPrecisionInferer, autocast_dtype, cpu_has_bf16
from breastlab.engines import precision as precision_module

SAPPHIRE_RAPIDS = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
SKYLAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw\n"


def test_bf16_units_are_read_from_the_cpu_flags():
    assert cpu_has_bf16(SAPPHIRE_RAPIDS)
    assert cpu_has_bf16("flags : avx512f avx512_bf16\n")
    assert not cpu_has_bf16(SKYLAKE) and not cpu_has_bf16("")


def test_auto_is_bf16_only_where_the_cpu_has_the_units(monkeypatch):
    monkeypatch.delenv(precision_module.ENV, raising=False)
    monkeypatch.setattr(precision_module, "_this_cpu_has_bf16", lambda: False)  # an older CPU
    assert autocast_dtype("auto", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16  # asked for explicitly
    monkeypatch.setattr(precision_module, "_this_cpu_has_bf16", lambda: True)
    assert autocast_dtype("auto", "cpu") is torch.bfloat16
    assert autocast_dtype("fp32", "cpu") is None


def test_auto_on_cuda_follows_the_gpu_and_the_operator_can_override(monkeypatch):
    monkeypatch.delenv(precision_module.ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert autocast_dtype("auto", "cuda") is None  # float16 would need a gradient scaler
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert autocast_dtype("auto", "cuda") is torch.bfloat16
    monkeypatch.setenv(precision_module.ENV, "fp32")
    assert autocast_dtype("auto", "cuda") is None and autocast_dtype("bf16", "cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("fp16", "cpu")
    monkeypatch.setenv(precision_module.ENV, "half")
    with pytest.raises(ValueError, match="got 'half'"):
        MixedPrecisionInferer("auto")


class Recorder(torch.nn.Module):
    """A convolution that records the dtype it computed in; returns a dict like the multi-task networks."""

    def __init__(self):
        super().__init__()
        self.conv, self.seen = torch.nn.Conv2d(1, 2, 3, padding=1), None

    def forward(self, x):
        y = self.conv(x)
        self.seen = y.dtype
        return {"seg": y, "cls": y.mean((2, 3)), "corners": torch.tensor([[3, 4]])}


@pytest.mark.parametrize("precision, computed", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_inferer_computes_in_the_chosen_dtype_and_returns_float32(precision, computed):
    network = Recorder()
    out = MixedPrecisionInferer(precision)(torch.rand(1, 1, 8, 8), network)
    assert network.seen == computed
    assert out["seg"].dtype == out["cls"].dtype == torch.float32 and out["corners"].dtype == torch.int64


def test_served_outputs_are_float32_under_bf16(samples_dir):
    image = sorted((samples_dir / "images").glob("*.png"))[0]
    for name in ("breast_us_t2kd", "breast_us_lanet"):
        outputs = get_bundle(name, precision="bf16").predictor()(image)
        assert outputs["probability"].dtype == np.float32
        assert all(isinstance(p, float) for p in outputs.get("class_probabilities", {}).values())


def _training_run(bundle, samples_dir, mammograms) -> dict:
    """Data and learning rate of one bundle's few training steps."""
    if bundle.metadata["breastlab"].get("modality") == "MG":  # mammo_bcd's recipes: ImageNet trunks tuned at 3e-4
        return {"data_dir": str(mammograms), "train_split": "dev", "val_split": "dev", "learning_rate": 3e-4}
    return {"data_dir": str(samples_dir), "train_split": "demo", "val_split": "demo", "learning_rate": 1e-3}


def step_loss(trainer, batch) -> float:
    """One training iteration's loss (the output is decollated into per-image dicts that each carry it)."""
    output = trainer._process_function(trainer, batch)
    return float((output[0] if isinstance(output, list) else output)["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("name", [bundle.name for bundle in find_bundles() if bundle.trainable])
def test_a_bf16_training_step_of_every_bundle_lowers_its_loss(name, samples_dir, mammograms):
    bundle = get_bundle(name)
    torch.manual_seed(0)
    config = bundle.parser("train", **_training_run(bundle, samples_dir, mammograms), precision="bf16",
                           initial_weights=None, batch_size=2)
    trainer = config.get_parsed_content("train#trainer")
    assert isinstance(trainer.inferer, MixedPrecisionInferer) and trainer.inferer.precision == "bf16"
    batch = next(iter(trainer.data_loader))
    losses = [step_loss(trainer, batch) for _ in range(6)]
    assert all(np.isfinite(losses)) and min(losses[-2:]) < losses[0], losses
