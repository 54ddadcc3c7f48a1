"""BreastLabLib.mrml against Slicer's real MRML classes (slicer-core): arrays, segments, overlays, points."""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from BreastLabLib import mrml
from PIL import Image
from slicer.util import arrayFromVolume


def gradient_image(rows: int = 20, columns: int = 30) -> np.ndarray:
    """Every pixel different, so a transposed or flipped array cannot pass for the original."""
    return (np.arange(rows * columns).reshape(rows, columns) % 251).astype(np.uint8)


def composite(scene):
    return scene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")


def test_image_volume_is_one_slice_of_rows_by_columns(scene):
    image = gradient_image()
    volume = mrml.add_image_volume(scene, image, "case")
    assert volume.GetImageData().GetDimensions() == (30, 20, 1)  # VTK: (columns, rows, slices)
    assert arrayFromVolume(volume).shape == (1, 20, 30)
    np.testing.assert_array_equal(mrml.image_of(volume), image)
    np.testing.assert_array_equal(mrml.numpy_matrix(volume_matrix(volume)), np.diag([-1, -1, 1, 1]))
    assert volume.GetDisplayNode() is not None


def volume_matrix(volume):
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix


def test_pixels_map_to_ras_and_back(scene):
    volume = mrml.add_image_volume(scene, gradient_image(), "case")
    assert mrml.pixel_to_ras(volume, 5, 2) == [-5.0, -2.0, 0.0]  # column -> -R (screen right), row -> -A (down)
    points = mrml.add_point_list(scene, "clicks", (0, 1, 0))
    for x, y in [(5, 2), (29, 19), (0, 0)]:
        points.AddControlPointWorld(mrml.pixel_to_ras(volume, x, y))
    points.AddControlPointWorld(mrml.pixel_to_ras(volume, 12.4, 7.6))  # rounds to the nearest pixel
    points.AddControlPointWorld(mrml.pixel_to_ras(volume, 30, 5))  # right of the image: left out
    points.AddControlPointWorld(mrml.pixel_to_ras(volume, 3, -1))  # above the image: left out
    assert mrml.pixel_points(points, volume) == [[5, 2], [29, 19], [0, 0], [12, 8]]
    assert points.GetDisplayNode().GetSelectedColor() == (0.0, 1.0, 0.0)


def test_empty_point_list_gives_no_points(scene):
    volume = mrml.add_image_volume(scene, gradient_image(), "case")
    assert mrml.pixel_points(mrml.add_point_list(scene, "none", (1, 0, 0)), volume) == []


def test_sample_mask_goes_into_a_segment_and_back(scene, samples):
    image = np.asarray(Image.open(samples / "images" / "case002.png"))
    truth = (np.asarray(Image.open(samples / "masks" / "case002.png")) > 0).astype(np.uint8)
    volume = mrml.add_image_volume(scene, image, "case002")
    segmentation, segment_id = mrml.add_segmentation(scene, volume)
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetName() == "lesion"
    nodes = scene.GetNumberOfNodes()
    mrml.set_segment_mask(segmentation, segment_id, truth * 255, volume)
    mask = mrml.segment_mask(segmentation, segment_id, volume)
    assert mask.shape == (572, 761) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, truth)
    assert scene.GetNumberOfNodes() == nodes  # no temporary labelmap left behind


def test_a_new_mask_replaces_the_segment(scene):
    volume = mrml.add_image_volume(scene, gradient_image(), "case")
    segmentation, segment_id = mrml.add_segmentation(scene, volume)
    first = np.zeros((20, 30), np.uint8)
    first[2:6, 3:25] = 1
    second = np.zeros((20, 30), np.uint8)
    second[10:18, 1:4] = 1
    mrml.set_segment_mask(segmentation, segment_id, first, volume)
    mrml.set_segment_mask(segmentation, segment_id, second, volume)
    np.testing.assert_array_equal(mrml.segment_mask(segmentation, segment_id, volume), second)
    mrml.set_segment_mask(segmentation, segment_id, np.zeros((20, 30), np.uint8), volume)
    assert mrml.segment_mask(segmentation, segment_id, volume).sum() == 0


