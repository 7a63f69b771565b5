"""Exponential moving average of model weights (the weights one samples with)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` after every optimiser step.

    The shadow is a full copy of the model in eval mode, so it can be handed to a sampler
    as it is. Early on the effective decay is ``min(decay, (1 + n) / (10 + n))``: the average
    is not dragged towards the random initial weights.

    Args:
        model: The model being trained (its current weights seed the average).
        decay: Target decay in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.num_updates = 0

    def current_decay(self) -> float:
        """The decay the next update will use."""
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s weights (same architecture)."""
        decay = self.current_decay()
        shadow = [p for p in self.model.parameters()]
        current = [p.detach().to(s.dtype) for p, s in zip(model.parameters(), shadow, strict=True)]
        # One fused kernel for all tensors instead of a Python loop of small ops.
        torch._foreach_lerp_(shadow, current, 1.0 - decay)
        for b_shadow, b_model in zip(self.model.buffers(), model.buffers(), strict=True):
            b_shadow.copy_(b_model)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, keyed like the model's own state dict."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        """Restore averaged weights and the update count (for the decay warm-up)."""
        self.model.load_state_dict(state, strict=True)
        self.num_updates = num_updates
