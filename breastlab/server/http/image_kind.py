"""The wrong kind of image gets a clear answer: a mammogram sent to an ultrasound model, or the reverse.

A bundle's metadata names its modality. A DICOM image says its own (``Modality``): a different one is refused with
422 naming both. A PNG or JPEG gets the cheap check of ``breastlab.data.modality``: refused when it is sure the image
is of the other kind, answered with a warning in the result where it is unsure.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from breastlab.data.modality import MODALITIES, modality_check
from breastlab.formats.jpeg import read_gray_image
from breastlab.server.http import errors

NAMES = {"US": "breast ultrasound", "MG": "mammograms"}


def checked_kind(bundle, image: np.ndarray | str, dicom_modality: str | None = None) -> dict:
    """What to add to ``bundle``'s result for ``image`` (a gray array or a stored image's path): ``{}`` or a
    ``modality_warning``; raises 422 when the image is of the other kind."""
    expected = bundle.metadata.get("breastlab", {}).get("modality")
    if expected not in MODALITIES:
        return {}
    reads = f"{bundle.name} reads {NAMES[expected]} ({expected})"
    if dicom_modality:
        if dicom_modality != expected:
            raise errors.unprocessable(f"{reads}; this DICOM image's Modality is {dicom_modality}")
        return {}
    if isinstance(image, str):
        verdict, p_expected = _stored_check(image, os.stat(image).st_mtime_ns, expected)
    else:
        verdict, p_expected = modality_check(image, expected)
    other = NAMES[next(m for m in MODALITIES if m != expected)]
    if verdict == "mismatch":
        raise errors.unprocessable(f"{reads}; this image looks like one of {other} (the check gives it "
                                   f"{p_expected:.3f} of being {expected}): send it to a model for {other}")
    if verdict == "unsure":
        return {"modality_warning": f"{reads}; this image may be one of {other} (the check gives it "
                                    f"{p_expected:.2f} of being {expected}): read the result with care"}
    return {}


@lru_cache(maxsize=4096)
def _stored_check(path: str, modified_ns: int, expected: str) -> tuple[str, float]:
    """The check of a stored image, once per file version and modality."""
    return modality_check(read_gray_image(path), expected)
