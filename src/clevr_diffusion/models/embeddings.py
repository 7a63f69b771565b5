"""Embeddings of the two conditioning inputs: the diffusion timestep and the label vector."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LabelEmbedding", "SinusoidalTimeEmbedding", "TimestepEmbedding"]


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
