"""Conversions between image tensors, PIL images and PNG files, and image grids."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .io import atomic_path

__all__ = ["as_saved_png", "make_grid", "save_grid", "save_images", "save_png", "to_pil", "to_uint8"]


def _levels(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as the 8-bit levels a PNG of them holds, 0 to 255 (float; values clamped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Map (B, 3, H, W) or (3, H, W) images in [-1, 1] to uint8 in [0, 255] on the CPU (values clamped)."""
    return _levels(images).to(torch.uint8).cpu()


def as_saved_png(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] exactly as an 8-bit PNG of them reads back: float32 in [-1, 1], on their device.

    Scoring these instead of the float images gives the numbers that re-scoring the saved
    PNGs gives (`evaluate` does so). For images in [0, 1], pass ``images * 2 - 1``.
    """
    return _levels(images) / 127.5 - 1


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Turn (B, 3, H, W) images in [-1, 1] into a list of B RGB PIL images."""
    if images.ndim == 3:
        images = images[None]
    array = to_uint8(images).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(np.ascontiguousarray(a), mode="RGB") for a in array]


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile (B, 3, H, W) images into one (3, H', W') image, ``nrow`` images a row.

    Args:
        images: (B, 3, H, W) in [-1, 1].
        nrow: Images per row.
        padding: Border width in pixels around every tile.
        pad_value: Border value in [-1, 1] (1 is white).

    Returns:
        (3, rows * (H + padding) + padding, nrow * (W + padding) + padding) in [-1, 1].
    """
    count, channels, height, width = images.shape
    ncol = min(nrow, count)
    rows = -(-count // ncol)
    grid = images.new_full(
        (channels, rows * (height + padding) + padding, ncol * (width + padding) + padding), pad_value
    )
    for i in range(count):
        r, c = divmod(i, ncol)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[:, top : top + height, left : left + width] = images[i]
    return grid


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save a PIL image as PNG atomically and return the path."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def save_grid(
    images: torch.Tensor, path: str | os.PathLike[str], nrow: int = 8, padding: int = 2, upscale: int = 1
) -> Path:
    """Save (B, 3, H, W) images in [-1, 1] as one PNG grid, ``nrow`` a row.

    Args:
        images: (B, 3, H, W) in [-1, 1].
        path: Destination PNG.
        nrow: Images per row.
        padding: Border width in pixels.
        upscale: Integer nearest-neighbour enlargement of the tiles, for viewing small images.
    """
    if upscale > 1:
        images = torch.nn.functional.interpolate(images.float(), scale_factor=upscale, mode="nearest")
    return save_png(to_pil(make_grid(images, nrow=nrow, padding=padding))[0], path)


def save_images(images: torch.Tensor, folder: str | os.PathLike[str], names: Sequence[str] | None = None) -> list[Path]:
    """Save each of (B, 3, H, W) images in [-1, 1] as its own PNG (``0.png``, ``1.png``, ...).

    Args:
        images: (B, 3, H, W) in [-1, 1].
        folder: Destination folder (created if missing).
        names: File names, one per image (default: the index).
    """
    folder = Path(folder)
    names = list(names) if names is not None else [f"{i}.png" for i in range(len(images))]
    if len(names) != len(images):
        raise ValueError(f"got {len(names)} names for {len(images)} images")
    return [save_png(img, folder / name) for img, name in zip(to_pil(images), names, strict=True)]
