"""The learning-rate schedule every trainer of the library follows: linear warm-up, then constant or cosine."""

from __future__ import annotations

import math

__all__ = ["LR_SCHEDULES", "learning_rate_at"]

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
"""``"constant"`` after the warm-up, or ``"cosine"`` decay to 0 at the last step."""


def learning_rate_at(step: int, peak: float, warmup_steps: int, max_steps: int, schedule: str = "constant") -> float:
    """The learning rate of optimiser step ``step`` (0-based).

    A linear warm-up from ``peak / warmup_steps`` to ``peak`` over the first ``warmup_steps``
    steps, then ``peak`` (``"constant"``) or a half cosine from ``peak`` down to 0 at
    ``max_steps`` (``"cosine"``).

    Args:
        step: The optimiser step, from 0.
        peak: The learning rate after the warm-up.
        warmup_steps: Steps of the warm-up (0: none).
        max_steps: The run's last step, where the cosine reaches 0.
        schedule: One of `LR_SCHEDULES`.

    Raises:
        ValueError: For another schedule.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return peak
