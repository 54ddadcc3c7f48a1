"""Which classification tasks ``breastlab evaluate`` scores, from per-case rows."""

import pytest

from breastlab.evaluation.evaluate import _classification, _multiclass


def case(label, normal, benign, malignant):
    return {"label": label, "class_probabilities": {"normal": normal, "benign": benign, "malignant": malignant}}


ROWS = [
    case("normal", 0.9, 0.05, 0.05),
    case("normal", 0.7, 0.2, 0.1),
    case("benign", 0.0, 0.5, 0.5),       # p(malignant | lesion) = 0.5
    case("malignant", 0.8, 0.05, 0.15),  # p(malignant | lesion) = 0.75, although p(malignant) is lower
    {**case("malignant", 0.0, 0.9, 0.1), "label_conflict": True},  # left out everywhere
]


def test_three_class_model_is_also_scored_malignant_vs_benign_given_a_lesion():
    tasks = _classification(ROWS)
    assert set(tasks) == {"malignant vs normal/benign", "malignant vs benign", "abnormal vs normal (classifier)"}
    assert tasks["malignant vs benign"]["n"] == 2 and tasks["malignant vs benign"]["auc"]["value"] == 1.0
    assert tasks["malignant vs normal/benign"]["n"] == 4


def test_multiclass_summary_over_all_classes():
    summary = _multiclass(ROWS)
    assert summary["classes"] == "normal/benign/malignant" and summary["n"] == 4
    # argmax: normal, normal, benign (tie broken towards the first), normal -> 3 of 4 right
    assert summary["accuracy"]["value"] == pytest.approx(3 / 4)


def test_two_class_model_has_no_extra_tasks():
    rows = [{"label": k, "class_probabilities": {"benign": 1 - p, "malignant": p}}
            for k, p in (("benign", 0.2), ("malignant", 0.7), ("benign", 0.4))]
    assert set(_classification(rows)) == {"malignant vs benign"}
    assert _multiclass(rows) is None


def test_a_no_cancer_output_scores_every_other_label_as_the_rest():
    rows = [{"label": k, "class_probabilities": {"no_cancer": 1 - p, "malignant": p}}
            for k, p in (("normal", 0.1), ("benign", 0.3), ("malignant", 0.6), ("malignant", 0.2))]
    tasks = _classification(rows)
    assert set(tasks) == {"malignant vs no_cancer"}
    assert tasks["malignant vs no_cancer"]["n"] == 4 and tasks["malignant vs no_cancer"]["auc"]["value"] == 0.75


def test_class_names_must_match_the_probabilities():
    from breastlab.bundle import get_bundle, prediction_outputs

    bundle = get_bundle("breast_mammo_glam", served_classes=["no_cancer", "malignant"])
    assert bundle.classes == ["no_cancer", "malignant"]
    assert prediction_outputs({"class_prob": [0.7, 0.3]}, bundle.classes)["class_probabilities"]["malignant"] == 0.3
    with pytest.raises(ValueError, match="3 class probabilities"):
        prediction_outputs({"class_prob": [0.2, 0.5, 0.3]}, bundle.classes)


def test_mammogram_truth_comes_from_the_lesion_circles(mammograms):
    from breastlab.data import read_dataset
    from breastlab.evaluation.evaluate import case_truth

    cases = {c.case: c for c in read_dataset(mammograms)}
    malignant, normal = case_truth(cases["m02"], (256, 192)), case_truth(cases["m00"], (256, 192))
    assert malignant.shape == normal.shape == (256, 192)
    assert malignant[128, 60] and malignant.sum() == pytest.approx(3.14159 * 14 ** 2, rel=0.05)
    assert not normal.any()
    cases["m02"].meta["lesions"] = "[]"  # a finding without a location (e.g. calcifications): no truth
    assert case_truth(cases["m02"], (256, 192)) is None


def test_a_mask_of_the_wrong_size_is_named(tmp_path):
    import numpy as np
    from PIL import Image

    from breastlab.data import Case, DatasetError
    from breastlab.evaluation.evaluate import case_truth

    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "m.png")
    case = Case("c", tmp_path / "i.png", mask=tmp_path / "m.png", label="benign")
    assert case_truth(case, (20, 30)).shape == (20, 30)
    with pytest.raises(DatasetError, match=r"m.png: mask size \(30, 20\) differs from its image \(31, 20\)"):
        case_truth(case, (20, 31))
