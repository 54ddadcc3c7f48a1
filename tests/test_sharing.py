"""Bundles shared as a researcher gets them: the ``breastlab`` wheel in a fresh virtual environment (no checkout on
``sys.path``), each bundle archive unpacked elsewhere and run with ``monai.bundle``'s ``run``, MONAI's checks on it,
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
from breastlab.cli import main
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


@pytest.fixture(scope="module")
def elsewhere(fresh_python, unpacked, tmp_path_factory) -> dict:
    """tests/archive_checks.py in the fresh environment on every unpacked archive: its report, with ``outputs``,
    the folder of each bundle's inference outputs."""
    work = tmp_path_factory.mktemp("elsewhere")
    schema, checks = shutil.copy(SCHEMA, work), shutil.copy(CHECKS, work)
    printed = run(fresh_python, checks, schema, work / "outputs", *unpacked.values(), cwd=work)
    report = json.loads(printed.splitlines()[-1])
    return {**report, "outputs": work / "outputs", "venv": fresh_python.parent.parent}


@pytest.mark.slow
def test_the_archives_ran_on_the_wheel_not_on_the_checkout(elsewhere):
    assert Path(elsewhere["breastlab_file"]).is_relative_to(elsewhere["venv"]), elsewhere["breastlab_file"]
    assert elsewhere["version"] == breastlab.__version__
    packages = [p for p in elsewhere["sys_path"] if p and (Path(p) / "breastlab" / "__init__.py").is_file()]
    assert [Path(p).is_relative_to(elsewhere["venv"]) for p in packages] == [True], packages


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_an_unpacked_archive_gives_what_the_checkout_gives(name, elsewhere, unpacked, tmp_path):
    """Its inference outputs on its sample are identical, and its TorchScript export computes the same."""
    bundle = get_bundle(name)
    checkout = bundle.parser("inference", output_dir=str(tmp_path))
    for step in ("initialize", "run"):  # as monai.bundle run does
        if step in checkout:
            checkout.get_parsed_content(step)
    there, here = outputs(elsewhere["outputs"] / name), outputs(tmp_path)
    assert there.keys() == here.keys() and here
    for key, value in here.items():
        np.testing.assert_array_equal(there[key], value, err_msg=f"{name}: {key}")
    image = bundle.metadata["network_data_format"]["inputs"]["image"]
    x = torch.rand(1, image["num_channels"], *image["spatial_shape"], generator=torch.Generator().manual_seed(0))
    network = load_weights(bundle.network(), bundle.model_path).eval()
    with torch.no_grad():
        exported = torch.jit.load(str(unpacked[name] / "models" / "model.ts"))(x)
        torch.testing.assert_close(exported, network(x), rtol=1e-4, atol=1e-5)


def test_the_bundle_commands_export_and_check_cards(tmp_path, capsys):
    assert main(["bundle", "export", "breast_us_interactive", "--out", str(tmp_path)]) == 0
    assert (tmp_path / archive_name(get_bundle("breast_us_interactive"))).is_file()
    assert main(["bundle", "card", "--all", "--check"]) == 0
    copy = tmp_path / "breast_us_interactive"
    shutil.copytree(get_bundle("breast_us_interactive").root, copy, ignore=shutil.ignore_patterns("models", "eval"))
    metadata = json.loads((copy / "configs" / "metadata.json").read_text())
    (copy / "configs" / "metadata.json").write_text(json.dumps({**metadata, "intended_use": "Anything at all."}))
    assert main(["bundle", "card", str(copy), "--check"]) == 1
    assert "model_card.md" in capsys.readouterr().out
    assert main(["bundle", "card", str(copy)]) == 0
    assert "Anything at all." in (copy / "docs" / "model_card.md").read_text()
    assert main(["bundle", "export", "--out", str(tmp_path)]) == 2  # neither names nor --all
    (tmp_path / "a_file").write_text("")
    assert main(["bundle", "export", "breast_us_interactive", "--out", str(tmp_path / "a_file")]) == 2
    assert main(["bundle", "export", "no_such_bundle", "--out", str(tmp_path)]) == 2
    (copy / "configs" / "metadata.json").write_text(json.dumps({k: v for k, v in metadata.items() if k != "datasets"}))
    assert main(["bundle", "card", str(copy), "--check"]) == 2
    errors = capsys.readouterr().err
    assert "is a file" in errors and "unknown bundle 'no_such_bundle'" in errors and "has no datasets" in errors
