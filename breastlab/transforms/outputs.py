"""Postprocessing of multi-output networks: a packed output (:mod:`breastlab.networks.outputs`) back into names."""

from __future__ import annotations

import torch
from monai.transforms import MapTransform

from breastlab.networks.outputs import OutputLayout


class UnpackOutputsd(MapTransform):
    """Replace the packed network output ``data[key]`` (one item, (C, H, W)) by its named outputs at the top level
    of the data, as MONAI's ``FlattenSubKeysd`` does for a dict output; ``layout`` is the network's
    ``output_layout``."""

    def __init__(self, keys="pred", layout: OutputLayout | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if layout is None:
            raise ValueError("UnpackOutputsd needs the network's output_layout")
        self.layout = layout

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            named = self.layout.unpack(torch.as_tensor(d.pop(key))[None])
            d.update({name: value[0] for name, value in named.items()})
        return d
