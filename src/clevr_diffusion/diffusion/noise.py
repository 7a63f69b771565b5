"""The forward (noising) process: a thin layer over diffusers' ``DDPMScheduler``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import DDPMScheduler

from ..model_folder.layout import SCHEDULER_CONFIG_NAME
from ..utils.config import JsonConfig
from ..utils.io import atomic_write_text

__all__ = ["SCHEDULER_CONFIG_NAME", "BetaSchedule", "NoiseConfig", "NoiseProcess", "PredictionType"]

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
PredictionType = Literal["epsilon", "v_prediction"]


@dataclass
class NoiseConfig(JsonConfig):
    """Settings of the noise process (a subset of ``DDPMScheduler``'s config).

    Attributes:
        num_train_timesteps: Number of diffusion steps T.
        beta_schedule: ``"linear"`` (the DDPM paper's and the report's), ``"scaled_linear"``
            or ``"squaredcos_cap_v2"`` (the cosine schedule of improved DDPM).
        beta_start: First beta of the linear schedules.
        beta_end: Last beta of the linear schedules.
        prediction_type: What the network predicts: the noise ``"epsilon"`` or the velocity
            ``"v_prediction"``.
    """

    num_train_timesteps: int = 1000
    beta_schedule: BetaSchedule = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: PredictionType = "epsilon"

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}")
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(
                f"unknown beta_schedule {self.beta_schedule!r}; use 'linear', 'scaled_linear' "
                "or 'squaredcos_cap_v2'"
            )
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"unknown prediction_type {self.prediction_type!r}; use 'epsilon' or 'v_prediction'"
            )

    def scheduler_config(self) -> dict[str, Any]:
        """The matching ``DDPMScheduler`` config (also valid for DDIM and DPM-Solver)."""
        return DDPMScheduler(
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            prediction_type=self.prediction_type,
            clip_sample=True,
        ).config


    def save_scheduler_config(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``scheduler_config.json`` in diffusers' format into ``folder`` (atomically).

        ``diffusers.DDPMScheduler.from_pretrained(folder)`` reads it back.
        """
        config = dict(self.scheduler_config())
        config["_class_name"] = "DDPMScheduler"
        return atomic_write_text(Path(folder) / SCHEDULER_CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_scheduler_config(cls, config: dict[str, Any]) -> NoiseConfig:
        """Read the noise settings back from a diffusers scheduler config (other keys ignored)."""
        return cls.from_dict({k: v for k, v in config.items() if k in cls.__dataclass_fields__})


class NoiseProcess:
    """Draws training timesteps, noises clean images and gives the regression target.

    All noising goes through ``DDPMScheduler.add_noise``, so training and diffusers' samplers
    agree on the schedule to the last bit.

    Args:
        config: The schedule; keyword arguments override its fields.
        **kwargs: Fields of `NoiseConfig`.
    """

    def __init__(self, config: NoiseConfig | None = None, **kwargs: Any) -> None:
        config = config or NoiseConfig()
        self.config = config.replace(**kwargs) if kwargs else config
        self.scheduler = DDPMScheduler.from_config(self.config.scheduler_config())

    @property
    def num_train_timesteps(self) -> int:
        """Number of diffusion steps T."""
        return self.config.num_train_timesteps

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """(T,) float32 cumulative products alpha-bar_t of (1 - beta)."""
        return self.scheduler.alphas_cumprod

    def sample_timesteps(
        self, batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw (batch_size,) int64 timesteps uniformly from [0, T)."""
        t = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator, device="cpu")
        return t.to(device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Return ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        Args:
            x0: (B, C, H, W) clean images in [-1, 1].
            noise: (B, C, H, W) standard normal noise.
            t: (B,) int64 timesteps in [0, T).

        Returns:
            (B, C, H, W) noisy images, dtype of ``x0``.
        """
        return self.scheduler.add_noise(x0, noise, t.to(x0.device))

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target for the configured prediction type: the noise, or
        ``v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0``; (B, C, H, W)."""
        if self.config.prediction_type == "epsilon":
            return noise
        return self.scheduler.get_velocity(x0, noise, t.to(x0.device))

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``abar_t / (1 - abar_t)`` of timesteps ``t``.

        Args:
            t: (B,) int64 timesteps in [0, T).

        Returns:
            (B,) float32 SNRs in (0, inf), on the device of ``t`` (the ratio is formed in
            float64, so no extra rounding is added to the float32 ``abar_t``).
        """
        abar = self.alphas_cumprod.to(device=t.device, dtype=torch.float64)[t]
        return (abar / (1.0 - abar)).float()

    def loss_weights(self, t: torch.Tensor, snr_gamma: float | None = None) -> torch.Tensor:
        """Per-sample loss weights of min-SNR weighting (Hang et al. 2023).

        Min-SNR-gamma weights the MSE of sample i by ``min(SNR_i, gamma) / SNR_i`` for epsilon
        prediction and ``min(SNR_i, gamma) / (SNR_i + 1)`` for v-prediction: both turn the
        per-timestep loss into the x0-space loss with its weight clipped at gamma, so the
        easy low-noise timesteps stop dominating the gradient.

        Args:
            t: (B,) int64 timesteps in [0, T).
            snr_gamma: The clip gamma (> 0; the paper uses 5). ``None``: no weighting.

        Returns:
            (B,) float32 weights in (0, 1], on the device of ``t``; all ones without gamma.

        Raises:
            ValueError: If ``snr_gamma`` is not positive.
        """
        if snr_gamma is None:
            return torch.ones(t.shape, dtype=torch.float32, device=t.device)
        if not snr_gamma > 0:
            raise ValueError(f"snr_gamma must be > 0, got {snr_gamma}")
        snr = self.snr(t)
        if self.config.prediction_type == "epsilon":
            # min(SNR, gamma) / SNR written as min(1, gamma / SNR): no 0/0 if an SNR underflows.
            return torch.clamp(snr_gamma / snr, max=1.0)
        return torch.clamp(snr, max=snr_gamma) / (snr + 1.0)

    def training_loss(
        self,
        prediction: torch.Tensor,
        x0: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
        snr_gamma: float | None = None,
    ) -> torch.Tensor:
        """Mean squared error between ``prediction`` and `target`, computed in float32.

        Args:
            prediction: (B, C, H, W) network output, any float dtype (bf16 under autocast).
            x0: (B, C, H, W) clean images in [-1, 1].
            noise: (B, C, H, W) the noise that made ``x_t``.
            t: (B,) int64 timesteps in [0, T).
            snr_gamma: Min-SNR-gamma weighting (see `loss_weights`): the MSE of each sample
                (mean over its pixels) times its weight, averaged over the batch. ``None``:
                the plain MSE over all elements.

        Returns:
            A float32 scalar tensor.
        """
        target = self.target(x0, noise, t).float()
        if snr_gamma is None:
            return torch.nn.functional.mse_loss(prediction.float(), target)
        per_sample = (prediction.float() - target).square().flatten(1).mean(dim=1)
        return (per_sample * self.loss_weights(t.to(per_sample.device), snr_gamma)).mean()
