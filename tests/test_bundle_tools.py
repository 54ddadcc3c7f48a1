"""Packing a multi-output network's outputs into one tensor (the form MONAI's bundle tools need; they run on every
bundle archive in tests/test_sharing.py) changes none of them."""

import pytest
import torch

from breastlab.bundle import get_bundle, load_weights
from breastlab.networks import OutputLayout, named_outputs, pack_outputs
from breastlab.transforms import UnpackOutputsd

MULTI_OUTPUT = ["breast_us_lanet", "breast_us_acsnet", "breast_mammo_end2end", "breast_mammo_glam"]


def _network_input(bundle) -> torch.Tensor:
    image = bundle.metadata["network_data_format"]["inputs"]["image"]
    return torch.rand(1, image["num_channels"], *image["spatial_shape"], generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", MULTI_OUTPUT)
def test_a_packed_network_serves_what_its_dict_form_computes(name):
    bundle = get_bundle(name)
    packed = load_weights(bundle.network(), bundle.model_path).eval()
    plain = get_bundle(name, **{"network_def#packed": False}).network().eval()
    plain.load_state_dict(packed.state_dict())
    x = _network_input(bundle)
    with torch.no_grad():
        named, expected = named_outputs(packed, packed(x)), plain(x)
    assert set(named) == set(packed.output_layout.maps) | set(packed.output_layout.vectors)
    for key, value in named.items():
        assert torch.equal(value, expected[key].to(value.dtype)), key


def test_pack_and_unpack_are_inverse_and_keep_vectors_apart():
    maps = [torch.rand(2, 2, 4, 5), torch.rand(2, 1, 4, 5)]
    corners = torch.tensor([[[0, 3], [7, 1]], [[2, 2], [4, 900]]])
    vectors = [torch.rand(2, 3), corners]
    packed = pack_outputs(maps, vectors)
    assert packed.shape == (2, 4, 4, 5) and packed.dtype == torch.float32
    layout = OutputLayout({"seg": 2, "edge": 1}, {"cls": (3,), "corners": (2, 2)})
    out = layout.unpack(packed)
    assert torch.equal(out["seg"], maps[0]) and torch.equal(out["edge"], maps[1])
    assert torch.equal(out["cls"], vectors[0]) and torch.equal(out["corners"].long(), corners)
    assert layout.channel_count() == 4
    item = UnpackOutputsd("pred", layout)({"pred": packed[1], "image": "x"})
    assert set(item) == {"image", "seg", "edge", "cls", "corners"} and torch.equal(item["cls"], vectors[0][1])
    with pytest.raises(ValueError, match="do not fit a 2 x 2 map"):
        pack_outputs([torch.rand(1, 1, 2, 2)], [torch.rand(1, 5)])


def test_a_layout_without_maps_is_its_one_vector():
    logits = torch.rand(3, 2)
    assert OutputLayout({}, {"cls": (2,)}).unpack(logits)["cls"] is logits
    with pytest.raises(ValueError, match="exactly one vector"):
        OutputLayout({}, {"cls": (2,), "other": (1,)})
