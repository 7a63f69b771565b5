"""Classifier-free guidance: joint or composable, with optional guidance rescale.

Pure tensor functions (no model, no scheduler), so each formula can be tested on its own:

- `guided_prediction`: classifier-free guidance, ``uncond + w * (cond - uncond)``.
- `composed_prediction`: composable guidance (Liu et al. 2022, "Compositional Visual
  Generation with Composable Diffusion Models"): one conditional prediction per object,
  ``uncond + w * sum_i (cond_i - uncond)``.
- `rescale_guidance`: the guidance rescale of Lin et al. 2023 ("Common Diffusion Noise
  Schedules and Sample Steps are Flawed", section 3.4).

`GuidanceBatch` lays out the rows of the one batched forward pass that feeds them.

All predictions are model outputs (noise for epsilon models, velocity for v-prediction
models), shaped (B, C, H, W) or more generally (B, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..constants import GUIDANCE_MODES
from ..labels import validate_label_tensor

__all__ = [
    "GUIDANCE_MODES",
    "GuidanceBatch",
    "GuidanceMode",
    "composed_prediction",
    "guided_prediction",
    "plan_guidance",
    "rescale_guidance",
    "validate_guidance",
]

GuidanceMode = Literal["joint", "composable"]


def validate_guidance(scale: float, rescale: float, mode: str) -> None:
    """Check guidance settings.

    Raises:
        ValueError: If ``scale`` is negative, NaN or infinite, ``rescale`` is outside [0, 1]
            (NaN included) or ``mode`` is unknown.
    """
    # NaN compares false with everything, so `scale < 0` alone lets it through (NaN images).
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"guidance_scale must be >= 0 and finite, got {scale}; 1 is no guidance, e.g. 2 guides")
    if not 0.0 <= rescale <= 1.0:
        raise ValueError(f"guidance_rescale must be in [0, 1], got {rescale}; 0 is off, 0.5 to 0.7 are typical")
    if mode not in GUIDANCE_MODES:
        raise ValueError(f"unknown guidance_mode {mode!r}; choose one of {', '.join(GUIDANCE_MODES)}")


def _per_image_std(x: torch.Tensor) -> torch.Tensor:
    """Standard deviation over every dimension but the first: (B, ...) -> (B, 1, ..., 1)."""
    return x.std(dim=tuple(range(1, x.ndim)), keepdim=True)


def rescale_guidance(guided: torch.Tensor, reference: torch.Tensor, rescale: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, section 3.4).

    Large guidance scales inflate the prediction's spread, which over-exposes images. The guided
    prediction is scaled so that each image's standard deviation equals the reference's (the
    conditional prediction), then mixed with the unscaled one:
    ``rescale * guided * std(reference) / std(guided) + (1 - rescale) * guided``.

    Args:
        guided: (B, ...) the guided prediction.
        reference: (B, ...) the conditional prediction whose spread is the target.
        rescale: The mixing factor phi in [0, 1]; 0 returns ``guided`` itself, 1 fully
            rescaled.

    Returns:
        (B, ...) the rescaled prediction.
    """
    if rescale == 0:
        return guided  # exactly plain guidance, not a rounding-level neighbour of it
    std_guided = _per_image_std(guided)
    # A constant prediction has no spread to match; leave it as it is rather than divide by 0.
    factor = torch.where(std_guided > 0, _per_image_std(reference) / std_guided, torch.ones_like(std_guided))
    return rescale * (guided * factor) + (1 - rescale) * guided


def guided_prediction(
    cond: torch.Tensor, uncond: torch.Tensor, scale: float, rescale: float = 0.0
) -> torch.Tensor:
    """Classifier-free guidance, ``uncond + scale * (cond - uncond)``, optionally rescaled.

    Args:
        cond: (B, ...) prediction with the labels.
        uncond: (B, ...) prediction with the all-zero (null) label.
        scale: Guidance scale w >= 0 (1: the conditional prediction).
        rescale: Guidance rescale phi in [0, 1] (0: off), towards ``cond``'s spread.

    Returns:
        (B, ...) the guided prediction.
    """
    guided = uncond + scale * (cond - uncond)
    return rescale_guidance(guided, cond, rescale)


