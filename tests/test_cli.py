"""The console commands and the bundle run alone with ``monai.bundle`` (slow: real inference/training)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from PIL import Image

from breastlab.bundle import PROJECT_ROOT
from breastlab.cli import main
from breastlab.data import read_dataset

from tests.server_process import free_port

pytestmark = pytest.mark.slow
BUNDLE = PROJECT_ROOT / "bundles" / "breast_us_t2kd"


def run(*command: str, cwd=PROJECT_ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_evaluate_prints_tables_and_writes_json(samples_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate", "breast_us_t2kd", "--data", str(samples_dir), "--out", str(out), "--save-masks",
                 str(tmp_path / "masks")]) == 0
    printed = capsys.readouterr().out
    assert "Segmentation: breast_us_t2kd" in printed and "overall" in printed
    report = json.loads(out.read_text())
    assert report["n_images"] == 6 and report["split"] is None
    assert set(report["segmentation"]) == {"benign", "malignant", "overall"}
    assert 0.0 <= report["segmentation"]["overall"]["dice_mean"] <= 1.0
    assert {c["case"] for c in report["cases"]} == {"case001", "case002", "case003", "case005", "case007", "case008"}
    mask = np.asarray(Image.open(tmp_path / "masks" / "case002.png"))
    assert mask.shape == (572, 761) and set(np.unique(mask)) <= {0, 255}


def test_evaluate_only_scores_the_chosen_cases(samples_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate", "breast_us_t2kd", "--data", str(samples_dir), "--only", "birads=4",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    expected = {c.case for c in read_dataset(samples_dir) if c.meta["birads"].startswith("4")}
    assert report["only"] == {"birads": "4"} and 0 < len(expected) < 6
    assert {c["case"] for c in report["cases"]} == expected
    assert main(["evaluate", "breast_us_t2kd", "--data", str(samples_dir), "--only", "device"]) == 2
    assert "--only" in capsys.readouterr().err


def test_evaluate_reports_a_missing_dataset_clearly(tmp_path, capsys):
    assert main(["evaluate", "breast_us_t2kd", "--data", str(tmp_path)]) == 2
    assert "manifest.csv not found" in capsys.readouterr().err


def test_bundle_inference_runs_alone(samples_dir, tmp_path):
    run(sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
        "--input_dir", str(samples_dir / "images"), "--output_dir", str(tmp_path), cwd=BUNDLE)
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == [f"{c}.png" for c in ("case001", "case002", "case003", "case005", "case007", "case008")]
    for name in written:
        source = Image.open(samples_dir / "images" / name)
        assert Image.open(tmp_path / name).size == source.size


def test_bundle_trains_alone_for_one_epoch(samples_dir, tmp_path):
    run(sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/train.json",
        "--data_dir", str(samples_dir), "--train_split", "demo", "--val_split", "demo", "--epochs", "1",
        "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval"), cwd=BUNDLE)
    assert (tmp_path / "models" / "model.pt").is_file()
    assert "val_lesion_dice" in (tmp_path / "eval" / "metrics.csv").read_text()


def test_serve_imports_the_samples_and_prints_the_url(tmp_path):
    port = free_port()
    studies = tmp_path / "studies"
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "breastlab.cli", "serve", "--studies", str(studies),
                                    "--port", str(port)], stdout=out, stderr=subprocess.DEVNULL)
    try:
        info = wait_for_info(f"http://127.0.0.1:{port}")
        assert info["datastore"]["total"] == 6 and info["datastore"]["completed"] == 6
        first_line = log.read_text().splitlines()[0]
        assert first_line.startswith(f"BreastLab MONAI Label server: http://127.0.0.1:{port}/")
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for_info(url: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return requests.get(f"{url}/info/", timeout=5).json()
        except requests.RequestException:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer")


def test_bundle_evaluates_alone(samples_dir, tmp_path):
    run(sys.executable, "-m", "monai.bundle", "run", "--config_file", "['configs/train.json','configs/evaluate.json']",
        "--data_dir", str(samples_dir), "--val_split", "demo", "--output_dir", str(tmp_path), cwd=BUNDLE)
    metrics = dict(line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines())
    assert set(metrics) == {"val_lesion_dice", "val_lesion_iou", "val_lesion_hd95"}
    assert 0.0 <= float(metrics["val_lesion_dice"]) <= 1.0


@pytest.mark.parametrize("name, expected", [("breast_us_lanet", {"val_auc", "val_map_dice", "val_map_iou"}),
                                            ("breast_us_acsnet", {"val_auc", "val_lesion_dice", "val_lesion_iou"})])
def test_bundle_evaluates_its_shipped_weights_alone(samples_dir, tmp_path, name, expected):
    run(sys.executable, "-m", "monai.bundle", "run", "--config_file", "['configs/train.json','configs/evaluate.json']",
        "--data_dir", str(samples_dir), "--val_split", "demo", "--output_dir", str(tmp_path), cwd=BUNDLE.parent / name)
    metrics = dict(line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines())
    assert set(metrics) == expected
    assert all(0.0 <= float(v) <= 1.0 or v == "nan" for v in metrics.values())


def test_calibrate_pools_the_folders_fits_and_writes_the_bundle(lanet_copy, make_dataset, tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = ["benign", "benign", "benign", "malignant", "malignant", "malignant", "malignant", "benign"]
    birads = ["3", "3", "4", "4", "5", "5", "3", "4"]
    with_birads = make_dataset({f"c{i}": rng.integers(0, 256, (64, 80)) for i in range(8)},
                               rows=[{"case": f"c{i}", "label": k, "split": "val", "birads": b}
                                     for i, (k, b) in enumerate(zip(labels, birads))])
    without = make_dataset({c: rng.integers(0, 256, (64, 80)) for c in ("n0", "b0", "t0")},
                           labels={"n0": "normal", "b0": "benign", "t0": "benign"},
                           splits={"n0": "val", "b0": "val", "t0": "train"})  # LA-Net knows no normal class
    out = tmp_path / "calibration.json"
    weights = str(PROJECT_ROOT / "bundles" / "breast_us_lanet" / "models" / "model.pt")
    assert main(["calibrate", str(lanet_copy.root), "--data", str(with_birads), str(without), "--weights", weights,
                 "--out", str(out), "--write"]) == 0
    report = json.loads(out.read_text())
    assert (report["n"], report["n_lesion"], report["birads"]["n"]) == (9, 9, 8)
    assert report["calibrated"]["nll"] <= report["uncalibrated"]["nll"] + 1e-6  # T is stored to 4 decimals
    assert report["birads"]["served_categories"] == ["3", "4", "5"] and report["birads"]["cross_fitted"]["folds"] == 2
    config = json.loads((lanet_copy.root / "configs" / "inference.json").read_text())
    assert config["temperature"] == report["temperature"] and config["birads"] == report["birads"]["model"]
    assert "cross-fitted (2 folds)" in capsys.readouterr().out
    evaluation = tmp_path / "evaluation.json"
    assert main(["evaluate", str(lanet_copy.root), "--data", str(with_birads), "--weights", weights, "--out",
                 str(evaluation)]) == 0  # now suggesting BI-RADS
    assert json.loads(evaluation.read_text())["birads"]["categories"] == ["3", "4", "5"]
    assert (tmp_path / "evaluation_reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert "Malignancy per suggested BI-RADS category" in capsys.readouterr().out
