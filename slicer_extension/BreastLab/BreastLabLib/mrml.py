"""MRML side of the module: a 2-D image as a one-slice volume, its lesion segment, point lists and overlays.

Image arrays are (rows, columns); a volume's voxel array is (1, rows, columns) and IJK = (column, row, 0).
Volumes get the axes Slicer gives a PNG file (ITK's LPS identity): column -> -R, row -> -A, so the image
appears upright and unmirrored in the axial (Red) slice view.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from slicer.util import arrayFromVolume, updateVolumeFromArray

IMAGE_IJK_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SALIENCY_COLORS = "BreastLab saliency colors"
Segmentations = slicer.vtkSlicerSegmentationsModuleLogic


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    matrix.DeepCopy(np.asarray(array, dtype=float).ravel().tolist())
    return matrix


def numpy_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def add_image_volume(scene, image: np.ndarray, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node holding the 2-D ``image`` (rows, columns) as its only slice."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    volume = scene.AddNewNodeByClass(class_name, name)
    volume.SetIJKToRASMatrix(vtk_matrix(IMAGE_IJK_TO_RAS))
    updateVolumeFromArray(volume, image[np.newaxis])
    volume.CreateDefaultDisplayNodes()
    return volume


def image_of(volume) -> np.ndarray:
    """A copy of a one-slice volume's voxels as a (rows, columns) array."""
    voxels = arrayFromVolume(volume)
    if voxels.shape[0] != 1:
        raise ValueError(f"expected a one-slice volume, got {voxels.shape[0]} slices")
    return voxels[0].copy()


def like_volume(scene, volume, image: np.ndarray, name: str, class_name: str):
    """A new volume with ``volume``'s geometry and ``image`` (which must have its size) as voxels."""
    rows, columns = image_of(volume).shape
    if image.shape != (rows, columns):
        raise ValueError(f"array of shape {image.shape} does not match the {rows}x{columns} image")
    other = scene.AddNewNodeByClass(class_name, name)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    other.SetIJKToRASMatrix(matrix)
    updateVolumeFromArray(other, image[np.newaxis])
    return other


def add_segmentation(scene, volume, segment_name: str = "lesion", color=(0.9, 0.8, 0.2)):
    """An empty segmentation on ``volume``'s geometry with one segment; returns (node, segment id)."""
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} segmentation")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentation.CreateDefaultDisplayNodes()
    return segmentation, add_segment(segmentation, segment_name, color)


def add_segment(segmentation, name: str, color, segment_id: str | None = None) -> str:
    """A new empty segment ``name`` in ``color`` (RGB 0-1), with id ``segment_id`` (default: the name); its id."""
    return segmentation.GetSegmentation().AddEmptySegment(segment_id or name, name, list(color))


def set_segment_look(segmentation, segment_id: str, name: str, color, fill: bool = True) -> None:
    """Rename and recolour a segment; ``fill`` False draws only its outline in the slice views."""
    segment = segmentation.GetSegmentation().GetSegment(segment_id)
    segment.SetName(name)
    segment.SetColor(list(color))
    segmentation.GetDisplayNode().SetSegmentOpacity2DFill(segment_id, 1.0 if fill else 0.0)


def set_segment_mask(segmentation, segment_id: str, mask: np.ndarray, volume) -> None:
    """Replace the segment's content with ``mask`` (rows, columns; non-zero = inside)."""
    scene = segmentation.GetScene()
    labelmap = like_volume(scene, volume, (mask > 0).astype(np.uint8), "BreastLab mask", "vtkMRMLLabelMapVolumeNode")
    try:
        if not Segmentations.ImportLabelmapToSegmentationNode(labelmap, segmentation, _ids(segment_id)):
            raise RuntimeError(f"could not import the mask into segment {segment_id!r}")
    finally:
        scene.RemoveNode(labelmap)


def segment_mask(segmentation, segment_id: str, volume) -> np.ndarray:
    """The segment as a 0/1 uint8 (rows, columns) array on ``volume``'s pixel grid."""
    scene = segmentation.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "BreastLab export")
    try:
        if not Segmentations.ExportSegmentsToLabelmapNode(segmentation, _ids(segment_id), labelmap, volume):
            raise RuntimeError(f"could not export segment {segment_id!r}")
        return (image_of(labelmap) > 0).astype(np.uint8)
    finally:
        display = labelmap.GetDisplayNode()
        if display is not None and display.GetColorNode() is not None:
            scene.RemoveNode(display.GetColorNode())  # the export made a colour table for this labelmap
        remove_node(labelmap)


