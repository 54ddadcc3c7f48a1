"""The server's temp folder, ``<studies>/.breastlab/tmp``: every temp file of the server process and of the jobs it
starts (exports, results, uploads spooled by the web framework, MONAI Label's own) goes there, and a start-up empties
it, so no temp file outlives its request, even after a kill -9."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from breastlab.formats.png import remove_stale_temp_files

TEMP = ".breastlab/tmp"


def temp_folder(root: str | Path) -> Path:
    return Path(root) / TEMP


def use_private_temp(root: str | Path) -> Path:
    """Empty ``<root>/.breastlab/tmp`` (what a killed server left) and make it the temp folder of this process and of
    the processes it starts. Only a server calls this at start-up: its job processes share the folder."""
    folder = temp_folder(root)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(folder)
    return folder


def clear_model_folder(folder: Path) -> None:
    """Remove what a killed weights upload or training left in the app's ``model/`` folder: temp files of atomic
    writes and ``.train-*`` run folders."""
    if folder.is_dir():
        remove_stale_temp_files(folder)
        for run in folder.glob(".train-*"):
            shutil.rmtree(run, ignore_errors=True)
