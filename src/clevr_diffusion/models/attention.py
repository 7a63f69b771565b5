"""Multi-head attention for the UNet: self-attention over the pixels of a feature map, and
cross-attention from those pixels to a set of conditioning tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .normalization import norm_in_input_dtype

__all__ = ["CrossAttention", "SelfAttention"]


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


class CrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention from the pixels of a feature map to tokens, residual.

    Queries are a 1x1 convolution of the GroupNorm-ed feature map; keys and values are linear
    maps of the tokens. A boolean mask says which tokens each batch row may attend to, so a
    variable number of objects per row is a fixed-size, fully batched attention. The output
    1x1 convolution starts at zero: a freshly built layer is the identity, and adding one to a
    network leaves its initial function (and the start of training) undisturbed.

    Args:
        channels: Channels C of the feature map.
        token_dim: Width D of the tokens.
        num_heads: Attention heads (must divide ``channels``).
        groups: GroupNorm groups of the pre-norm.
    """

    def __init__(self, channels: int, token_dim: int, num_heads: int, groups: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.kv = nn.Linear(token_dim, 2 * channels)
        self.out = nn.Conv2d(channels, channels, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attend from every position of ``x`` to the tokens ``mask`` allows.

        Args:
            x: (B, C, H, W) feature map.
            tokens: (B, K, D) or (K, D) tokens (a (K, D) set is shared by every row).
            mask: (B, K) bool, True where row b may attend to token k; every row needs at
                least one True (else its softmax is over nothing and gives NaN).

        Returns:
            (B, C, H, W), dtype of ``x``.
        """
        height, width = x.shape[-2:]
        q = rearrange(self.q(norm_in_input_dtype(self.norm, x)), "b (h d) y x -> b h (y x) d", h=self.num_heads)
        if q.stride(-1) != 1:  # NCHW input: see SelfAttention
            q = q.contiguous()
        kv = self.kv(tokens)
        k, v = rearrange(kv, "... k (two h d) -> two ... h k d", two=2, h=self.num_heads).unbind(0)
        if k.ndim == 3:
            # Shared tokens, expanded to the batch. A copy (B x 2C x K values, small beside the
            # feature map), as a zero batch stride can keep SDPA off its fused kernels on some backends.
            k, v = k.expand(x.shape[0], *k.shape).contiguous(), v.expand(x.shape[0], *v.shape).contiguous()
        # The mask must stay bool (True = attend): a float mask would be added to the scores.
        attn_mask = mask.to(device=x.device, dtype=torch.bool)[:, None, None, :]
        # Under autocast q (a convolution) and k, v (a Linear) share the autocast dtype already.
        attended = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=attn_mask)
        attended = rearrange(attended, "b h (y x) d -> b (h d) y x", y=height, x=width)
        return x + self.out(attended)
