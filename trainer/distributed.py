"""The DDP collectives of the training loop; each is a no-op (or the identity) in a single process.

Under ``torchrun`` every process trains one replica: ``setup`` joins the process group (gloo on
CPU, nccl on CUDA) and the helpers keep the replicas in step: stop at the same step
(``any_rank``), add up per-rank counts (``sum_over_ranks``), make BatchNorm statistics equal
(``average_buffers``). Each rank's share of an epoch is fixed by ``(seed, epoch, rank)`` alone
(``epoch_order``, ``rank_seed``), which is what lets a resumed run see exactly the same batches.

    >>> import torch
    >>> from trainer.distributed import any_rank, setup, sum_over_ranks
    >>> rank, world_size, device = setup("cpu")  # WORLD_SIZE unset: one process
    >>> rank, world_size, device
    (0, 1, device(type='cpu'))
    >>> sum_over_ranks([3.0, 4.0], world_size, device), any_rank(True, world_size, device)
    ([3.0, 4.0], True)
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
from torch import nn

from trainer.config import DEVICES
from trainer.errors import TrainerError


def setup(requested: str) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``: one process, or one DDP replica per torchrun process."""
    if requested not in DEVICES:
        raise TrainerError(f"unknown --device {requested!r}; valid: {', '.join(DEVICES)}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainerError("--device cuda: no CUDA device is available here (use --device cpu)")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, torch.device(requested)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if requested == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if requested == "cuda" else "gloo")
    device = torch.device("cuda", local_rank) if requested == "cuda" else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def shutdown(world_size: int) -> None:
    """Wait for every rank, then leave the process group."""
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """DDP over the parameters that train in this phase (rebuild it when that set changes)."""
    if world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def any_rank(flag: bool, world_size: int, device: torch.device) -> bool:
    """True when the flag is set on any rank, so that all ranks stop at the same step."""
    if world_size == 1:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_over_ranks(values: list[float], world_size: int, device: torch.device) -> list[float]:
    """Element-wise sums over all ranks (in float64, so that counts stay exact)."""
    if world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def average_buffers(model: nn.Module, world_size: int) -> None:
    """Make the float buffers (BatchNorm running statistics) equal on all ranks: their mean."""
    if world_size == 1:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world_size)


def broadcast_from_rank0(tensors: list[torch.Tensor], world_size: int) -> None:
    """Overwrite ``tensors`` on every rank with rank 0's values (in place)."""
    if world_size == 1:
        return
    for tensor in tensors:
        dist.broadcast(tensor.data, src=0)


def default_threads() -> int:
    """Torch CPU threads per process by default: the CPUs this process may use, shared by the
    processes torchrun started on this machine (``LOCAL_WORLD_SIZE``), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """One 63-bit seed per (seed, epoch, rank), stable across platforms and Python runs."""
    digest = hashlib.sha256(f"edgebnn/{seed}/{epoch}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def epoch_order(num_images: int, seed: int, epoch: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's shuffled image indices for one epoch (DistributedSampler semantics, any world size)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(num_images), num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)
