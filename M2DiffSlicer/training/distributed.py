"""torch.distributed helpers for training under torchrun: one small context object handed to the training loop.

The loop never calls torch.distributed itself; it asks the context to wrap the model, shard the batch list, average
numbers across ranks and wait at barriers. A single process gets the same object with world_size 1, where every
method is a cheap no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job: `rank` of `world_size`, and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the rank that logs, validates into files and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
        """The module to call in training: DistributedDataParallel when distributed, `model` itself otherwise.

        :param find_unused_parameters: set it only when the loss leaves some parameters without a gradient
            (trainer.loss_leaves_parameters_unused); it costs a walk over the autograd graph at every step.
        """
        if not self.distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                         find_unused_parameters=find_unused_parameters)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of `items` (every world_size-th from `rank`), truncated so all ranks get as many.

        Equal counts matter: a rank with one extra batch would wait forever in DDP's gradient all-reduce.
        """
        per_rank = len(items) // self.world_size
        return list(items[self.rank :: self.world_size][:per_rank])

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """Average each number over all ranks (identity for one process)."""
        if not self.distributed or not values:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist())}

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of a list of numbers over all ranks (identity for one process)."""
        if not self.distributed:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op for one process)."""
        if self.distributed:
            dist.barrier()

    @property
    def _comm_device(self) -> torch.device:
        # NCCL only reduces CUDA tensors; gloo only CPU ones.
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def init_from_env(device: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """The context of this process: joins the torchrun job (env:// rendezvous) when WORLD_SIZE > 1.

    The backend is NCCL on CUDA and gloo on CPU. Without torchrun's variables this is a single-process context.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = _pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(
            backend="nccl" if chosen.type == "cuda" else "gloo",
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistContext(rank=rank, world_size=world_size, device=chosen)


def shutdown(context: DistContext, failed: bool = False) -> None:
    """Leave the process group if `context` joined one: after a final barrier on success, at once on failure.

    A failing rank must not wait at a barrier: the others are blocked in a collective it will never join, so
    the job would hang for the whole process-group timeout (30 min). Leaving lets this process exit non-zero,
    and torchrun then stops the other ranks.
    """
    if context.distributed and dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def joined(device: str = "auto", timeout_s: float = 1800.0) -> Iterator[DistContext]:
    """`with joined(device) as context:` runs the block in the torchrun job and leaves it (see shutdown)."""
    context = init_from_env(device, timeout_s)
    try:
        yield context
    except BaseException:
        shutdown(context, failed=True)
        raise
    shutdown(context)
