"""The reverse-process solvers: diffusers schedulers built from one training config."""

from __future__ import annotations

from typing import Any, Literal

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..constants import SAMPLING_METHODS, SAMPLING_PRESETS

__all__ = [
    "DEFAULT_STEPS",
    "SAMPLING_METHODS",
    "SAMPLING_PRESETS",
    "SamplingMethod",
    "build_scheduler",
    "parse_preset",
]

SamplingMethod = Literal["ddpm", "ddim", "dpm++", "unipc"]

DEFAULT_STEPS: dict[str, int] = {"ddpm": 1000, "ddim": 50, "dpm++": 20, "unipc": 10}
"""Steps each method takes when none are given (never more than the model's T): DDPM's full
chain, DDIM 50, DPM-Solver++ 20, UniPC 10."""


def parse_preset(name: str) -> tuple[str, int]:
    """The (method, steps) of a sampling preset such as ``"dpm++-20"``.

    Args:
        name: A key of `SAMPLING_PRESETS` (case and surrounding spaces are ignored).

    Returns:
        The method (one of `SAMPLING_METHODS`) and its number of denoising steps.

    Raises:
        ValueError: For an unknown name; the message lists the valid presets.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in SAMPLING_PRESETS:
        raise ValueError(f"unknown sampling preset {name!r}; choose one of {', '.join(SAMPLING_PRESETS)}")
    return SAMPLING_PRESETS[key]


def _thresholding(scheduler_config: dict[str, Any]) -> dict[str, Any]:
    """Settings that give a multistep solver the counterpart of DDPM's clipping of x0.

    The solvers predict x0 internally; dynamic thresholding clamps it to
    ``[-clip_sample_range, clip_sample_range]`` (or tighter), as ``clip_sample`` does for DDPM.
    """
    return {
        "thresholding": bool(scheduler_config.get("clip_sample", False)),
        "sample_max_value": float(scheduler_config.get("clip_sample_range", 1.0)),
    }


def build_scheduler(method: str, scheduler_config: dict[str, Any]) -> SchedulerMixin:
    """Build the diffusers scheduler for a sampling method from the training schedule.

    Args:
        method: ``"ddpm"`` (ancestral, the DDPM paper's; trailing spacing under zero terminal
            SNR, so that a shortened chain too starts from t = T - 1), ``"ddim"`` (deterministic, eta 0,
            ``timestep_spacing="trailing"`` so the first step starts from t = T - 1, pure
            noise), ``"dpm++"`` (second-order multistep DPM-Solver++) or ``"unipc"`` (UniPC,
            second-order predictor with the UniC corrector, in x0 form). The multistep solvers
            use trailing spacing and dynamic thresholding in place of DDPM's clipping.
        scheduler_config: A ``DDPMScheduler`` config (``NoiseConfig.scheduler_config()``).

    Raises:
        ValueError: For an unknown method.
    """
    if method == "ddpm":
        if scheduler_config.get("rescale_betas_zero_snr"):
            # Zero terminal SNR is only of use if sampling starts at t = T - 1, pure noise; the
            # default "leading" spacing of a shortened chain starts below it.
            return DDPMScheduler.from_config(scheduler_config, timestep_spacing="trailing")
        return DDPMScheduler.from_config(scheduler_config)
    if method == "ddim":
        return DDIMScheduler.from_config(scheduler_config, timestep_spacing="trailing")
    if method == "dpm++":
        return DPMSolverMultistepScheduler.from_config(
            scheduler_config,
            algorithm_type="dpmsolver++",
            solver_order=2,
            timestep_spacing="trailing",
            **_thresholding(scheduler_config),
        )
    if method == "unipc":
        # Order 2 is UniPC's recommendation for guided sampling; predict_x0 (the default) is
        # what makes thresholding apply.
        return UniPCMultistepScheduler.from_config(
            scheduler_config,
            solver_order=2,
            predict_x0=True,
            timestep_spacing="trailing",
            **_thresholding(scheduler_config),
        )
    raise ValueError(f"unknown sampling method {method!r}; choose one of {', '.join(SAMPLING_METHODS)}")
