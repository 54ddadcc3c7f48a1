"""Networks of the BreastLab bundles that MONAI does not provide (referenced with ``_target_``);
importing it registers the EfficientNet-Lite backbones with MONAI's ``FlexibleUNet``."""

from .acsnet import ACSNet
from .efficientnet_lite import EfficientNetLite, EfficientNetLiteEncoder
from .end2end import MammogramEnsemble, PatchClassifier, WholeImageClassifier
from .glam import GLAM, TrunkAutoencoder
from .lanet import LANet
from .medsam import LiteMedSAM
from .outputs import OutputLayout, named_outputs, pack_outputs

__all__ = [
    "ACSNet",
    "EfficientNetLite",
    "EfficientNetLiteEncoder",
    "GLAM",
    "LANet",
    "LiteMedSAM",
    "MammogramEnsemble",
    "OutputLayout",
    "PatchClassifier",
    "TrunkAutoencoder",
    "WholeImageClassifier",
    "named_outputs",
    "pack_outputs",
]
