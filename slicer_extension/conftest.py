"""Makes the module's ``BreastLabLib`` package importable, as Slicer does by putting the module folder on the path."""

import sys
from pathlib import Path

import pytest

EXTENSION_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(EXTENSION_DIR / "BreastLab"))


@pytest.fixture(scope="session")
def samples() -> Path:
    """The six demo ultrasound cases shipped with the project (``images/`` and ``masks/``)."""
    return EXTENSION_DIR.parent / "samples" / "breast_lesions_usg"
