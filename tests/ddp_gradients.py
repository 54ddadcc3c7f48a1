"""Worker for test_distributed: one loss gradient of the student network in float64, saved by rank 0.

Alone it computes the gradient on the whole batch; under ``torchrun`` each process takes its share of
the batch through ``breastlab.engines.distributed.distributed_network`` (DDP + synchronised batch norm)."""

import os
import sys

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import AttentionUnet

from breastlab.engines import distributed


def main(out: str) -> None:
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    images, masks = torch.rand(8, 1, 64, 64), (torch.rand(8, 1, 64, 64) > 0.7).double()
    network = AttentionUnet(2, 1, 1, [8, 16, 32, 64], [2, 2, 2])
    if "RANK" in os.environ:
        distributed.init_process_group()
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        network = distributed.distributed_network(network, torch.device("cpu"))
        share = slice(rank * 8 // world, (rank + 1) * 8 // world)
        images, masks = images[share], masks[share]
    DiceCELoss(sigmoid=True)(network(images), masks).backward()
    module = getattr(network, "module", network)
    if int(os.environ.get("RANK", 0)) == 0:
        torch.save({name: p.grad for name, p in module.named_parameters()}, out)
    distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
