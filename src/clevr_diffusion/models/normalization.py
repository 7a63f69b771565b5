"""Adaptive group normalisation: GroupNorm whose scale and shift depend on the conditioning."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AdaptiveGroupNorm"]


class AdaptiveGroupNorm(nn.Module):
    """``out = GroupNorm(x) * (1 + gamma) + beta`` with (gamma, beta) predicted from ``cond``.

    The projection starts at zero, so at initialisation the layer is a plain GroupNorm and
    conditioning is learned as a perturbation of it (stable early training).

    Args:
        channels: Channels C of the feature map.
        cond_dim: Width of the conditioning vector (time and label embeddings).
        groups: GroupNorm groups (must divide ``channels``).
    """

    def __init__(self, channels: int, cond_dim: int, groups: int) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"{channels} channels cannot be split into {groups} groups")
        self.norm = nn.GroupNorm(groups, channels, affine=False)
        self.proj = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * channels))
        nn.init.zeros_(self.proj[1].weight)
        nn.init.zeros_(self.proj[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (B, C, H, W) under ``cond`` (B, cond_dim); returns (B, C, H, W)."""
        gamma, beta = self.proj(cond)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta
