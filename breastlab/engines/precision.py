"""One switch for mixed precision: bfloat16 autocast where the hardware has fast bfloat16 units, float32 elsewhere.

``precision`` is ``"auto"``, ``"bf16"`` or ``"fp32"``. ``"auto"`` follows ``BREASTLAB_PRECISION`` when it is set
(an operator's override), else the device: bfloat16 on CPUs with bfloat16 matrix units (AMX, AVX-512 BF16) and on
CUDA GPUs that support it, float32 on the rest. MONAI's engines have ``amp`` but it is CUDA float16 autocast with a
gradient scaler (``torch.autocast("cuda")`` is hard-coded), so the switch lives in :class:`MixedPrecisionInferer`,
the one place every trainer, evaluator and predictor runs its network: losses, metrics and what a user gets stay
float32.
"""

from __future__ import annotations

import os
import re
import weakref
from functools import lru_cache
from pathlib import Path

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SimpleInferer

PRECISIONS = ("auto", "bf16", "fp32")
ENV = "BREASTLAB_PRECISION"


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bfloat16 matrix units: the ``amx_bf16`` or ``avx512_bf16`` flag of ``/proc/cpuinfo``
    (or of the ``cpuinfo`` text given); False where it cannot be read."""
    if cpuinfo is None:
        return _this_cpu_has_bf16()
    return re.search(r"\b(amx_bf16|avx512_bf16)\b", cpuinfo) is not None


@lru_cache(maxsize=1)
def _this_cpu_has_bf16() -> bool:
    try:
        return cpu_has_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype ``precision`` selects on ``device`` (``None``: float32, no autocast)."""
    if precision == "auto":
        precision = os.environ.get(ENV, "auto")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    kind = torch.device(device).type
    if precision == "bf16":
        return torch.bfloat16
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if kind == "cpu" and cpu_has_bf16() else None


def as_float32(output):
    """``output`` (a tensor, or a dict/list/tuple of them) with its reduced-precision floats cast to float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() and output.dtype != torch.float32 else output
    if isinstance(output, dict):
        return {key: as_float32(value) for key, value in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(as_float32(value) for value in output)
    return output


class MixedPrecisionInferer(Inferer):
    """Runs ``inferer`` (default MONAI's ``SimpleInferer``) under autocast in the dtype :func:`autocast_dtype`
    selects for the inputs' device, and returns float32 outputs. With ``channels_last`` the network's weights and
    the inputs are put in that memory format first (a no-op once they are), where a bundle measured it faster.
    The network sees plain tensors: MONAI's ``MetaTensor`` dispatch cost 17 % of a T2KD forward pass, and the
    transforms that need the metadata read it from the image."""

    def __init__(self, precision: str = "auto", channels_last: bool = False, inferer: Inferer | None = None):
        super().__init__()
        autocast_dtype(precision, "cpu")  # an unknown precision fails here, not at the first image
        self.precision, self.channels_last, self.inferer = precision, channels_last, inferer or SimpleInferer()
        self._converted: weakref.WeakSet = weakref.WeakSet()

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if isinstance(inputs, MetaTensor):
            inputs = inputs.as_tensor()
        if self.channels_last:
            if network not in self._converted:  # once per network, not on every request
                network.to(memory_format=torch.channels_last)
                self._converted.add(network)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        dtype = autocast_dtype(self.precision, inputs.device)
        if dtype is None:
            return self.inferer(inputs, network, *args, **kwargs)
        with torch.autocast(inputs.device.type, dtype=dtype):
            output = self.inferer(inputs, network, *args, **kwargs)
        return as_float32(output)
