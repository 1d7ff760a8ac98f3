"""Device choice and the torchrun / DistributedDataParallel plumbing of the training loop.

One process per device. `torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK; without them training
runs as a single process, and the collective calls here are no-ops, so the loop reads the same
either way. Backend: nccl on CUDA, gloo on the CPU. Multi-node runs need a log_dir that every
node sees (shared filesystem): rank 0 writes the checkpoints and every rank resumes from them.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from engine.inference.loading import resolve_device
from utils.errors import UserError

# Other ranks wait at a barrier while rank 0 validates on full sequences (minutes on Set8).
COLLECTIVE_TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class DistContext:
    """Where this process runs and which share of the work it does."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def setup_distributed(device_choice: str) -> DistContext:
    """Read torchrun's environment, pick the device, and join the process group if WORLD_SIZE > 1."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_choice)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) "
                            "are visible; lower --nproc_per_node")
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT)
    return DistContext(device=device, rank=rank, world_size=world_size, local_rank=local_rank)


def teardown_distributed(ctx: DistContext) -> None:
    """Leave the process group (so a library caller can train again in the same process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_ranks_true(ctx: DistContext | None, flag: bool) -> bool:
    """True only if `flag` is true on every rank, so all ranks take the same branch (no deadlock);
    `flag` itself for a single process (`ctx` None or not distributed)."""
    if ctx is None or not ctx.distributed:
        return flag
    value = torch.tensor([1 if flag else 0], device=ctx.device, dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def broadcast_object(ctx: DistContext, obj: object) -> object:
    """Rank 0's `obj` on every rank (e.g. the stop reason decided after validation)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(ctx: DistContext | None, params: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of `params` over the ranks (parameters that DDP does not manage)."""
    if ctx is None or not ctx.distributed:
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(ctx.world_size)


def wrap_ddp(model: torch.nn.Module, ctx: DistContext,
             unmanaged: torch.nn.Module | None = None) -> torch.nn.Module:
    """`model` under DistributedDataParallel when distributed (else `model` itself).

    DDP registers the parameters that require gradients when it is built; those of `unmanaged`
    (the distillation student, trained by a loss outside DDP's forward) are frozen for that moment,
    so DDP leaves them alone and `average_gradients` averages them instead.
    """
    if not ctx.distributed:
        return model
    trainable = [] if unmanaged is None else [p for p in unmanaged.parameters() if p.requires_grad]
    for param in trainable:
        param.requires_grad_(False)
    wrapped = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None, broadcast_buffers=False)
    for param in trainable:
        param.requires_grad_(True)
    return wrapped
