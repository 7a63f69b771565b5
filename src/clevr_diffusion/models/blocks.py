"""Convolutional building blocks of the UNet: residual block, down- and upsampling."""

from __future__ import annotations

import torch
from torch import nn

from .normalization import AdaptiveGroupNorm

__all__ = ["Downsample", "ResBlock", "Upsample"]


class ResBlock(nn.Module):
    """Residual block conditioned on the time and label embeddings.

    ``AdaGN -> SiLU -> conv3x3 -> + proj(cond) -> AdaGN -> SiLU -> dropout -> conv3x3``, plus a
    shortcut (a 1x1 convolution when the channel count changes).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        cond_dim: Width of the conditioning vector.
        groups: GroupNorm groups (must divide both channel counts).
        dropout: Dropout probability before the second convolution.
    """

    def __init__(
        self, in_channels: int, out_channels: int, cond_dim: int, groups: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = AdaptiveGroupNorm(in_channels, cond_dim, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.cond_proj = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, out_channels))
        self.norm2 = AdaptiveGroupNorm(out_channels, cond_dim, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        # Zero-init the last conv: each block starts as the identity on its shortcut path.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, kernel_size=1)
        )
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Map ``x`` (B, in, H, W) under ``cond`` (B, cond_dim) to (B, out, H, W)."""
        h = self.conv1(self.act(self.norm1(x, cond)))
        h = h + self.cond_proj(cond)[:, :, None, None]
        h = self.conv2(self.dropout(self.act(self.norm2(h, cond))))
        return self.shortcut(x) + h


class Downsample(nn.Module):
    """Learned 2x downsampling: a 3x3 convolution with stride 2 (channels unchanged)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) to (B, C, H/2, W/2)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Learned 2x upsampling: a 4x4 transposed convolution with stride 2 (channels unchanged)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) to (B, C, 2H, 2W)."""
        return self.conv(x)
