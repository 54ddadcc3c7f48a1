"""Temperature scaling, ECE and reliability bins by hand; the calibration report and what ``--write`` stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax

from breastlab.cli import main
from breastlab.data import Case
from breastlab.evaluation.calibrate import calibration_report, write_calibration
from breastlab.metrics import (
    apply_temperature,
    classification_scores,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)

Y, S = [0, 1, 1, 1], [0.1, 0.3, 0.6, 0.8]


def test_ece_by_hand():
    # ten bins, one case each: |0 - 0.1| + |1 - 0.3| + |1 - 0.6| + |1 - 0.8| = 1.4 over 4 cases
    assert expected_calibration_error(Y, S) == pytest.approx(0.35)
    # two bins: [0.1, 0.3] holds one positive (0.5 vs mean 0.2), [0.6, 0.8] two (1.0 vs 0.7)
    assert expected_calibration_error(Y, S, n_bins=2) == pytest.approx(0.3)
    assert [(b["n"], b["frequency"]) for b in reliability_bins(Y, S, n_bins=2)] == [(2, 0.5), (2, 1.0)]
    assert classification_scores(Y, S, n_bootstrap=0)["ece"]["value"] == pytest.approx(0.35)


def test_a_calibrated_score_has_a_small_ece():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    assert expected_calibration_error(rng.random(20000) < p, p) < 0.02


def _overconfident(true_temperature: float, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) and a model's softmax(z * T): logits T times too large."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits, axis=1)])
    return softmax(logits * true_temperature, axis=1), labels


def test_temperature_recovers_how_overconfident_the_logits_are():
    probabilities, labels = _overconfident(2.5)
    temperature = fit_temperature(probabilities, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])  # as the served logits divided by T before the softmax
    assert apply_temperature(softmax(logits, axis=1), 2.5) == pytest.approx(softmax(logits / 2.5, axis=1))


def _cases(labels: list[str], birads: list[str]) -> list[Case]:
    return [Case(f"c{i}", f"c{i}.png", label=k, meta={"birads": b}) for i, (k, b) in enumerate(zip(labels, birads))]


def test_calibration_report_on_an_overconfident_three_class_model():
    probabilities, targets = _overconfident(2.0, n=600)
    classes = ["normal", "benign", "malignant"]
    labels = [classes[t] for t in targets]
    given_lesion = probabilities[:, 2] / (probabilities[:, 1] + probabilities[:, 2])
    birads = [str(2 + int(np.digitize(p, [0.1, 0.5, 0.9]))) if k != "normal" else "1"
              for k, p in zip(labels, given_lesion)]  # categories that follow p(malignant | lesion)
    report = calibration_report(_cases(labels, birads), classes, probabilities)
    assert report["n"] == 600 and report["n_lesion"] == sum(k != "normal" for k in labels)
    assert report["temperature"] == pytest.approx(2.0, rel=0.15)
    assert report["calibrated"]["nll"] < report["uncalibrated"]["nll"]
    assert report["calibrated"]["ece"] < report["uncalibrated"]["ece"]
    fit = report["birads"]
    assert fit["n"] == report["n_lesion"] and fit["model"]["categories"] == ["2", "3", "4", "5"]
    assert fit["served_categories"] == ["1", "2", "3", "4", "5"]
    assert fit["model"]["slope"] > 0 and np.all(np.diff(fit["model"]["cuts"]) > 0)
    cross = fit["cross_fitted"]
    assert cross["folds"] == 5 and sum(r["n"] for r in cross["malignancy_by_category"]) == fit["n"]
    assert 0.5 < cross["weighted_kappa"] <= fit["in_sample_kappa"] + 0.05


def test_no_birads_fit_without_two_lesion_categories():
    probabilities = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    report = calibration_report(_cases(["benign", "malignant", "benign", "malignant"], ["", "4", "", "4"]),
                                ["benign", "malignant"], probabilities)
    assert report["birads"] is None and report["n_lesion"] == 4


def test_write_changes_the_two_values_only(lanet_copy):
    path = lanet_copy.root / "configs" / "inference.json"
    before = path.read_text()
    model = {"categories": ["2", "3", "4", "5"], "slope": 1.2, "cuts": [-3.0, -0.5, 2.5]}
    write_calibration(lanet_copy, {"temperature": 1.7, "birads": {"model": model}})
    after = path.read_text()
    assert json.loads(after) == json.loads(before) | {"temperature": 1.7, "birads": model}
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 2 and len(before.splitlines()) == len(after.splitlines()) and after.endswith("}\n")
    shipped = json.loads(before)
    write_calibration(lanet_copy, {"temperature": shipped["temperature"],
                                   "birads": shipped["birads"] and {"model": shipped["birads"]}})
    assert path.read_text() == before


def test_write_refuses_a_config_without_the_keys(lanet_copy, capsys):
    path = lanet_copy.root / "configs" / "inference.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "birads"}, indent=4))
    with pytest.raises(ValueError, match="has no top-level 'birads'"):
        write_calibration(lanet_copy, {"temperature": 1.5, "birads": None})
    assert main(["calibrate", str(lanet_copy.root), "--data", "no-such-folder", "--write"]) == 2  # before any run
    assert "has no top-level 'birads'" in capsys.readouterr().err


def test_negative_log_likelihood_by_hand():
    p = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert negative_log_likelihood(p, [0, 1]) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)
