"""Embeddings of the two conditioning inputs: the diffusion timestep and the labels (as one
vector, or as a set of object tokens)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LabelEmbedding", "ObjectTokens", "SinusoidalTimeEmbedding", "TimestepEmbedding"]


class SinusoidalTimeEmbedding(nn.Module):
    """Fixed sin/cos features of the timestep, as in the Transformer's positional encoding.

    Args:
        dim: Output width (even).
        max_period: Longest wavelength, in timesteps.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"SinusoidalTimeEmbedding needs an even dim, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        # A buffer (not a parameter) so it follows .to(device) but is never trained or saved.
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed timesteps.

        Args:
            t: (B,) timesteps (integers or floats, in training-step units).

        Returns:
            (B, dim) float32 features in [-1, 1].
        """
        args = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features followed by a 2-layer MLP.

    Args:
        sinusoidal_dim: Width of the fixed sin/cos features.
        dim: Output width.
    """

    def __init__(self, sinusoidal_dim: int, dim: int) -> None:
        super().__init__()
        self.sinusoidal = SinusoidalTimeEmbedding(sinusoidal_dim)
        self.mlp = nn.Sequential(nn.Linear(sinusoidal_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Map (B,) timesteps to (B, dim) embeddings."""
        return self.mlp(self.sinusoidal(t))


class LabelEmbedding(nn.Module):
    """Embedding of a multi-hot label vector (a sum of per-object vectors, then an MLP).

    The all-zero vector is the "no label" input used for classifier-free guidance; its
    embedding is the MLP's response to zero, which training learns like any other.

    Args:
        num_labels: Length of the multi-hot vector (24 for i-CLEVR).
        dim: Output width.
    """

    def __init__(self, num_labels: int, dim: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.mlp = nn.Sequential(nn.Linear(num_labels, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Map (B, num_labels) multi-hot labels in {0, 1} to (B, dim) embeddings."""
        return self.mlp(labels)


class ObjectTokens(nn.Module):
    """The labels as a set of tokens for cross-attention: one learned token per object, plus null.

    Every one of the ``num_labels`` objects has a learned ``dim``-wide token, and one more
    learned "null" token is always visible. A batch row attends to the tokens of its present
    objects (``labels > 0.5``) and to the null token, so the tokens are a fixed (K, dim) set,
    K = num_labels + 1, with a (B, K) boolean mask: no variable-length lists, and an all-zero
    row (the classifier-free guidance unconditional input) attends to the null token alone
    instead of to an empty set. The tokens do not depend on the timestep: the time enters
    through the queries, which come from the time-conditioned feature map.

    Args:
        num_labels: Length of the multi-hot vector (24 for i-CLEVR).
        dim: Token width.
    """

    def __init__(self, num_labels: int, dim: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        # Row k < num_labels is object k's token; the last row is the null token. Unit-variance
        # init, as nn.Embedding's: the key/value projections then see inputs of the usual scale.
        self.tokens = nn.Parameter(torch.randn(num_labels + 1, dim))

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and attention mask for a batch of labels.

        Args:
            labels: (B, num_labels) multi-hot labels in {0, 1} (any float dtype).

        Returns:
            ``(tokens, mask)``: the (num_labels + 1, dim) tokens, shared by every row (the null
            token last), and the (B, num_labels + 1) bool mask, True for the row's present
            objects and always for the null token.
        """
        present = labels > 0.5
        null = present.new_ones(present.shape[0], 1)
        return self.tokens, torch.cat([present, null], dim=1)