def composed_prediction(
    cond: torch.Tensor, uncond: torch.Tensor, owner: torch.Tensor, scale: float, rescale: float = 0.0
) -> torch.Tensor:
    """Composable guidance, ``uncond + scale * sum_i (cond_i - uncond)`` per image.

    With one object per image this is `guided_prediction` exactly. With rescale, the reference
    spread is that of the composition at scale 1, ``uncond + sum_i (cond_i - uncond)`` (the
    conditional prediction itself for one object).

    Args:
        cond: (N, ...) one prediction per (image, object) pair, each with that object alone.
        uncond: (B, ...) prediction of each image with the null label.
        owner: (N,) int64, the image (0 .. B - 1) each row of ``cond`` belongs to.
        scale: Guidance scale w >= 0.
        rescale: Guidance rescale phi in [0, 1] (0: off).

    Returns:
        (B, ...) the combined prediction; an image without objects gets ``uncond``.
    """
    directions = torch.zeros_like(uncond).index_add_(0, owner, cond - uncond.index_select(0, owner))
    guided = uncond + scale * directions
    if rescale == 0:
        return guided
    return rescale_guidance(guided, uncond + directions, rescale)


@dataclass(frozen=True)
class GuidanceBatch:
    """The rows of the one batched forward pass a guided denoising step makes, and their combination.

    Build it with `plan_guidance`. Each denoising step expands the B current images to the M
    model rows (`expand`), runs the model once on (M, ...) with `labels`, and reduces the M
    outputs to B predictions (`combine`).

    Attributes:
        labels: (M, L) float32 label vectors of the model rows.
        source: (M,) int64 image of each row, or ``None`` when the rows are the images.
        num_images: B.
        num_conditional: Rows with labels (the first ones); the rest are unconditional.
        owner: Composable mode: (num_conditional,) image of each conditional row.
        scale: Guidance scale.
        rescale: Guidance rescale.
        mode: ``"joint"`` or ``"composable"``.
    """

    labels: torch.Tensor
    source: torch.Tensor | None
    num_images: int
    num_conditional: int
    owner: torch.Tensor | None
    scale: float
    rescale: float
    mode: str

    @property
    def rows(self) -> int:
        """M, the batch size of the model call."""
        return int(self.labels.shape[0])

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) images -> (M, ...) model rows."""
        return x if self.source is None else x.index_select(0, self.source)

    def combine(self, out: torch.Tensor) -> torch.Tensor:
        """(M, ...) model outputs -> (B, ...) guided predictions."""
        if self.source is None:
            return out
        cond, uncond = out[: self.num_conditional], out[self.num_conditional :]
        if self.owner is not None:
            return composed_prediction(cond, uncond, self.owner, self.scale, self.rescale)
        return guided_prediction(cond, uncond, self.scale, self.rescale)

    def to(self, device: torch.device | str) -> GuidanceBatch:
        """The same plan with its tensors on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return GuidanceBatch(
            move(self.labels), move(self.source), self.num_images, self.num_conditional,
            move(self.owner), self.scale, self.rescale, self.mode,
        )  # fmt: skip


def plan_guidance(labels: torch.Tensor, scale: float, mode: str = "joint", rescale: float = 0.0) -> GuidanceBatch:
    """Lay out the model rows for guided sampling of B images.

    - joint, scale 1: the B labelled rows alone (no guidance, one pass);
    - joint: B labelled rows, then B null-label rows;
    - composable: one row per (image, object) pair with that object's one-hot vector,
      ordered by image, then B null-label rows. Images with different object counts share the
      one flat batch; `GuidanceBatch.owner` maps rows back.

    Args:
        labels: (B, L) multi-hot label vectors: 0/1 entries, the ones are the objects; an
            all-zero row is an unconditional image.
        scale: Guidance scale w >= 0.
        mode: ``"joint"`` or ``"composable"``.
        rescale: Guidance rescale phi in [0, 1].

    Raises:
        ValueError: For invalid settings or labels that are not 0/1 (NaN included).
    """
    validate_guidance(scale, rescale, mode)
    # No object limit here: that belongs to the vocabulary, which the caller checks.
    validate_label_tensor(labels, num_labels=None, max_objects=None, allow_unconditional=True)
    batch = labels.shape[0]
    images = torch.arange(batch, device=labels.device)
    null = torch.zeros_like(labels)
    if mode == "composable":
        owner, objects = labels.nonzero(as_tuple=True)  # row-major: owners ascend
        single = torch.zeros(len(owner), labels.shape[1], dtype=labels.dtype, device=labels.device)
        single[torch.arange(len(owner), device=labels.device), objects] = labels[owner, objects]
        return GuidanceBatch(
            torch.cat([single, null]), torch.cat([owner, images]), batch, len(owner), owner, scale, rescale, mode
        )
    if scale == 1.0:
        # uncond + 1 * (cond - uncond) is cond: the unconditional pass would be wasted work.
        return GuidanceBatch(labels, None, batch, batch, None, scale, rescale, mode)
    return GuidanceBatch(torch.cat([labels, null]), torch.cat([images, images]), batch, batch, None, scale, rescale, mode)
