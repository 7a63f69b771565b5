"""Shared fixtures: tiny models and data sets that keep the suite fast on 2 CPU cores."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# huggingface_hub reads these once, when it is first imported (clevr_diffusion imports diffusers,
# which imports it), so they are set here, before any import: the whole suite talks only to the
# test Hub server of tests/hub_server.py on 127.0.0.1 (never to a real server) and writes its
# cache and token files into a temporary HF_HOME, not the user's home.
# Worker subprocesses that import this file inherit the test process's settings.
if "CLEVR_DIFFUSION_TEST_HF_HOME" not in os.environ:
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{_free_port()}"
    os.environ["CLEVR_DIFFUSION_TEST_HF_HOME"] = tempfile.mkdtemp(prefix="clevr-diffusion-hf-home-")
    atexit.register(shutil.rmtree, os.environ["CLEVR_DIFFUSION_TEST_HF_HOME"], ignore_errors=True)
os.environ["HF_HOME"] = os.environ["CLEVR_DIFFUSION_TEST_HF_HOME"]
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_ETAG_TIMEOUT"] = "5"
os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = "5"

import pytest  # noqa: E402
import torch  # noqa: E402

from clevr_diffusion import ConditionalUNet, UNetConfig  # noqa: E402

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