def saliency_colors(scene):
    """The overlay's colour table (created once per scene): transparent at 0, black-red-yellow-white 'hot' above."""
    table = scene.GetFirstNodeByName(SALIENCY_COLORS)
    if table is not None:
        return table
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", SALIENCY_COLORS)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    level = np.linspace(0.0, 1.0, 256)
    rgba = np.clip(np.stack([3 * level, 3 * level - 1, 3 * level - 2, 4 * level], axis=1), 0.0, 1.0)
    for index, (red, green, blue, alpha) in enumerate(rgba):
        table.SetColor(index, f"{index}", red, green, blue, alpha)
    return table


def show_saliency(scene, volume, saliency: np.ndarray, opacity: float, overlay=None):
    """``saliency`` (rows, columns; 0-1) as a coloured overlay over ``volume``; reuses ``overlay`` if given."""
    values = np.asarray(saliency, dtype=np.float32)
    if overlay is None:
        overlay = like_volume(scene, volume, values, f"{volume.GetName()} saliency", "vtkMRMLScalarVolumeNode")
        overlay.CreateDefaultDisplayNodes()
    else:
        updateVolumeFromArray(overlay, values[np.newaxis])
    display = overlay.GetDisplayNode()
    display.SetAndObserveColorNodeID(saliency_colors(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    show_layers(scene, volume, overlay, opacity)
    return overlay


def show_layers(scene, background, foreground=None, opacity: float = 0.5) -> None:
    """Show ``background`` (and ``foreground`` at ``opacity``) in every slice view of the scene."""
    for composite in _slice_composites(scene):
        composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(foreground.GetID() if foreground else None)
        composite.SetForegroundOpacity(_unit(opacity))


def set_overlay_opacity(scene, opacity: float) -> None:
    for composite in _slice_composites(scene):
        composite.SetForegroundOpacity(_unit(opacity))


def add_point_list(scene, name: str, color):
    """An empty markups point list drawn in ``color`` (RGB 0-1)."""
    return _add_markups(scene, "vtkMRMLMarkupsFiducialNode", name, color)


def pixel_points(points, volume) -> list[list[int]]:
    """The list's points as image pixels ``[x, y]`` (column, row); points outside the image are left out."""
    count = points.GetNumberOfControlPoints()
    if count == 0:
        return []
    ras = np.array([points.GetNthControlPointPositionWorld(i) for i in range(count)])
    ras_to_ijk = vtk.vtkMatrix4x4()
    volume.GetRASToIJKMatrix(ras_to_ijk)
    ijk = np.c_[ras, np.ones(count)] @ numpy_matrix(ras_to_ijk).T
    pixels = np.rint(ijk[:, :2]).astype(int)
    rows, columns = image_of(volume).shape
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < columns) & (pixels[:, 1] >= 0) & (pixels[:, 1] < rows)
    return pixels[inside].tolist()


def add_box(scene, name: str, color):
    """An empty markups ROI: the box an annotator draws around a lesion, in ``color`` (RGB 0-1)."""
    return _add_markups(scene, "vtkMRMLMarkupsROINode", name, color)


def _add_markups(scene, class_name: str, name: str, color):
    node = scene.AddNewNodeByClass(class_name, name)
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetSelectedColor(list(color))
    node.GetDisplayNode().SetColor(list(color))
    return node


def pixel_box(box, volume) -> list[int] | None:
    """The box as image pixels ``[x0, y0, x1, y1]`` (columns, rows): the pixels whose centres it holds, within the
    image; None when it is not placed or holds no two pixels apart in both directions."""
    if box.GetNumberOfControlPoints() == 0:
        return None
    bounds = [0.0] * 6
    box.GetRASBounds(bounds)
    ras_to_ijk = vtk.vtkMatrix4x4()
    volume.GetRASToIJKMatrix(ras_to_ijk)
    corners = np.array([[bounds[0], bounds[2], bounds[4], 1.0], [bounds[1], bounds[3], bounds[4], 1.0]])
    ijk = (corners @ numpy_matrix(ras_to_ijk).T)[:, :2]
    rows, columns = image_of(volume).shape
    low = np.maximum(np.ceil(ijk.min(axis=0) - 1e-6), 0).astype(int)
    high = np.minimum(np.floor(ijk.max(axis=0) + 1e-6), [columns - 1, rows - 1]).astype(int)
    if (high <= low).any():
        return None
    return [int(low[0]), int(low[1]), int(high[0]), int(high[1])]


def pixel_to_ras(volume, x: float, y: float) -> list[float]:
    """RAS position of pixel (column ``x``, row ``y``) of a one-slice volume."""
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    return list(ijk_to_ras.MultiplyPoint([x, y, 0.0, 1.0])[:3])


def remove_node(node) -> None:
    """Remove a displayable node and its display nodes from its scene."""
    scene = node.GetScene()
    displays = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    scene.RemoveNode(node)
    for display in displays:
        if display is not None:
            scene.RemoveNode(display)


def _ids(segment_id: str) -> vtk.vtkStringArray:
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    return ids


def _slice_composites(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]


def _unit(value: float) -> float:
    return min(1.0, max(0.0, float(value)))
