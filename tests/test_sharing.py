"""Bundles shared as a researcher gets them: the ``breastlab`` wheel in a fresh virtual environment (no checkout on
``sys.path``), each bundle archive unpacked elsewhere and run with ``python -m monai.bundle``, MONAI's checks on it,
and the same outputs as in the checkout (slow: builds a wheel, runs every bundle)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import breastlab
from breastlab.bundle import PROJECT_ROOT, BundleError, find_bundles, get_bundle, load_weights
from breastlab.sharing import archive_name, archived_files, check_self_contained, default_inputs, export_bundle

BUNDLES = [bundle.name for bundle in find_bundles()]
SCHEMA = Path(__file__).parent / "data" / "meta_schema_20240725.json"
CHECKS = Path(__file__).parent / "archive_checks.py"


def run(*command, cwd: Path) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``python -m build --wheel`` on a copy of the package's sources (the build leaves nothing in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(PROJECT_ROOT / name, source)
    shutil.copytree(PROJECT_ROOT / "breastlab", source / "breastlab", ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", source / "dist", source, cwd=source)
    return next((source / "dist").glob("*.whl"))


@pytest.fixture(scope="module")
def fresh_python(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed; its other dependencies are this environment's installed
    packages, reached by a path file (whose own path files, e.g. the checkout's editable install, are not read)."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=venv).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed", wheel, cwd=venv)
    return python


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> dict[str, Path]:
    """Every bundle exported and unpacked in a folder of its own, far from the checkout."""
    archives, root = tmp_path_factory.mktemp("archives"), tmp_path_factory.mktemp("unpacked")
    folders = {}
    for name in BUNDLES:
        with zipfile.ZipFile(export_bundle(get_bundle(name), archives)) as archive:
            archive.extractall(root / name)
        folders[name] = root / name / name
    return folders


def outputs(folder: Path) -> dict[str, object]:
    """The files an inference wrote: images as arrays, predictions.csv as its numbers (the file names it lists
    differ between the two places)."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".png":
            found[path.name] = np.asarray(Image.open(path))
        elif path.name == "predictions.csv":
            found[path.name] = [[float(v) for v in line.split(",")[1:]] for line in path.read_text().splitlines()]
    return found


def test_the_wheel_carries_the_version_every_bundle_requires(wheel):
    assert wheel.name == f"breastlab-{breastlab.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"breastlab-{breastlab.__version__}.dist-info/METADATA").decode()
    assert f"Version: {breastlab.__version__}" in metadata
    assert {"breastlab/bundle.py", "breastlab/data/modality_check.json"} <= names
    assert not any(n.startswith(("tests/", "bundles/", "apps/")) for n in names)
    for bundle in find_bundles():
        assert bundle.metadata["required_packages_version"]["breastlab"] == breastlab.__version__, bundle.name


@pytest.mark.parametrize("name", BUNDLES)
def test_an_archive_is_the_bundle_with_its_inputs_inside(name, tmp_path):
    bundle = get_bundle(name)
    check_self_contained(bundle)
    archive = export_bundle(bundle, tmp_path / "a")
    assert archive.name == archive_name(bundle) == f"{name}_v{bundle.version}.zip"
    with zipfile.ZipFile(archive) as opened:
        entries = opened.namelist()
    assert entries == [f"{name}/{p.relative_to(bundle.root).as_posix()}" for p in archived_files(bundle)]
    assert {f"{name}/configs/metadata.json", f"{name}/models/model.pt", f"{name}/LICENSE"} <= set(entries)
    assert all(f"{name}/{p.relative_to(bundle.root).as_posix()}" in entries for p in default_inputs(bundle))
    assert export_bundle(bundle, tmp_path / "b").read_bytes() == archive.read_bytes()  # reproducible
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]  # no partial file left


def test_a_bundle_whose_inputs_lie_outside_is_refused(tmp_path):
    copy = tmp_path / "breast_us_t2kd"
    shutil.copytree(get_bundle("breast_us_t2kd").root, copy, ignore=shutil.ignore_patterns("models", "eval"))
    elsewhere = PROJECT_ROOT / "samples" / "breast_lesions_usg" / "images"
    with pytest.raises(BundleError, match="outside the bundle"):
        check_self_contained(get_bundle(copy, input_dir=str(elsewhere)))
    shutil.rmtree(copy / "sample")
    with pytest.raises(BundleError, match="no input image"):
        export_bundle(get_bundle(copy), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_an_unpacked_archive_runs_with_monai_alone_as_in_the_checkout(name, fresh_python, unpacked, tmp_path):
    run(fresh_python, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
        "--output_dir", tmp_path / "elsewhere", cwd=unpacked[name])
    checkout = get_bundle(name).parser("inference", output_dir=str(tmp_path / "checkout"))
    checkout.get_parsed_content("initialize")
    checkout.get_parsed_content("run")
    elsewhere, here = outputs(tmp_path / "elsewhere"), outputs(tmp_path / "checkout")
    assert elsewhere.keys() == here.keys() and elsewhere
    for key, value in here.items():
        np.testing.assert_array_equal(elsewhere[key], value, err_msg=f"{name}: {key}")


@pytest.mark.slow
def test_monai_checks_pass_on_every_archive_in_the_fresh_environment(fresh_python, unpacked, tmp_path):
    schema = shutil.copy(SCHEMA, tmp_path / SCHEMA.name)
    report = json.loads(run(fresh_python, CHECKS, schema, *unpacked.values(), cwd=tmp_path).splitlines()[-1])
    assert Path(report["breastlab_file"]).is_relative_to(fresh_python.parent.parent), report["breastlab_file"]
    assert report["version"] == breastlab.__version__
    assert not [p for p in report["sys_path"] if p and Path(p).resolve().is_relative_to(PROJECT_ROOT)]
    for name, folder in unpacked.items():  # the TorchScript export computes what the checkout's network does
        bundle = get_bundle(name)
        image = bundle.metadata["network_data_format"]["inputs"]["image"]
        x = torch.rand(1, image["num_channels"], *image["spatial_shape"], generator=torch.Generator().manual_seed(0))
        network = load_weights(bundle.network(), bundle.model_path).eval()
        with torch.no_grad():
            torch.testing.assert_close(torch.jit.load(str(folder / "models" / "model.ts"))(x), network(x),
                                       rtol=1e-4, atol=1e-5, msg=name)
