"""LiteMedSAM's training on cached embeddings (the cache, the automatic kind, the simulated annotation with its
previous masks) and how its own automatic mask is made at inference (gate, cascade, test-time flips)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from breastlab.engines.prompt_training import EmbedImaged, PromptSimulation, weights_digest
from breastlab.engines.promptable import Automatic, region_box
from breastlab.networks.medsam import LiteMedSAM
from breastlab.transforms.prompts import mask_prompt

from helpers import SAMPLES

MODEL_ROOT = SAMPLES.parents[1] / "bundles" / "breast_us_medsam"


def test_embeddings_are_cached_under_the_image_bytes_the_encoder_weights_precision_and_flip(tmp_path):
    image = tmp_path / "a.png"
    shutil.copy(SAMPLES / "images" / "case002.png", image)
    embed = EmbedImaged("image", str(MODEL_ROOT), str(tmp_path / "cache"))
    same_bytes = EmbedImaged("image", str(MODEL_ROOT), str(tmp_path / "cache")).path(str(SAMPLES / "images" /
                                                                                       "case002.png"))
    assert embed.path(str(image)) == same_bytes  # a copy elsewhere is the same image
    assert embed.path(str(SAMPLES / "images" / "case007.png")) != same_bytes
    assert EmbedImaged("image", str(MODEL_ROOT), str(tmp_path / "cache"), "bf16").path(str(image)) != same_bytes
    assert EmbedImaged("image", str(MODEL_ROOT), str(tmp_path / "cache"), flip=True).path(str(image)) != same_bytes
    first = embed.embedding(str(image))
    assert first.shape == (256, 64, 64) and embed.path(str(image)).is_file()
    embed.encode = None  # a second call must not encode again
    assert torch.equal(embed.embedding(str(image)), first)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [embed.path(str(image)).name]


def test_weights_digest_follows_the_values():
    network = torch.nn.Linear(3, 2)
    before = weights_digest(network)
    assert weights_digest(network) == before
    with torch.no_grad():
        network.weight[0, 0] += 1e-3
    assert weights_digest(network) != before


@pytest.fixture(scope="module")
def untrained() -> LiteMedSAM:
    torch.manual_seed(0)
    return LiteMedSAM(pretrained=False)


def engine(network) -> SimpleNamespace:
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.0)
    return SimpleNamespace(state=SimpleNamespace(device=torch.device("cpu"), output=None), network=network,
                           inferer=lambda x, f: f(x), optimizer=optimizer, fire_event=lambda event: None)


def batch(lesions: list[bool]) -> dict:
    labels = torch.zeros(len(lesions), 1, 256, 256)
    for i, lesion in enumerate(lesions):
        labels[i, 0, 100:140, 80:150] = float(lesion)
    return {"image": torch.randn(len(lesions), 256, 64, 64, generator=torch.Generator().manual_seed(0)),
            "label": labels}


def test_automatic_batches_train_on_every_image_prompted_ones_on_lesions_only(untrained):
    data = batch([True, False, True])
    automatic = PromptSimulation(DiceCELoss(sigmoid=True), automatic_share=1.0)(engine(untrained), data)
    prompted = PromptSimulation(DiceCELoss(sigmoid=True), max_rounds=1)(engine(untrained), data)
    assert automatic["pred"].shape[0] == 3 and prompted["pred"].shape[0] == 2
    assert torch.equal(automatic["label"], data["label"])
    nothing = PromptSimulation(DiceCELoss(sigmoid=True))(engine(untrained), batch([False, False]))
    assert nothing["loss"] == 0.0 and nothing["pred"].shape[0] == 2 and not nothing["pred"].any()


def test_validation_scores_prompts_on_lesions_and_the_unprompted_mask_on_every_image(untrained):
    data = batch([True, False])
    with torch.no_grad():
        unprompted = untrained.decode(data["image"])[0]
    for share, channels in ((0.0, 3), (0.5, 4)):
        output = PromptSimulation(automatic_share=share)(engine(untrained), data)
        assert output["pred"].shape == (2, channels, 256, 256) and output["label"].shape == output["pred"].shape
        assert all(torch.equal(output["pred"][1, c], unprompted[1, 0]) for c in range(channels))  # no lesion
        if channels == 4:
            assert torch.equal(output["pred"][0, -1], unprompted[0, 0])


def test_each_simulated_click_sees_the_answer_to_the_clicks_before_it_as_its_previous_mask(untrained):
    data = batch([True, True])
    truths = [t[0].numpy() > 0 for t in data["label"]]
    simulation, inferer = PromptSimulation(), lambda x, f: f(x)
    points, labels, previous = simulation.annotate(untrained, inferer, data["image"], truths, None, "clicks", 3)
    assert len(points[0]) == len(labels[1]) == 3 and labels[0][0] == 1  # the first click is on the lesion
    with torch.no_grad():
        two_clicks = simulation.decode(untrained, inferer, data["image"], None, [p[:2] for p in points],
                                       [label[:2] for label in labels], simulation.annotate(
                                           untrained, inferer, data["image"], truths, None, "clicks", 2)[2])
    assert torch.equal(previous, mask_prompt(two_clicks > 0))
    assert simulation.annotate(untrained, inferer, data["image"], truths, None, "clicks", 1)[2] is None
    box = simulation.boxes(truths, 0.0, np.random.default_rng(0))
    with torch.no_grad():
        by_box = simulation.decode(untrained, inferer, data["image"], box, [], [])
    assert torch.equal(simulation.annotate(untrained, inferer, data["image"], truths, box, "box", 1)[2],
                       mask_prompt(by_box > 0))


@pytest.fixture(scope="module")
def embeddings() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    """Case007 and its mirror image, embedded by the shipped network."""
    from breastlab.bundle import get_bundle

    predictor = get_bundle("breast_us_medsam").predictor()
    image = predictor.pre({"image": str(SAMPLES / "images" / "case007.png")})["image"][None]
    with torch.no_grad():
        return predictor.network.encode(image), predictor.network.encode(image.flip(-1)), predictor.network


def identity(x, f):
    return f(x)


@pytest.mark.slow
def test_test_time_flips_treat_an_image_and_its_mirror_alike(embeddings):
    embedding, mirrored, network = embeddings
    for refine in (False, True):
        automatic = Automatic(flip=True, refine=refine)
        logits, _ = automatic(network, identity, embedding, mirrored)
        of_mirror, _ = automatic(network, identity, mirrored, embedding)
        assert torch.allclose(logits, of_mirror.flip(-1), atol=1e-4)


@pytest.mark.slow
def test_the_cascade_decodes_the_box_of_the_unprompted_masks_most_confident_region(embeddings):
    embedding, _, network = embeddings
    unprompted, none = Automatic()(network, identity, embedding)
    box = region_box(torch.sigmoid(unprompted)[0, 0].numpy())
    refined, used = Automatic(refine=True)(network, identity, embedding)
    assert none is None and used == box
    expected = unprompted if box is None else network.decode(embedding, box=torch.tensor([box]))[0]
    assert torch.equal(refined, expected)
    gated, none = Automatic(refine=True, min_peak=1.01)(network, identity, embedding)
    assert none is None and bool((gated < 0).all())  # no lesion: an empty mask, no box


def test_region_box_is_inclusive_around_the_most_confident_region():
    probability = np.zeros((50, 60), np.float32)
    probability[10:20, 5:15] = 0.7
    probability[30:34, 40:50] = 0.9
    assert region_box(probability) == [40, 30, 49, 33]
    assert region_box(np.zeros((5, 5), np.float32)) is None
