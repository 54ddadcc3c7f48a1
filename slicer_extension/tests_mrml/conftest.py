"""A MRML scene from the slicer-core wheel, set up as the Slicer application sets up its own, and a real server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import slicer

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def segmentation_converters():
    """The segment representations' converters, which Slicer's Segmentations module registers at start-up."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not factory.GetConverterRules():
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
        factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


@pytest.fixture
def scene():
    """A scene with the subject hierarchy and one slice view's composite node, as the application's scene has."""
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    composite = slicer.vtkMRMLSliceCompositeNode()
    composite.SetLayoutName("Red")
    scene.AddNode(composite)
    yield scene
    scene.Clear(True)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> dict:
    """A real BreastLab server (``url``, ``log``), run by the project's .venv (``BREASTLAB_PYTHON`` overrides)."""
    python = os.environ.get("BREASTLAB_PYTHON", str(PROJECT_ROOT / ".venv" / "bin" / "python"))
    workdir = tmp_path_factory.mktemp("session_server")
    process = subprocess.Popen([python, "-m", "slicer_extension.tests_mrml.serve_breastlab", str(workdir)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=PROJECT_ROOT, text=True)
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server helper exited with {process.wait()} before serving")
        yield json.loads(line)
    finally:
        process.stdin.close()
        process.wait(timeout=60)
