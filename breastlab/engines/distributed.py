"""Multi-process training (DDP) for the bundles' ``configs/multi_gpu_train.json``, run under ``torchrun``.

NCCL with one GPU per process where CUDA is present, else gloo on CPU. Hyper-parameters keep their
meaning at any process count: ``batch_size`` is the global batch, split evenly over the processes,
and batch-norm statistics are synchronised over the whole global batch, so N processes take the same
optimisation steps as one process on the same data (up to floating-point summation order).
"""

from __future__ import annotations

import logging
import os
import time

import torch
import torch.distributed as dist
from monai.data import MetaTensor
from monai.engines.utils import IterationEvents
from torch.distributed.nn.functional import all_reduce
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel


def init_process_group() -> None:
    """Join the ``torchrun`` group (idempotent); processes other than rank 0 log warnings only."""
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_device())
    if dist.get_rank() > 0:
        logging.disable(logging.INFO)


def destroy_process_group() -> None:
    """Leave the group once every process is done and gloo's worker threads have released their finished work.

    Tearing the group down (``~ProcessGroupGloo``, also when DDP's reducer is freed) while a worker thread still
    released a collective's work deadlocked now and then: that release needs the GIL, which the tearing-down
    thread holds. The barrier waits for all collectives; the pause, with the GIL released, lets the workers
    finish releasing them."""
    if dist.is_initialized():
        dist.barrier()
        time.sleep(0.2)
        dist.destroy_process_group()


def local_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK``), or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def per_process(batch_size: int) -> int:
    """This process's share of the global ``batch_size``; it must divide evenly."""
    world = dist.get_world_size()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {world} processes")
    return batch_size // world


def distributed_network(network: torch.nn.Module, device: torch.device,
                        find_unused_parameters: bool = False) -> DistributedDataParallel:
    """``network`` with synchronised batch norm, on ``device``, wrapped for DDP; ``find_unused_parameters``
    for configs whose loss leaves part of the network out (e.g. a head trained in a later stage)."""
    if device.type == "cuda":
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    else:
        network = DistributedBatchNorm.convert(network)
    network = network.to(device)
    return DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None,
                                   broadcast_buffers=False, find_unused_parameters=find_unused_parameters)


def average_loss_gradients(trainer, loss: torch.nn.Module) -> None:
    """Average the gradients of the loss's own parameters (e.g. learned task weights) over the processes
    after every backward pass, as DDP does for the network's; a no-op for a loss without parameters."""
    parameters = [p for p in loss.parameters() if p.requires_grad]
    if parameters:
        trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, lambda engine: average_gradients(parameters))


def average_gradients(parameters) -> None:
    """Average the parameters' gradients over the processes (a no-op outside a process group): for gradients
    that DDP's forward hooks do not see."""
    if not dist.is_initialized():
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


class DistributedBatchNorm(_BatchNorm):
    """Batch norm whose training statistics cover the batches of every process (any backend, any device).

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; this is its counterpart for gloo on CPU. Sums and
    sums of squares are all-reduced with autograd, so gradients flow through the shared statistics.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        if isinstance(x, MetaTensor):  # its statistics are not a batch of images: no per-image metadata
            x = x.as_tensor()
        dtype = x.dtype  # statistics in at least float32, also under bfloat16 autocast
        x = x.to(torch.promote_types(dtype, torch.float32))
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        count = torch.full((1,), x.numel() // channels, dtype=x.dtype, device=x.device)
        totals = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * n / (n - 1).clamp_min(1))
        shape = (1, channels) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return (y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y).to(dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased_var, momentum)

    @classmethod
    def convert(cls, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` with every batch-norm layer replaced by this class (same parameters and buffers)."""
        if isinstance(module, _BatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
            converted.load_state_dict(module.state_dict())
            converted.train(module.training)
            return converted.to(next(module.buffers(), torch.empty(0)).device)
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module
