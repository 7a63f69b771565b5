"""Shared fixtures: tiny models and data sets that keep the suite fast on 2 CPU cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clevr_diffusion import ConditionalUNet, UNetConfig

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"

TINY_UNET = UNetConfig(
    base_channels=8, channel_mults=(1, 2), attention_stages=(1,), norm_groups=4, num_heads=2, sample_size=16
)


@pytest.fixture
def tiny_unet() -> ConditionalUNet:
    """A 16 px UNet with about 80 k parameters and fixed weights."""
    torch.manual_seed(0)
    return ConditionalUNet(TINY_UNET)


class LabelledColours(torch.utils.data.Dataset):
    """16 px images whose colour and brightness ramp follow their one-object label.

    Learnable in a few dozen steps (unlike pure noise), so "the loss goes down" means something.
    """

    def __init__(self, size: int = 64, image_size: int = 16, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        index = torch.randint(0, 24, (size,), generator=gen)
        colours = torch.rand(24, 3, generator=gen) * 1.6 - 0.8
        ramp = torch.linspace(-0.2, 0.2, image_size)
        self.images = colours[index][:, :, None, None] + ramp[None, None, :, None]
        self.images = self.images + 0.05 * torch.randn(self.images.expand(-1, -1, -1, image_size).shape, generator=gen)
        self.labels = torch.zeros(size, 24)
        self.labels[torch.arange(size), index] = 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


@pytest.fixture
def colour_dataset() -> LabelledColours:
    """64 labelled one-colour images at 16 px."""
    return LabelledColours()
