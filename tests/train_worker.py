"""A tiny training run started as a separate process by the trainer tests.

Usage: python train_worker.py OUTPUT_DIR MAX_STEPS [SLEEP_SECONDS]

Run it directly for one process or with ``accelerate launch`` for several. SLEEP_SECONDS slows
every data item down so a test can kill the run mid-way.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from clevr_diffusion import ConditionalUNet, DDPMTrainer, NoiseConfig  # noqa: E402

from conftest import TINY_UNET, LabelledColours  # noqa: E402

TRAINER_SETTINGS = dict(
    batch_size=8,
    warmup_steps=5,
    learning_rate=1e-3,
    checkpoint_every=5,
    keep_checkpoints=0,
    sample_every=-1,
    log_every=1,
)
NOISE = NoiseConfig(num_train_timesteps=100)


class SlowData(LabelledColours):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(self.delay)
        return super().__getitem__(i)


def build(output_dir: str, max_steps: int, delay: float = 0.0) -> DDPMTrainer:
    """The trainer every test of this run uses (same seed, same data, same model)."""
    torch.manual_seed(0)
    model = ConditionalUNet(TINY_UNET)
    return DDPMTrainer(model, SlowData(delay), NOISE, output_dir=output_dir, max_steps=max_steps, **TRAINER_SETTINGS)


if __name__ == "__main__":
    out, steps = sys.argv[1], int(sys.argv[2])
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    build(out, steps, delay).train()
