"""The forward (noising) process: a thin layer over diffusers' ``DDPMScheduler``."""

from __future__ import annotations

import json
import math
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
        rescale_betas_zero_snr: Rescale the schedule to zero terminal SNR (Lin et al. 2024,
            "Common Diffusion Noise Schedules and Sample Steps are Flawed"): ``sqrt(abar_t)``
            is shifted and scaled so that ``abar_{T-1} = 0`` (pure noise, as sampling starts)
            while ``abar_0`` keeps its value. Passed to every diffusers scheduler as
            ``rescale_betas_zero_snr`` (DPM-Solver++ and UniPC put ``2**-24`` in place of the
            last 0 to keep their log-SNR finite). Needs ``prediction_type="v_prediction"``:
            at SNR 0 the noise is the input itself, and an epsilon prediction says nothing
            about the image.
        noise_shift: Shift s of the schedule (Hoogeboom et al. 2023, "simple diffusion"):
            every timestep's SNR is divided by ``s**2``, i.e. ``abar'_t = abar_t / (abar_t +
            s**2 (1 - abar_t))``. ``s > 1`` is noisier (for larger images than the schedule
            was tuned for), ``s < 1`` cleaner (0.5 trains at 32 x 32 with a schedule tuned for
            64 x 64). 1 is the plain schedule. Applied before the zero-SNR rescaling.
    """

    num_train_timesteps: int = 1000
    beta_schedule: BetaSchedule = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: PredictionType = "epsilon"
    rescale_betas_zero_snr: bool = False
    noise_shift: float = 1.0

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
        if isinstance(self.noise_shift, bool) or not (
            isinstance(self.noise_shift, (int, float)) and math.isfinite(self.noise_shift) and self.noise_shift > 0
        ):
            raise ValueError(f"noise_shift must be a finite number > 0 (1: no shift), got {self.noise_shift!r}")
        if self.rescale_betas_zero_snr and self.prediction_type == "epsilon":
            raise ValueError(
                "rescale_betas_zero_snr=True makes the last timestep pure noise (SNR 0), where epsilon "
                "prediction cannot recover the image; use prediction_type='v_prediction' with it"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields; the zero-SNR and shift settings only when not default.

        Leaving them out at their defaults keeps the files of a plain schedule byte-identical to
        what earlier versions wrote, and readable by them; `from_dict` restores the defaults.
        """
        data = super().to_dict()
        for name, default in _OPTIONAL_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    def _scheduler(self, **options: Any) -> DDPMScheduler:
        """A ``DDPMScheduler`` of these settings and the extra ``options``.

        The newer options are passed only when set, so the default config (its
        ``_use_default_values`` included) is exactly that of earlier versions.
        """
        return DDPMScheduler(
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            prediction_type=self.prediction_type,
            clip_sample=True,
            **options,
        )

    def shifted_betas(self) -> list[float]:
        """The betas of the schedule shifted by `noise_shift` (before any zero-SNR rescaling).

        ``abar'_t = abar_t / (abar_t + s**2 (1 - abar_t))`` (SNR divided by ``s**2``), then
        ``beta_0 = 1 - abar'_0`` and ``beta_t = 1 - abar'_t / abar'_{t-1}``; computed in float64
        from the unshifted schedule's float32 betas.

        Returns:
            T betas in (0, 1), for diffusers' ``trained_betas``.
        """
        abar = torch.cumprod(1.0 - self._scheduler().betas.double(), dim=0)
        shifted = abar / (abar + self.noise_shift**2 * (1.0 - abar))
        previous = torch.cat([shifted.new_ones(1), shifted[:-1]])
        return (1.0 - shifted / previous).tolist()

    def scheduler_config(self) -> dict[str, Any]:
        """The matching ``DDPMScheduler`` config (also valid for DDIM, DPM-Solver++ and UniPC).

        A shifted schedule goes in as ``trained_betas``, and ``rescale_betas_zero_snr`` is passed
        through (diffusers rescales whatever betas it has, so the shift comes first). At the
        defaults neither key is given, and the config is that of earlier versions.
        """
        options: dict[str, Any] = {}
        if self.noise_shift != 1.0:
            options["trained_betas"] = self.shifted_betas()
        if self.rescale_betas_zero_snr:
            options["rescale_betas_zero_snr"] = True
        return self._scheduler(**options).config

    def save_scheduler_config(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``scheduler_config.json`` in diffusers' format into ``folder`` (atomically).

        ``diffusers.DDPMScheduler.from_pretrained(folder)`` reads it back.
        """
        config = dict(self.scheduler_config())
        config["_class_name"] = "DDPMScheduler"
        if self.noise_shift != 1.0:
            # diffusers needs only trained_betas; the shift is kept for from_scheduler_config.
            config["noise_shift"] = self.noise_shift
        return atomic_write_text(Path(folder) / SCHEDULER_CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_scheduler_config(cls, config: dict[str, Any]) -> NoiseConfig:
        """Read the noise settings back from a diffusers scheduler config (other keys ignored,
        ``trained_betas`` included: a shifted schedule is rebuilt from ``noise_shift``)."""
        return cls.from_dict({k: v for k, v in config.items() if k in cls.__dataclass_fields__})


_OPTIONAL_DEFAULTS: dict[str, Any] = {"rescale_betas_zero_snr": False, "noise_shift": 1.0}
"""`NoiseConfig` fields added after the first release, with the values that are left out of files."""


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
            (B,) float32 SNRs in [0, inf), on the device of ``t`` (the ratio is formed in
            float64, so no extra rounding is added to the float32 ``abar_t``); 0 at t = T - 1
            with ``rescale_betas_zero_snr``.
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
            (B,) float32 weights in [0, 1], on the device of ``t``; all ones without gamma. At
            zero SNR (the last step of a rescaled schedule) the v-prediction weight is 0.

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
