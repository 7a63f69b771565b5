"""Reproducible, resumable order of training batches across processes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochBatchSampler"]


class EpochBatchSampler(Sampler[list[int]]):
    """Yields this process's index batches for one epoch, from any position within it.

    The order of epoch ``e`` is a permutation drawn from ``seed + e``, split into global
    batches of ``batch_size * world_size`` (an incomplete last batch is dropped); process
    ``rank`` takes its slice of each. Because the order depends only on (seed, epoch), a
    resumed run sees exactly the batches an uninterrupted run would.

    Args:
        num_samples: Size of the data set.
        batch_size: Samples per process and batch.
        world_size: Number of processes.
        rank: This process's index.
        seed: Base seed of the shuffles.
    """

    def __init__(self, num_samples: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0) -> None:
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            raise ValueError(
                f"the data set has {num_samples} images, fewer than one global batch "
                f"({batch_size} per process x {world_size} processes); lower the batch size"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    def __len__(self) -> int:
        """Batches per full epoch."""
        return self.num_samples // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next iteration yield epoch ``epoch`` from batch ``start_batch`` on."""
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_batches(self, epoch: int) -> torch.Tensor:
        """This process's batches of epoch ``epoch``: (len(self), batch_size) int64 indices, on the CPU.

        A data set that gathers batches on a device takes the whole epoch there in one copy
        and slices it, instead of a copy of a Python list per batch.
        """
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch))
        batches = order[: len(self) * self.batch_size * self.world_size]
        return batches.view(len(self), self.world_size, self.batch_size)[:, self.rank]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches(self.epoch)
        for b in range(self.start_batch, len(self)):
            yield batches[b].tolist()
