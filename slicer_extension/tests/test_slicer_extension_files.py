"""The extension's packaging without Slicer: CMake metadata, catalog entry, Qt Designer file, icon, module source."""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from BreastLabLib.client import MODEL_TYPES
from PIL import Image

from breastlab.data import BIRADS

EXTENSION = Path(__file__).resolve().parents[1]
MODULE = EXTENSION / "BreastLab"
CATALOG_KEYS = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                "build_subdirectory", "enabled", "tier"}  # slicer-extension-catalog-entry-schema v1.0.1


def cmake_settings(path: Path) -> dict[str, str]:
    return dict(re.findall(r'^set\((EXTENSION_\w+) "([^"]*)"\)', path.read_text(), flags=re.MULTILINE))


def ui_tree():
    return ElementTree.parse(MODULE / "Resources" / "UI" / "BreastLab.ui")


@pytest.fixture(scope="module")
def module_source() -> str:
    return (MODULE / "BreastLab.py").read_text()


def test_top_level_cmake_declares_the_extension():
    text = (EXTENSION / "CMakeLists.txt").read_text()
    settings = cmake_settings(EXTENSION / "CMakeLists.txt")
    for name in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert f"EXTENSION_{name}" in settings
    assert settings["EXTENSION_DEPENDS"] == "NA"
    assert settings["EXTENSION_ICONURL"].endswith("slicer_extension/BreastLab/Resources/Icons/BreastLab.png")
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(BreastLab)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text


def test_module_cmake_lists_every_script_and_resource():
    text = (MODULE / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    listed = set(re.findall(r"^\s+(BreastLabLib/\w+\.py)$", text, flags=re.MULTILINE))
    assert listed == {str(p.relative_to(MODULE)) for p in (MODULE / "BreastLabLib").glob("*.py")}
    for resource in ("Resources/Icons/BreastLab.png", "Resources/UI/BreastLab.ui"):
        assert resource.replace("BreastLab.", "${MODULE_NAME}.") in text and (MODULE / resource).is_file()


def test_catalog_entry_follows_the_schema_and_the_cmake_category():
    entry = json.loads((EXTENSION / "BreastLab.json").read_text())
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert set(entry) <= CATALOG_KEYS and {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["category"] == cmake_settings(EXTENSION / "CMakeLists.txt")["EXTENSION_CATEGORY"]
    assert (entry["build_dependencies"], entry["build_subdirectory"], entry["tier"]) == ([], ".", 1)
    assert entry["scm_url"].endswith(".git") and entry["scm_revision"]


def test_icon_is_a_128_pixel_png():
    with Image.open(MODULE / "Resources" / "Icons" / "BreastLab.png") as icon:
        assert (icon.format, icon.size) == ("PNG", (128, 128))


def test_ui_declares_its_custom_widgets():
    tree = ui_tree()
    root = tree.getroot().find("widget")
    assert (root.get("class"), root.get("name")) == ("qMRMLWidget", "BreastLab")
    used = {w.get("class") for w in tree.iter("widget")} - {None}
    declared = {c.findtext("class") for c in tree.iter("customwidget")}
    assert {c for c in used if not c.startswith("Q")} <= declared


def test_every_widget_the_module_uses_is_in_the_ui(module_source):
    names = {w.get("name") for w in ui_tree().iter("widget")}
    panel_source = (MODULE / "BreastLabLib" / "panel.py").read_text()  # the Review section's wiring
    used = set(re.findall(r"\bui\.(\w+)", module_source + panel_source))  # self.ui.x and ui.x
    used |= {f"{kind}ModelComboBox" for kind in MODEL_TYPES}  # looked up with getattr per model type
    assert used and used <= names, sorted(used - names)


def test_the_birads_field_offers_every_category_the_server_accepts_and_a_blank():
    combo = next(w for w in ui_tree().iter("widget") if w.get("name") == "biradsComboBox")
    assert [item.findtext("property/string") or "" for item in combo.findall("item")] == ["", *BIRADS]


def test_slicer_self_test_runs_every_test_method(module_source):
    tree = ast.parse(module_source)
    test_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BreastLabTest")
    methods = {n.name: n for n in test_class.body if isinstance(n, ast.FunctionDef)}
    tests = {name for name in methods if name.startswith("test_")}
    called = {n.attr for n in ast.walk(methods["runTest"]) if isinstance(n, ast.Attribute)}
    assert len(tests) >= 4 and tests <= called
    for name in tests:
        assert any(isinstance(n, ast.Call) and "assert" in ast.unparse(n.func).lower()
                   for n in ast.walk(methods[name])), f"{name} asserts nothing"
