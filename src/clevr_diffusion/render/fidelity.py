"""How closely rendered images match reference renders: the measures of ``benchmarks/render_fidelity.py``.

All measures take uint8 images ``(B, H, W, 3)`` (0-255 levels) as numpy arrays or tensors and
the object-id map of the rendered images (``render(...).object_ids``: object index >= 0,
-1 backdrop, -2 sky) to split pixels into objects, object interiors and floor:

* MAE: mean absolute difference over pixels and channels, in levels;
* SSIM: the structural similarity of Wang et al. (2004) with an 11 x 11 Gaussian window of
  sigma 1.5, constants ``(0.01 * 255)**2`` and ``(0.03 * 255)**2``, over the window positions
  that fit inside the image, per channel and then averaged;
* sharpness: mean absolute 4-neighbour Laplacian of the grey image (channel mean) over the
  object pixels and their outline (the object mask grown by one pixel), ours over the
  reference's: 1 is as sharp, below 1 softer;
* floor off share: the share of backdrop pixels whose largest channel difference exceeds a
  threshold (4 levels): where shadows and shading of the floor go wrong.

Interiors are the object pixels whose four neighbours belong to the same object, so an
outline's anti-aliasing does not count there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["FidelityScores", "difference_image", "fidelity_scores", "laplacian_energy", "ssim"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
FLOOR_THRESHOLD = 4
"""Levels beyond which a floor pixel counts as off."""
OBJECT_THRESHOLD = 8
"""Levels beyond which an object pixel counts as off."""


@dataclass(frozen=True)
class FidelityScores:
    """One image's (or the mean over images') agreement with its reference.

    Attributes:
        mae: Mean absolute error over all pixels and channels, levels (0-255).
        ssim: Structural similarity in [-1, 1] (1: identical).
        sharpness: Laplacian energy on objects, ours / reference (1: as sharp).
        object_mae: MAE over object pixels, levels.
        interior_mae: MAE over object interiors, levels.
        object_off: Share of object pixels with a channel more than 8 levels off, in [0, 1].
        floor_off: Share of backdrop pixels with a channel more than 4 levels off, in [0, 1].
    """

    mae: float
    ssim: float
    sharpness: float
    object_mae: float
    interior_mae: float
    object_off: float
    floor_off: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _as_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    # A copy: arrays read from image files are read-only, which torch warns about.
    x = images if isinstance(images, torch.Tensor) else torch.tensor(np.asarray(images))
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3), got shape {tuple(x.shape)}")
    return x.to(torch.float64)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(ours: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> np.ndarray:
    """SSIM per image, (B,) float64: 11 x 11 Gaussian window (sigma 1.5), per channel, averaged.

    Args:
        ours: (B, H, W, 3) uint8-range images (0-255), H and W at least 11.
        reference: The same shape.
    """
    a, b = _as_float(ours), _as_float(reference)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[1], a.shape[2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {tuple(a.shape[1:3])}")
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA)
    kernel = (g[:, None] * g[None, :])[None, None].expand(3, 1, -1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, kernel, groups=3)

    a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3)).numpy()


def _laplacian(grey: torch.Tensor) -> torch.Tensor:
    """|4-neighbour Laplacian| (B, H, W) with edge padding (replicated borders add nothing)."""
    p = torch.nn.functional.pad(grey[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    lap = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * grey
    return lap.abs()


def _grow(mask: torch.Tensor) -> torch.Tensor:
    """The mask grown by one pixel (4-neighbourhood)."""
    m = torch.nn.functional.pad(mask[:, None].to(torch.float64), (1, 1, 1, 1))[:, 0]
    grown = m[:, :-2, 1:-1] + m[:, 2:, 1:-1] + m[:, 1:-1, :-2] + m[:, 1:-1, 2:] + m[:, 1:-1, 1:-1]
    return grown > 0


def _interiors(ids: torch.Tensor) -> torch.Tensor:
    """Object pixels whose four neighbours show the same object."""
    p = torch.nn.functional.pad(ids[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    same = (ids >= 0) & (p[:, :-2, 1:-1] == ids) & (p[:, 2:, 1:-1] == ids)
    return same & (p[:, 1:-1, :-2] == ids) & (p[:, 1:-1, 2:] == ids)


def laplacian_energy(images: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mean |Laplacian| of the grey image over ``mask`` per image, (B,) float64 (levels)."""
    grey = _as_float(images).mean(dim=-1)
    m = (mask if isinstance(mask, torch.Tensor) else torch.tensor(np.asarray(mask))).to(torch.bool)
    lap = _laplacian(grey)
    return ((lap * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp(min=1)).numpy()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    return ((values * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)).numpy()


def fidelity_scores(
    ours: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor, object_ids: np.ndarray | torch.Tensor
) -> list[FidelityScores]:
    """All measures of the module docstring, one `FidelityScores` per image.

    Args:
        ours: (B, H, W, 3) rendered images, 0-255 levels.
        reference: (B, H, W, 3) reference images, 0-255 levels.
        object_ids: (B, H, W) ids of ``ours`` at pixel centres (>= 0 objects, -1 backdrop).

    Raises:
        ValueError: Shapes that do not match.
    """
    a, b = _as_float(ours), _as_float(reference)
    ids = (object_ids if isinstance(object_ids, torch.Tensor) else torch.tensor(np.asarray(object_ids))).long()
    if a.shape != b.shape or ids.shape != a.shape[:3]:
        raise ValueError(
            f"ours {tuple(a.shape)}, reference {tuple(b.shape)} and object_ids {tuple(ids.shape)} must agree"
        )
    diff = (a - b).abs()
    mean_diff, max_diff = diff.mean(dim=-1), diff.amax(dim=-1)
    objects, floor = ids >= 0, ids == -1
    interior = _interiors(ids)
    outline = _grow(objects)
    sharp = laplacian_energy(a, outline) / np.maximum(laplacian_energy(b, outline), 1e-9)
    columns = {
        "mae": diff.mean(dim=(1, 2, 3)).numpy(),
        "ssim": ssim(a, b),
        "sharpness": sharp,
        "object_mae": _masked_mean(mean_diff, objects),
        "interior_mae": _masked_mean(mean_diff, interior),
        "object_off": _masked_mean((max_diff > OBJECT_THRESHOLD).to(torch.float64), objects),
        "floor_off": _masked_mean((max_diff > FLOOR_THRESHOLD).to(torch.float64), floor),
    }
    return [FidelityScores(**{k: float(v[i]) for k, v in columns.items()}) for i in range(a.shape[0])]


def difference_image(
    ours: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor, gain: float = 8.0
) -> np.ndarray:
    """(B, H, W, 3) uint8 picture of ``ours - reference``: mid-grey 128 where equal, brighter
    where ours is brighter, darker where darker, the difference times ``gain``."""
    d = (_as_float(ours) - _as_float(reference)) * gain + 128.0
    return d.clamp(0, 255).round().to(torch.uint8).numpy()
