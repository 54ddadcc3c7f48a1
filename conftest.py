"""Every pytest run of this project (``tests/``, ``slicer_extension/``) gets a private temp folder.

It is made when the run starts and becomes ``TMPDIR`` and ``tempfile.tempdir`` for the run, the servers and the
subprocesses it starts (pytest's own ``pytest-of-*`` folders go there too). At the end the run fails if anything
else is left in it, and the folder is removed. Other programs writing to the machine's ``/tmp`` meanwhile do not
matter, and the environment is restored when the run ends. A run killed before its end leaves its folder; the next
run removes it (the folder's name carries the process id).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

PRIVATE_VARIABLES = ("TMPDIR", "TORCHINDUCTOR_CACHE_DIR", "BREASTLAB_PREFETCH")
# what the run itself keeps there: pytest's tmp_path folders, the cache torch makes when an optimizer imports dynamo
RUN_OWN = ("pytest-of-", "torchinductor")
_saved: dict[str, str | None] = {}


def private_temp_folder() -> Path:
    """The run's private temp folder (set by :func:`pytest_configure`)."""
    return Path(os.environ["TMPDIR"])


def pytest_configure(config):
    _saved.update({name: os.environ.get(name) for name in PRIVATE_VARIABLES})
    remove_abandoned_folders(Path(tempfile.gettempdir()))
    folder = tempfile.mkdtemp(prefix=f"breastlab-tests-{os.getpid()}-")
    os.environ["TMPDIR"] = tempfile.tempdir = folder
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(folder) / RUN_OWN[1])
    # servers started by tests compute promptable models' embeddings when asked, not after every upload (2-3 s of
    # CPU each, competing with what a test measures); the tests of that prefetch turn it back on
    os.environ.setdefault("BREASTLAB_PREFETCH", "0")


def remove_abandoned_folders(parent: Path) -> None:
    """The private folders of runs that were killed before they could remove theirs (their process is gone)."""
    for folder in parent.glob("breastlab-tests-*-*"):
        pid = folder.name.split("-")[2]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pytest_unconfigure(config):
    folder = os.environ.get("TMPDIR", "")
    if Path(folder).name.startswith("breastlab-tests-"):
        shutil.rmtree(folder, ignore_errors=True)
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = None


@pytest.fixture(scope="session", autouse=True)
def no_temp_files_left_behind():
    """Nothing the tests, or the servers and subprocesses they start, write outlives the run in its temp folder."""
    yield
    folder = private_temp_folder()
    left = sorted(p.name for p in folder.iterdir() if not p.name.startswith(RUN_OWN))
    assert not left, f"the test run left {len(left)} entries in its temp folder {folder}: {left[:20]}"
