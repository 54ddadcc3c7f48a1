"""Grad-CAM of a classifier and the top boxes of a saliency map."""

import numpy as np
import pytest
import torch

from breastlab.bundle import get_bundle
from breastlab.imageio import read_gray_png
from breastlab.networks.lanet import LANet
from breastlab.saliency import GradCam, GradCamPredictor, top_boxes


def test_regions_are_ranked_by_peak_and_boxed_in_xyxy():
    saliency = np.zeros((32, 40), np.float32)
    saliency[4:10, 6:20] = 0.7  # large, weaker
    saliency[25:27, 28:30] = 0.9  # small, stronger
    saliency[0, 39] = 0.6
    boxes = top_boxes(saliency, threshold=0.5, k=2)
    assert boxes == [{"box": [28, 25, 30, 27], "score": 0.9, "area": 4},
                     {"box": [6, 4, 20, 10], "score": 0.7, "area": 84}]
    assert len(top_boxes(saliency, threshold=0.5)) == 3
    assert top_boxes(saliency, threshold=0.95) == []


def test_diagonal_neighbours_are_one_region_and_bad_shapes_are_refused():
    saliency = np.eye(5, dtype=np.float32)
    assert top_boxes(saliency) == [{"box": [0, 0, 5, 5], "score": 1.0, "area": 5}]
    with pytest.raises(ValueError, match="2D"):
        top_boxes(np.zeros((1, 4, 4)))


def test_grad_cam_of_a_dict_output_classifier_is_an_image_sized_unit_map():
    torch.manual_seed(0)
    network = LANet(lesion_attention=False).eval()
    image = torch.rand(1, 1, 64, 96)
    grad_cam = GradCam(network, "backbone.layer4")
    cam = grad_cam(image, class_index=1)
    assert cam.shape == (64, 96) and float(cam.min()) >= 0 and float(cam.max()) == pytest.approx(1.0)
    assert not torch.equal(cam, grad_cam(image, class_index=0))
    assert not network.training  # MONAI's wrapper would leave it in train mode (batch norm statistics change)
    with pytest.raises(ValueError, match="no module 'backbone.layer9'.*backbone"):
        GradCam(network, "backbone.layer9")


def test_grad_cam_predictor_maps_a_classifier_at_the_image_size(samples_dir, tmp_path):
    bundle = get_bundle("breast_us_lanet", **{"network_def#lesion_attention": False})
    torch.manual_seed(0)
    weights = tmp_path / "baseline.pt"
    torch.save(bundle.network().state_dict(), weights)
    image = next(iter(sorted((samples_dir / "images").glob("*.png"))))
    height, width = read_gray_png(image).shape
    assert height != width  # a transposed map would show
    predictor = bundle.predictor(weights)
    with torch.no_grad():
        expected = predictor.network(predictor.network_input(image))["cls"].softmax(1)[0, 1].item()
    grad_cam_predictor = GradCamPredictor(predictor, "backbone.layer4", threshold=0.5)
    grad_cam_predictor(image)
    outputs = grad_cam_predictor(image)  # the second call sees the network as the first did
    assert outputs["class_probabilities"]["malignant"] == pytest.approx(expected, abs=1e-6)
    probability = outputs["probability"]
    assert probability.shape == (height, width) and 0 <= probability.min() < probability.max() <= 1
    assert np.array_equal(outputs["mask"], (probability >= 0.5).astype(np.uint8)) and 0 < outputs["mask"].sum()
    assert sum(outputs["class_probabilities"].values()) == pytest.approx(1.0)
