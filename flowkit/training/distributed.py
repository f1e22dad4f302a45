"""Training on several processes started by torchrun: ranks, the collectives training needs, and
each rank's share of an epoch.

`torchrun --nproc-per-node N -m flowkit train ...` sets WORLD_SIZE, RANK and LOCAL_RANK; without
them (or with WORLD_SIZE 1) everything here is the identity, so one code path serves both. The
batch size in the settings is the global batch: every rank takes batch / N samples of it, so a run
learns the same on any number of processes (up to batch-norm statistics, which stay per rank).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from flowkit.devices import wants_cuda
from flowkit.errors import FlowkitError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the processes of one training run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes files and prints: rank 0."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def current_ranks() -> Ranks:
    """This process's ranks: from the process group when there is one, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Ranks()


@contextmanager
def process_group(device: str = "auto", timeout_s: float = 1800) -> Iterator[Ranks]:
    """Join the run's process group when torchrun started this process (NCCL for CUDA, gloo for
    CPU); yields this process's ranks and leaves the group at the end."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current_ranks()
        return
    if not dist.is_available():
        raise FlowkitError("this PyTorch build has no torch.distributed: train on one process")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = wants_cuda(device)
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    try:
        yield current_ranks()
    finally:
        dist.destroy_process_group()


def on_main(work: Callable[[], T]) -> T:
    """Run `work` on rank 0 only and give every rank its result; a FlowkitError it raises is
    raised on every rank, so that all stop with the same one-line message."""
    ranks = current_ranks()
    if not ranks.distributed:
        return work()
    box: list[Any] = [None, None]
    if ranks.main:
        try:
            box[0] = work()
        except FlowkitError as exc:
            box[1] = str(exc)
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise FlowkitError(box[1])
    return box[0]


def sum_over_ranks(*values: float) -> list[float]:
    """Each value summed over all ranks (float64, so counts stay exact)."""
    if not current_ranks().distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_from_ranks(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    ranks = current_ranks()
    if not ranks.distributed:
        return [value]
    out: list[Any] = [None] * ranks.world
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    if current_ranks().distributed:
        dist.barrier()


def local_batch_size(global_batch: int, ranks: Ranks) -> int:
    """Each rank's share of the global batch, which must divide evenly among the ranks."""
    if global_batch % ranks.world:
        raise FlowkitError(f"batch_size {global_batch} is the global batch; it must divide evenly among the "
                           f"{ranks.world} processes")
    return global_batch // ranks.world


def epoch_order(size: int, seed: int, epoch: int) -> list[int]:
    """The order of a training epoch: one permutation of the dataset, the same on every rank."""
    generator = torch.Generator().manual_seed(seed * 100003 + epoch)
    return torch.randperm(size, generator=generator).tolist()


def rank_share(items: list[T], ranks: Ranks) -> list[T]:
    """Positions rank, rank + N, rank + 2N... of `items`. Batched in order, the k-th batches of
    all ranks together are the k-th global batch of one process."""
    return items[ranks.rank :: ranks.world]


class RankSampler(Sampler[int]):
    """This rank's share of the epoch's order. The order is padded with its own first items to a
    multiple of the number of ranks (as DistributedSampler does), so that every rank takes the
    same number of batches; one process gets exactly `epoch_order`."""

    def __init__(self, size: int, seed: int, epoch: int, ranks: Ranks) -> None:
        self.size, self.seed, self.epoch, self.ranks = size, seed, epoch, ranks

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(self.size, self.seed, self.epoch)
        padding = -len(order) % self.ranks.world
        order += [order[i % len(order)] for i in range(padding)]
        return iter(rank_share(order, self.ranks))

    def __len__(self) -> int:
        return -(-self.size // self.ranks.world)
