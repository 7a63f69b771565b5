"""The reverse-process solvers: diffusers schedulers built from one training config."""

from __future__ import annotations

from typing import Any, Literal

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

__all__ = ["DEFAULT_STEPS", "SAMPLING_METHODS", "SamplingMethod", "build_scheduler"]

SamplingMethod = Literal["ddpm", "ddim", "dpm++"]
SAMPLING_METHODS: tuple[str, ...] = ("ddpm", "ddim", "dpm++")
"""The sampling methods `build_scheduler` and `DDPMSampler` accept."""

DEFAULT_STEPS: dict[str, int] = {"ddpm": 1000, "ddim": 50, "dpm++": 20}
"""Steps each method takes when none are given (never more than the model's T): DDPM's full
chain, DDIM 50, DPM-Solver++ 20."""


def build_scheduler(method: str, scheduler_config: dict[str, Any]) -> SchedulerMixin:
    """Build the diffusers scheduler for a sampling method from the training schedule.

    Args:
        method: ``"ddpm"`` (ancestral, the DDPM paper's), ``"ddim"`` (deterministic, eta 0,
            ``timestep_spacing="trailing"`` so the first step starts from t = T - 1, pure noise) or ``"dpm++"``
            (second-order multistep DPM-Solver++).
        scheduler_config: A ``DDPMScheduler`` config (``NoiseConfig.scheduler_config()``).

    Raises:
        ValueError: For an unknown method.
    """
    if method == "ddpm":
        return DDPMScheduler.from_config(scheduler_config)
    if method == "ddim":
        return DDIMScheduler.from_config(scheduler_config, timestep_spacing="trailing")
    if method == "dpm++":
        return DPMSolverMultistepScheduler.from_config(
            scheduler_config,
            algorithm_type="dpmsolver++",
            solver_order=2,
            timestep_spacing="trailing",
            # The DDPM-style clipping of x0 has its DPM-Solver counterpart in thresholding.
            thresholding=bool(scheduler_config.get("clip_sample", False)),
            sample_max_value=float(scheduler_config.get("clip_sample_range", 1.0)),
        )
    raise ValueError(f"unknown sampling method {method!r}; choose one of {', '.join(SAMPLING_METHODS)}")
