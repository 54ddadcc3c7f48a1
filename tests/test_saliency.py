"""Grad-CAM of a classifier and the top boxes of a saliency map."""

import numpy as np
import pytest
import torch

from breastlab.bundle import get_bundle
from breastlab.explain.saliency import GradCam, GradCamPredictor, UnitRangeMap, top_boxes
from breastlab.formats.png import read_gray_png
from breastlab.networks import named_outputs
from breastlab.networks.lanet import LANet
from breastlab.transforms.mammo import breast_bbox, orient_breast


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


def test_unit_range_map_thresholds_the_map_against_its_own_peak():
    low = np.zeros((8, 8), np.float32)
    low[2:4, 2:4], low[6, 6] = 0.2, 0.05  # a weak map: nothing reaches 0.5
    outputs = {"low.png": low, "flat.png": np.full((8, 8), 0.3, np.float32)}
    wrapped = UnitRangeMap(lambda path: {"probability": outputs[path], "mask": (outputs[path] >= 0.5).astype(np.uint8),
                                         "class_probabilities": {"malignant": 0.2}})
    out = wrapped("low.png")
    assert out["class_probabilities"] == {"malignant": 0.2} and out["probability"].max() == 1.0
    assert out["mask"].dtype == np.uint8 and out["mask"].sum() == 4 and out["mask"][2:4, 2:4].all()
    assert not wrapped("flat.png")["mask"].any()  # a constant map marks nothing


class _BrightSpotClassifier(torch.nn.Module):
    """Class 0's logit is the mean of a feature map that copies the image: its evidence is where the image is bright."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Conv2d(1, 1, 1)
        torch.nn.init.ones_(self.features.weight)
        torch.nn.init.zeros_(self.features.bias)

    def forward(self, x):
        pooled = torch.relu(self.features(x)).mean(dim=(2, 3))
        return {"cls": torch.cat([pooled, -pooled], dim=1)}


def test_grad_cam_is_highest_where_the_evidence_is():
    image = torch.zeros(1, 1, 32, 48)
    image[0, 0, 5:9, 30:36] = 1.0
    cam = GradCam(_BrightSpotClassifier().eval(), "features")(image, class_index=0)
    row, col = divmod(int(cam.argmax()), cam.shape[1])
    assert 5 <= row < 9 and 30 <= col < 36 and cam.max() == 1.0 and cam[20:, :20].max() == 0


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
    resnet_baseline = {"network_def#lesion_attention": False, "network_def#backbone": "resnet18"}
    bundle = get_bundle("breast_us_lanet", **resnet_baseline)
    torch.manual_seed(0)
    weights = tmp_path / "baseline.pt"
    torch.save(bundle.network().state_dict(), weights)
    image = next(iter(sorted((samples_dir / "images").glob("*.png"))))
    height, width = read_gray_png(image).shape
    assert height != width  # a transposed map would show
    predictor = bundle.predictor(weights)
    with torch.no_grad():
        output = named_outputs(predictor.network, predictor.network(predictor.network_input(image)))
        expected = output["cls"].softmax(1)[0, 1].item()
    grad_cam_predictor = GradCamPredictor(predictor, "backbone.layer4", threshold=0.5)
    grad_cam_predictor(image)
    outputs = grad_cam_predictor(image)  # the second call sees the network as the first did
    assert outputs["class_probabilities"]["malignant"] == pytest.approx(expected, abs=1e-6)
    probability = outputs["probability"]
    assert probability.shape == (height, width) and 0 <= probability.min() < probability.max() <= 1
    assert np.array_equal(outputs["mask"], (probability >= 0.5).astype(np.uint8)) and 0 < outputs["mask"].sum()
    assert sum(outputs["class_probabilities"].values()) == pytest.approx(1.0)


def test_grad_cam_of_a_cropped_mammogram_is_put_back_on_the_breast(mammograms, tmp_path):
    bundle = get_bundle("breast_mammo_end2end", members=1, **{"network_def#flip_average": False})
    torch.manual_seed(0)
    weights = tmp_path / "member.pt"
    torch.save(bundle.network().state_dict(), weights)
    predictor = GradCamPredictor(bundle.predictor(weights), "classifiers.0.trunk", lesion_class=True)
    image = mammograms / "images" / "m01.png"  # breast on the right: oriented, cropped, then restored
    oriented, flipped = orient_breast(read_gray_png(image))
    r0, r1, c0, c1 = breast_bbox(oriented)
    assert flipped and (r0, r1, c1 - c0) != (0, 256, 192)  # a real crop, so a misplaced map would show
    probability = predictor(image)["probability"]
    assert probability.shape == (256, 192)
    inside = np.zeros_like(probability, bool)
    inside[r0:r1, 192 - c1: 192 - c0] = True  # the box, flipped back to the right
    assert probability[~inside].max() == 0 < probability[inside].max()
