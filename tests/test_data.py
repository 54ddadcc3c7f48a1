"""breastlab.data: the one dataset reader, on the real folders and on crafted broken layouts."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from breastlab.data import (
    CLASS_NAMES,
    Case,
    DatasetError,
    case_dicts,
    column_rule,
    dataset_dicts,
    read_dataset,
    to_monai_dicts,
)

IMG = np.full((20, 24), 100, dtype=np.uint8)
MASK = np.zeros((20, 24), dtype=np.uint8)


def test_busi_splits_and_class_counts(shared_data):
    train = read_dataset(shared_data / "busi", "train")
    val = read_dataset(shared_data / "busi", "val")
    assert (len(train), len(val)) == (466, 165)
    assert Counter(c.label for c in train) == {"benign": 259, "malignant": 131, "normal": 76}
    assert Counter(c.label for c in val) == {"benign": 95, "malignant": 40, "normal": 30}
    assert {c.split for c in train} == {"train"} and {c.split for c in val} == {"val"}
    assert not {c.case for c in train} & {c.case for c in val}
    assert all(c.mask is not None and c.mask.is_file() and c.image.is_file() for c in train + val)
    assert len(read_dataset(shared_data / "busi")) == 631


def test_busi_keeps_extra_columns_as_meta(shared_data):
    case = read_dataset(shared_data / "busi", "train")[0]
    assert {"group", "n_lesions", "height", "width", "source_file"} <= set(case.meta)
    assert not {"case", "label", "split"} & set(case.meta)


def test_mias_has_no_masks(shared_data):
    cases = read_dataset(shared_data / "mias")
    assert len(cases) == 258
    assert Counter(c.label for c in cases) == {"normal": 170, "benign": 49, "malignant": 39}
    assert all(c.mask is None for c in cases)
    assert cases[0].meta["lesions"].startswith("[{")  # quoted JSON with commas survives the CSV
    with pytest.raises(DatasetError, match="has no mask"):
        to_monai_dicts(cases)
    items = to_monai_dicts(cases, with_masks=False)
    assert len(items) == 258 and all("label" not in d for d in items)


def test_mammo_bcd_jpegs_with_image_labels(shared_data):
    train, val = (read_dataset(shared_data / "mammo_bcd", split) for split in ("train", "val"))
    assert Counter(c.label for c in train) == {"benign": 1410, "malignant": 754}
    assert Counter(c.label for c in val) == {"benign": 352, "malignant": 178}
    assert all(c.image.suffix == ".jpg" and c.mask is None for c in train + val)
    assert not {c.meta["patient"] for c in train} & {c.meta["patient"] for c in val}


def test_jpeg_images_beside_png(make_dataset):
    root = make_dataset({"a": IMG, "b": IMG}, masks={"a": MASK, "b": MASK})
    (root / "images" / "b.png").unlink()
    Image.fromarray(IMG).save(root / "images" / "b.jpg", "JPEG")
    cases = read_dataset(root)
    assert [c.image.name for c in cases] == ["a.png", "b.jpg"] and cases[1].mask == root / "masks" / "b.png"


def test_samples(samples_dir):
    cases = read_dataset(samples_dir)
    assert [c.case for c in cases] == ["case001", "case002", "case003", "case005", "case007", "case008"]
    assert all(c.mask == samples_dir / "masks" / f"{c.case}.png" and c.mask.is_file() for c in cases)
    assert Counter(c.label for c in cases) == {"benign": 3, "malignant": 3}
    items = dataset_dicts(samples_dir, "demo")
    assert items[0] == {"image": str(samples_dir / "images" / "case001.png"), "case": "case001",
                        "label": str(samples_dir / "masks" / "case001.png"), "class": 1}


def test_class_index_mapping():
    assert CLASS_NAMES == ("normal", "benign", "malignant")
    assert [Case("c", None, label=n).class_index for n in CLASS_NAMES] == [0, 1, 2]
    assert Case("c", None).class_index is None


def test_labels_are_normalised_and_optional(make_dataset):
    root = make_dataset({"a": IMG, "b": IMG, "c": IMG}, labels={"a": " Malignant ", "b": "NORMAL", "c": ""})
    cases = read_dataset(root)
    assert [c.label for c in cases] == ["malignant", "normal", None]
    assert [d["class"] for d in to_monai_dicts(cases, with_masks=False)] == [2, 0, -1]  # -1: no label


def test_split_selection(make_dataset):
    root = make_dataset({"a": IMG, "b": IMG, "c": IMG}, splits={"a": "train", "b": "val", "c": "train"})
    assert [c.case for c in read_dataset(root, "train")] == ["a", "c"]
    assert [c.case for c in read_dataset(root, "val")] == ["b"]
    assert len(read_dataset(root)) == 3


def test_unknown_split_lists_available(make_dataset):
    root = make_dataset({"a": IMG, "b": IMG}, splits={"a": "train", "b": "val"})
    with pytest.raises(DatasetError, match="manifest.csv") as e:
        read_dataset(root, "test")
    assert "'test'" in str(e.value) and "'train'" in str(e.value) and "'val'" in str(e.value)


def test_missing_manifest(make_dataset):
    root = make_dataset({"a": IMG}, manifest=False)
    with pytest.raises(DatasetError, match="manifest.csv not found"):
        read_dataset(root)


@pytest.mark.parametrize("text", ["name,label\na,benign\n", ""])
def test_missing_case_column(make_dataset, text):
    root = make_dataset({"a": IMG}, manifest=text)
    with pytest.raises(DatasetError, match="missing column 'case'"):
        read_dataset(root)


def test_missing_image_names_file_and_line(make_dataset):
    root = make_dataset({"a": IMG}, rows=[{"case": "a"}, {"case": "ghost"}])
    with pytest.raises(DatasetError) as e:
        read_dataset(root)
    assert "manifest.csv:3" in str(e.value) and str(root / "images" / "ghost{.png,.jpg,.jpeg}") in str(e.value)


def test_a_case_without_mask_is_read_and_named_when_a_mask_is_needed(make_dataset):
    root = make_dataset({"a": IMG, "b": IMG}, masks={"a": MASK})
    cases = {c.case: c for c in read_dataset(root)}
    assert cases["a"].mask == root / "masks" / "a.png" and cases["b"].mask is None
    assert len(dataset_dicts(root, with_masks=False)) == 2
    with pytest.raises(DatasetError, match="has no mask") as e:
        dataset_dicts(root)
    assert "'b'" in str(e.value)


def test_bad_label_names_column_and_line(make_dataset):
    root = make_dataset({"a": IMG, "b": IMG}, labels={"a": "benign", "b": "cancer"})
    with pytest.raises(DatasetError) as e:
        read_dataset(root)
    assert "manifest.csv:3" in str(e.value) and "'label'" in str(e.value) and "'cancer'" in str(e.value)


def test_bad_label_line_number_with_split(make_dataset):
    root = make_dataset({"a": IMG, "b": IMG}, labels={"a": "benign", "b": "cancer"},
                        splits={"a": "train", "b": "val"})
    with pytest.raises(DatasetError, match=r"manifest\.csv:3: column 'label'"):
        read_dataset(root, "val")


@pytest.mark.parametrize("case", ["../x", "sub/x", "/abs", ".hidden", ""])
def test_invalid_case_ids(make_dataset, case):
    root = make_dataset({"a": IMG}, rows=[{"case": "a"}, {"case": case}])
    with pytest.raises(DatasetError, match="manifest.csv:3: column 'case': invalid case id"):
        read_dataset(root)


def test_class_targets_and_a_seeded_stratified_mask_fraction(make_dataset):
    labels = {f"b{i}": "benign" for i in range(8)} | {f"m{i}": "malignant" for i in range(4)} | {"n0": "normal"}
    root = make_dataset(dict.fromkeys(labels, IMG), labels=labels, masks=dict.fromkeys(labels, MASK))
    items = dataset_dicts(root, classes=["benign", "malignant"], mask_fraction=0.25, seed=3)
    assert {i["case"]: i["target"] for i in items} == {c: int(c[0] == "m") for c in labels if c != "n0"}
    annotated = sorted(i["case"] for i in items if i["has_mask"])
    assert [c[0] for c in annotated] == ["b", "b", "m"]
    assert annotated == sorted(i["case"] for i in dataset_dicts(root, classes=["benign", "malignant"],
                                                                   mask_fraction=0.25, seed=3) if i["has_mask"])
    assert all(i["has_mask"] for i in dataset_dicts(root, mask_fraction=1.0))
    assert not any(i["has_mask"] for i in dataset_dicts(root, mask_fraction=0.0))
    assert "has_mask" not in dataset_dicts(root)[0] and "target" not in dataset_dicts(root)[0]
    with pytest.raises(DatasetError, match="mask_fraction"):
        dataset_dicts(root, mask_fraction=1.5)


def test_no_cancer_takes_normal_and_benign_cases(make_dataset):
    labels = {"n0": "normal", "b0": "benign", "m0": "malignant"}
    root = make_dataset(dict.fromkeys(labels, IMG), labels=labels)
    items = dataset_dicts(root, with_masks=False, classes=["no_cancer", "malignant"])
    assert {i["case"]: i["target"] for i in items} == {"n0": 0, "b0": 0, "m0": 1}
    assert {i["case"] for i in dataset_dicts(root, with_masks=False, classes=["benign", "malignant"])} == {"b0", "m0"}
    with pytest.raises(DatasetError, match="unknown classes"):
        case_dicts(read_dataset(root), with_masks=False, classes=["cancer"])


def test_busbra_scanners_and_splits(shared_data):
    train, val = (read_dataset(shared_data / "busbra", split) for split in ("train", "val"))
    assert (len(train), len(val)) == (852, 212)
    assert Counter(c.label for c in train + val) == {"benign": 722, "malignant": 342}
    devices = Counter(c.meta["device"].split(" @")[0] for c in train + val)
    assert devices == {"GE Logiq 5": 490, "GE Logiq 7": 488, "Toshiba Aplio 300": 72, "U-Systems": 14}
    assert all(c.mask is not None and c.image.suffix == ".jpg" for c in train + val)


def test_several_folders_each_keep_their_own_split(make_dataset):
    first = make_dataset({"a": IMG, "b": IMG}, splits={"a": "train", "b": "val"}, masks={"a": MASK, "b": MASK})
    second = make_dataset({"c": IMG, "d": IMG}, splits={"c": "train", "d": "val"}, masks={"c": MASK, "d": MASK})
    assert [i["case"] for i in dataset_dicts([first, second], "train")] == ["a", "c"]
    assert [i["case"] for i in dataset_dicts([first, second], "val")] == ["b", "d"]
    assert dataset_dicts([first], "val") == dataset_dicts(first, "val")


def test_a_held_out_scanner_is_left_out_of_training_and_validated_on_alone(make_dataset):
    rows = [{"case": c, "split": s, "device": d} for c, s, d in
            [("a", "train", "GE Logiq 5 @10-12MHz"), ("b", "val", "GE Logiq 5 @10-12MHz"),
             ("c", "train", "GE Logiq 7 @10-14MHz"), ("d", "val", "Toshiba Aplio 300")]]
    root = make_dataset(dict.fromkeys("abcd", IMG), rows=rows, masks=dict.fromkeys("abcd", MASK))
    held_out = {"device": "GE Logiq 5"}
    assert [i["case"] for i in dataset_dicts(root, "train", without=held_out)] == ["c"]
    assert [i["case"] for i in dataset_dicts(root, "val", without=held_out)] == ["d"]
    assert [i["case"] for i in dataset_dicts(root, only=held_out)] == ["a", "b"]
    assert [i["case"] for i in dataset_dicts(root, only={"device": "Philips"})] == []


@pytest.mark.parametrize("text", ["device", "=GE", "device=", ""])
def test_a_hold_out_rule_without_column_or_prefix_is_a_clear_error(text):
    with pytest.raises(DatasetError, match="expected COLUMN=PREFIX"):
        column_rule(text)
    assert column_rule("device=GE Logiq 5") == {"device": "GE Logiq 5"}
