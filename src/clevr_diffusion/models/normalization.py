"""Adaptive group normalisation: GroupNorm whose scale and shift depend on the conditioning."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaptiveGroupNorm", "norm_in_input_dtype"]

_HALF_DTYPES = (torch.bfloat16, torch.float16)


def norm_in_input_dtype(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` in the dtype of ``x``, also under autocast.

    Autocast runs ``group_norm`` in float32, so in a bf16 network every norm casts its input up
    and the following modulation, SiLU and convolution cast it down again: two full-size copies
    a norm, hundreds of kernels a training step. The GroupNorm kernels accumulate the statistics
    of bf16 and fp16 inputs in float32 anyway, so running the norm on the half-precision input
    only rounds its output to the dtype the next convolution casts it to regardless.

    Args:
        norm: The GroupNorm (its affine weights, if any, are cast to the input's dtype).
        x: (B, C, H, W) feature map.

    Returns:
        (B, C, H, W) normalised features, dtype of ``x``.
    """
    if x.dtype not in _HALF_DTYPES or not torch.is_autocast_enabled(x.device.type):
        return norm(x)
    weight = None if norm.weight is None else norm.weight.to(x.dtype)
    bias = None if norm.bias is None else norm.bias.to(x.dtype)
    with torch.autocast(x.device.type, enabled=False):
        return F.group_norm(x, norm.num_groups, weight, bias, norm.eps)


class AdaptiveGroupNorm(nn.Module):
    """``out = GroupNorm(x) * (1 + gamma) + beta`` with (gamma, beta) predicted from ``cond``.

    The projection starts at zero, so at initialisation the layer is a plain GroupNorm and
    conditioning is learned as a perturbation of it (stable early training). Under autocast
    the output keeps the input's half-precision dtype (see `norm_in_input_dtype`).

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
        gamma, beta = self.proj(cond)[:, :, None, None].to(x.dtype).chunk(2, dim=1)
        return norm_in_input_dtype(self.norm, x) * (1 + gamma) + beta