def test_a_mask_of_another_size_is_refused(scene):
    volume = mrml.add_image_volume(scene, gradient_image(), "case")
    segmentation, segment_id = mrml.add_segmentation(scene, volume)
    with pytest.raises(ValueError, match=r"\(30, 20\) does not match the 20x30 image"):
        mrml.set_segment_mask(segmentation, segment_id, np.ones((30, 20), np.uint8), volume)


def test_saliency_overlay_is_coloured_and_shown_with_its_opacity(scene):
    volume = mrml.add_image_volume(scene, gradient_image(), "case")
    saliency = gradient_image().astype(np.float32) / 250
    overlay = mrml.show_saliency(scene, volume, saliency, opacity=0.4)
    np.testing.assert_array_equal(mrml.image_of(overlay), saliency)
    display = overlay.GetDisplayNode()
    colors = scene.GetNodeByID(display.GetColorNodeID())
    assert colors.GetName() == mrml.SALIENCY_COLORS and colors.GetNumberOfColors() == 256
    assert colors.GetLookupTable().GetTableValue(0)[3] == 0.0  # no saliency: transparent
    assert colors.GetLookupTable().GetTableValue(255) == (1.0, 1.0, 1.0, 1.0)
    assert (display.GetAutoWindowLevel(), display.GetWindow(), display.GetLevel()) == (0, 1.0, 0.5)
    view = composite(scene)
    assert (view.GetBackgroundVolumeID(), view.GetForegroundVolumeID()) == (volume.GetID(), overlay.GetID())
    assert view.GetForegroundOpacity() == pytest.approx(0.4)
    mrml.set_overlay_opacity(scene, 0.8)
    assert view.GetForegroundOpacity() == pytest.approx(0.8)
    mrml.set_overlay_opacity(scene, 1.5)
    assert view.GetForegroundOpacity() == 1.0


def test_showing_saliency_again_reuses_the_overlay_and_colours(scene):
    volume = mrml.add_image_volume(scene, gradient_image(), "case")
    overlay = mrml.show_saliency(scene, volume, np.zeros((20, 30)), opacity=0.5)
    nodes = scene.GetNumberOfNodes()
    again = mrml.show_saliency(scene, volume, np.ones((20, 30)), opacity=0.5, overlay=overlay)
    assert again.GetID() == overlay.GetID() and scene.GetNumberOfNodes() == nodes
    assert mrml.image_of(again).min() == 1.0


def test_showing_the_image_alone_clears_the_overlay(scene):
    volume = mrml.add_image_volume(scene, gradient_image(), "case")
    mrml.show_saliency(scene, volume, np.zeros((20, 30)), opacity=0.5)
    mrml.show_layers(scene, volume)
    assert composite(scene).GetForegroundVolumeID() is None


def place_box(scene, volume, x0: float, y0: float, x1: float, y1: float):
    """A ROI spanning pixels (x0, y0) to (x1, y1), placed in RAS as a user drags it."""
    box = mrml.add_box(scene, "box", (0, 0, 1))
    (r0, a0, _), (r1, a1, _) = mrml.pixel_to_ras(volume, x0, y0), mrml.pixel_to_ras(volume, x1, y1)
    box.SetXYZ((r0 + r1) / 2, (a0 + a1) / 2, 0)
    box.SetRadiusXYZ(abs(r1 - r0) / 2, abs(a1 - a0) / 2, 0.5)
    return box


def test_a_drawn_box_is_sent_as_the_pixels_it_holds(scene):
    volume = mrml.add_image_volume(scene, gradient_image(20, 30), "case")  # 30 columns, 20 rows
    assert mrml.pixel_box(place_box(scene, volume, 4, 2, 25, 9), volume) == [4, 2, 25, 9]  # x = column, y = row
    assert mrml.pixel_box(place_box(scene, volume, 4.4, 2.6, 25.2, 9.5), volume) == [5, 3, 25, 9]  # centres inside
    assert mrml.pixel_box(place_box(scene, volume, -5, -3, 12, 40), volume) == [0, 0, 12, 19]  # clipped to the image
    assert mrml.pixel_box(place_box(scene, volume, 40, 2, 50, 9), volume) is None  # right of the image
    assert mrml.pixel_box(mrml.add_box(scene, "not drawn", (0, 0, 1)), volume) is None
