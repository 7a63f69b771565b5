"""Multi-head self-attention over the pixels of a feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .normalization import norm_in_input_dtype

__all__ = ["SelfAttention"]


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention with a residual connection.

    Uses `torch.nn.functional.scaled_dot_product_attention` and lets PyTorch pick the
    kernel (flash, memory-efficient or plain) for the device and dtype. The fused kernels need
    q, k and v with a unit stride in the head dimension, so they are made contiguous first when
    they lack it: split straight from an NCHW feature map they are strided views, and PyTorch would fall back
    to the slow plain kernel, in float32 on the CPU.

    Args:
        channels: Channels C of the feature map.
        num_heads: Attention heads (must divide ``channels``).
        groups: GroupNorm groups of the pre-norm.
    """

    def __init__(self, channels: int, num_heads: int, groups: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the H x W positions of ``x`` (B, C, H, W); returns (B, C, H, W)."""
        height, width = x.shape[-2:]
        qkv = rearrange(
            self.qkv(norm_in_input_dtype(self.norm, x)), "b (three h d) y x -> three b h (y x) d", three=3, h=self.num_heads
        )
        if qkv.stride(-1) != 1:  # NCHW input; a channels-last one is already unit-stride in d
            qkv = qkv.contiguous()
        q, k, v = qkv.unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = rearrange(attended, "b h (y x) d -> b (h d) y x", y=height, x=width)
        return x + self.out(attended)
