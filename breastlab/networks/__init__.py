"""Networks of the BreastLab bundles that MONAI does not provide (referenced with ``_target_``)."""

from .acsnet import ACSNet
from .end2end import MammogramEnsemble, PatchClassifier, WholeImageClassifier
from .glam import GLAM, TrunkAutoencoder
from .lanet import LANet
from .outputs import OutputLayout, named_outputs, pack_outputs

__all__ = ["ACSNet", "GLAM", "LANet", "MammogramEnsemble", "OutputLayout", "PatchClassifier", "TrunkAutoencoder",
           "WholeImageClassifier", "named_outputs", "pack_outputs"]
