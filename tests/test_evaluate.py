"""Which classification tasks ``breastlab evaluate`` scores, from per-case rows; the click simulation's calls,
summary, tables and figure."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from breastlab.evaluation.clicks import _mean_rows, click_tables, clicks_to_reach
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


def _lesion_masks():
    a, b = np.zeros((40, 60), np.uint8), np.zeros((40, 60), np.uint8)
    a[10:30, 10:50], b[5:20, 30:55] = 255, 255
    return {"a": a, "b": b, "n": np.zeros((40, 60), np.uint8)}


@pytest.mark.parametrize("prompts", [["roi", "foreground", "background"], []], ids=["promptable", "clicks"])
def test_evaluate_clicks_prompts_one_image_at_a_time(make_dataset, monkeypatch, prompts):
    """Per image: 20 clicks alone (``roi=None``, all clicks so far), then the box alone and 10 clicks added to it,
    every call with that same box; without prompts the automatic call instead. Normal images are left out."""
    from breastlab.evaluation import clicks

    masks, calls = _lesion_masks(), []
    data = make_dataset({c: np.full((40, 60), 90, np.uint8) for c in masks}, masks=masks,
                        labels={"a": "benign", "b": "malignant", "n": "normal"})

    def predict(image, foreground=(), background=(), roi=None):
        calls.append((Path(image).stem, None if roi is None else tuple(roi), len(foreground) + len(background)))
        half = masks[Path(image).stem].copy()
        half[:, :35] = 0
        return {"mask": half if roi is not None else np.zeros_like(half)}  # clicks never help

    monkeypatch.setattr(clicks, "PromptedPredictor", lambda predictor: predict)
    monkeypatch.setattr(clicks, "predict_with_clicks", lambda predictor, *args: predict(*args))
    bundle = SimpleNamespace(name="fake", prompts=prompts)
    report = clicks.evaluate_clicks(SimpleNamespace(bundle=bundle), data)
    assert [r["case"] for r in report["cases"]] == ["a", "b"]
    for case, row in zip("ab", report["cases"]):
        mine = [c for c in calls if c[0] == case]
        assert calls[calls.index(mine[0]):][:len(mine)] == mine  # one image at a time
        assert mine[:20] == [(case, None, k) for k in range(1, 21)]
        if prompts:
            assert mine[20:] == [(case, tuple(row["box"]), k) for k in range(11)]
        else:
            assert mine[20:] == [(case, None, 0)]
    summary = report["summary"]
    assert len(summary["dice_after_clicks"]) == 20 and summary["noc85"] == 20 and summary["fail90"] == 1.0
    assert len(summary["box_click_dice"]) == 10 if prompts else "automatic_dice" in summary


def _rows(box: bool) -> list[dict]:
    rows = [{"dices": [0.6, 0.9] + [0.8] * 18, "automatic_dice": 0.5}, {"dices": [0.2] * 19 + [0.95]},
            {"dices": [0.3] * 20}]
    for row, box_dice in zip(rows, (0.9, 0.8, 0.7)):
        row.update(noc85=clicks_to_reach(row["dices"], 0.85), noc90=clicks_to_reach(row["dices"], 0.90))
        if box:
            row.update(box_dice=box_dice, box_click_dice=[box_dice - 0.1] + [box_dice] * 9)
        row.setdefault("automatic_dice", 0.5)
    return rows


def test_click_summary_keys_and_what_holds_by_construction():
    clicks = _mean_rows(_rows(box=False))
    assert set(clicks) == {"n", "automatic_dice", "noc85", "noc90", "dice_after_clicks", "largest_drop", "fail85",
                           "fail90"}
    assert clicks["noc85"] == clicks["noc90"] == pytest.approx((2 + 20 + 20) / 3)  # reaching at 20 is no failure
    assert clicks["fail85"] == clicks["fail90"] == pytest.approx(1 / 3)
    assert clicks["largest_drop"] == {"click": 3, "drop": pytest.approx(0.1 / 3)}
    rows = [{k: v for k, v in r.items() if k != "automatic_dice"} for r in _rows(box=True)]
    boxed = _mean_rows(rows)
    assert set(boxed) - set(clicks) == {"box_dice", "box_click_dice", "box_largest_drop"}
    assert boxed["box_dice"] == pytest.approx(0.8) and len(boxed["box_click_dice"]) == 10
    assert boxed["box_largest_drop"] == {"click": 1, "drop": pytest.approx(0.1)}


def test_click_tables_and_figure(tmp_path, capsys):
    from breastlab.evaluation.evaluate import print_report
    from breastlab.evaluation.plots import plot_click_curves

    clicks = _mean_rows(_rows(box=False))
    boxed = _mean_rows([{k: v for k, v in r.items() if k != "automatic_dice"} for r in _rows(box=True)])
    text = click_tables({"interactive": clicks, "medsam": boxed})
    for column in ("@1", "@2", "@3", "@5", "@10", "@20", "NoC@85", "NoC@90", "fail85", "fail90", "box+1", "box+10"):
        assert column in text
    assert "0.033 at click 3" in text and "0.100 at click 1" in text
    report = {"bundle": "medsam", "data": "d", "split": "val", "n_images": 3, "segmentation": None,
              "classification": {}, "clicks": {"summary": boxed}}
    print_report(report)
    assert "Jittered box, then clicks" in capsys.readouterr().out
    png = plot_click_curves({"interactive": clicks, "medsam": boxed}, tmp_path / "clicks.png")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_binary_task_has_reliability_bins_and_an_ece():
    from breastlab.evaluation.evaluate import summarize

    summary = summarize(ROWS)
    assert set(summary["reliability"]) == set(summary["classification"])
    for task, bins in summary["reliability"].items():
        assert sum(b["n"] for b in bins) == summary["classification"][task]["n"]
        assert 0 <= summary["classification"][task]["ece"]["value"] <= 1
    assert summary["birads"] is None  # no manifest BI-RADS, no suggestion


def _birads_rows() -> list[dict]:
    from breastlab.data import Case
    from breastlab.evaluation.evaluate import _score_case

    served = {"a": ("benign", "2", "2"), "b": ("benign", "3", "4"), "c": ("malignant", "5", "5"),
              "d": ("malignant", "4a", "4"), "e": ("normal", "1", "1")}  # label, manifest, suggested
    rows = []
    for name, (label, birads, suggested) in served.items():
        probabilities = {c: 0.6 if c == suggested else 0.1 for c in "12345"}
        rows.append(_score_case(Case(name, f"{name}.png", label=label, meta={"birads": birads}),
                                {"birads_probabilities": probabilities}))
    return rows


def test_birads_section_compares_the_suggestion_with_the_manifest(capsys):
    from sklearn.metrics import cohen_kappa_score

    from breastlab.evaluation.evaluate import print_report, summarize

    summary = summarize(_birads_rows())["birads"]
    assert summary["categories"] == list("12345") and summary["n"] == 4  # 4a is not a category the model knows
    expected = cohen_kappa_score([2, 3, 5, 1], [2, 4, 5, 1], weights="quadratic")
    assert summary["weighted_kappa"] == pytest.approx(expected)
    rows = {r["category"]: (r["n"], r["malignant"], r["acr_range"]) for r in summary["malignancy_by_category"]}
    assert rows == {"1": (1, 0, None), "2": (1, 0, None), "3": (0, 0, None), "4": (2, 1, True), "5": (1, 1, True)}
    print_report({"bundle": "b", "data": "d", "split": "val", "n_images": 5, "segmentation": None,
                  "classification": {}, "birads": summary})
    printed = capsys.readouterr().out
    assert "Malignancy per suggested BI-RADS category" in printed and "2-95 %" in printed and "within" in printed


def test_reliability_figure(tmp_path):
    from breastlab.evaluation.evaluate import summarize
    from breastlab.evaluation.plots import plot_reliability

    png = plot_reliability(summarize(ROWS)["reliability"], tmp_path / "reliability.png")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
