"""Size and CPU cost of each network a bundle defines: parameters, MB, GFLOPs and latency at its input size.

Rows: the served network (``inference.json``) and, where the bundle has ``configs/teacher.json``,
its teacher. Run by hand: ``python bench/model_cost.py [--repeats 20] [--bundles NAME ...]``.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode

from breastlab.bundle import find_bundles
from breastlab.metrics import format_table

from common import timed


def networks(bundle) -> dict[str, torch.nn.Module]:
    found = {"served": bundle.network()}
    if (bundle.root / "configs" / "teacher.json").is_file():
        found["teacher"] = bundle.parser("train", "teacher").get_parsed_content("network_def")
    return found


@torch.no_grad()
def cost(network: torch.nn.Module, channels: int, size: list[int], repeats: int) -> dict:
    network.eval()
    x = torch.rand(1, channels, *size)
    with FlopCounterMode(display=False) as counter:
        network(x)
    params = sum(p.numel() for p in network.parameters())
    network(x)
    return {"parameters (M)": params / 1e6, "size (MB, fp32)": params * 4 / 2**20,
            "GFLOPs": counter.get_total_flops() / 1e9,
            "CPU latency (ms)": statistics.median(timed(lambda: network(x)) for _ in range(repeats)) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--bundles", nargs="+", help="only these bundles (default: all)")
    args = parser.parse_args()
    rows = []
    for bundle in find_bundles():
        if args.bundles and bundle.name not in args.bundles:
            continue
        size = bundle.inference.get_parsed_content("image_size")
        size = [size, size] if isinstance(size, int) else size
        for role, network in networks(bundle).items():
            rows.append({"bundle": bundle.name, "network": role, "input": "x".join(map(str, size)),
                         **cost(network, bundle.input_channels, size, args.repeats)})
    print(format_table(rows, list(rows[0]), f"Network cost on {torch.get_num_threads()} CPU threads (batch 1)"))


if __name__ == "__main__":
    main()
