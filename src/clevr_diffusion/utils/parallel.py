"""Map a function over items in worker processes, for CPU-bound Python work such as drawing scenes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import torch

__all__ = ["available_cores", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        return os.cpu_count() or 1


def _one_thread() -> None:
    # Each worker is one process on one core: torch's own thread pool would oversubscribe them.
    torch.set_num_threads(1)


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 1, chunksize: int = 64) -> list[R]:
    """``[fn(x) for x in items]``, in ``workers`` processes when ``workers > 1``.

    Workers are spawned, not forked, so a parent that already started CUDA or OpenMP threads
    is safe; ``fn`` must therefore be picklable (a module-level function or a
    `functools.partial` of one). Results keep the order of ``items``.

    Args:
        fn: The function.
        items: Its arguments.
        workers: Processes to use; 1 runs in this process.
        chunksize: Items sent to a worker at a time.

    Raises:
        ValueError: If ``workers < 1``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    items = list(items)
    if workers == 1 or len(items) <= 1:
        return [fn(x) for x in items]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(items)), mp_context=context, initializer=_one_thread) as pool:
        return list(pool.map(fn, items, chunksize=max(1, chunksize)))
