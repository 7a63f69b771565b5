"""DDPMTrainer: train a tiny model on a toy data set, read the metrics, resume with more steps.

Run from the repository root (about 10-30 s on a 2-core CPU):

    python examples/trainer.py

It draws a small toy data set, trains a tiny ConditionalUNet on 16 x 16 images for 30 steps,
prints the logged metrics and the files of the run folder, then resumes the same run up to
60 steps and checks that the result equals a run trained for 60 steps in one go. Everything
is written to a temporary folder that is deleted at the end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from clevr_diffusion import (
    ClevrDataset,
    ConditionalUNet,
    DDPMSampler,
    DDPMTrainer,
    NoiseConfig,
    TrainerConfig,
    make_toy_dataset,
)


def tiny_model() -> ConditionalUNet:
    torch.manual_seed(0)  # the same initial weights every time
    return ConditionalUNet(base_channels=16, channel_mults=(1, 2), attention_stages=(1,), dropout=0.0, sample_size=16)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = make_toy_dataset(tmp / "toy", num_scenes=40, width=32, height=24, seed=0, progress=False)
        dataset = ClevrDataset(root, image_size=16, preload=True)
        print(dataset)

        config = TrainerConfig(
            output_dir=str(tmp / "run"),
            max_steps=30,
            batch_size=16,
            learning_rate=1e-3,
            warmup_steps=5,
            ema_decay=0.99,
            label_dropout=0.1,  # 10 % of labels become all-zero: enables classifier-free guidance
            log_every=10,
            checkpoint_every=10,
            keep_checkpoints=2,
            sample_every=0,  # one sample grid at the end
            sample_steps=10,
            num_sample_images=8,
        )
        noise = NoiseConfig(beta_schedule="squaredcos_cap_v2")
        trainer = DDPMTrainer(tiny_model(), dataset, noise, config)
        model_dir = trainer.train()
        for row in trainer.metrics():
            print(f"step {row['step']:>3}  loss {row['loss']:.4f}  lr {row['lr']:.1e}")
        print("run folder:", sorted(p.name for p in (tmp / "run").iterdir()))
        print("checkpoints:", [p.name for p in sorted(trainer.checkpoint_dir.iterdir())])
        print("model folder:", sorted(p.name for p in model_dir.iterdir()))

        # Resume: the same run folder and more steps. Training continues from the newest
        # checkpoint (step 30) with the optimiser, EMA, data order and random state restored.
        resumed = DDPMTrainer(tiny_model(), dataset, noise, config.replace(max_steps=60))
        resumed.train()
        print("resumed to step", resumed.step, "| logged steps:", [row["step"] for row in resumed.metrics()])

        # An uninterrupted 60-step run in another folder ends with the same weights.
        straight = DDPMTrainer(tiny_model(), dataset, noise, config.replace(max_steps=60, output_dir=str(tmp / "straight")))
        straight.train()
        same = all(
            torch.equal(a, b)
            for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True)
        )
        print("resumed run == uninterrupted run:", same)

        # The finished model folder is a sampler folder.
        sampler = DDPMSampler.from_pretrained(resumed.model_dir)
        images = sampler.sample([["red sphere"], ["blue cube", "gray cylinder"]], method="ddim",
                                num_inference_steps=10, seed=0, progress=False).images
        print("sampled:", tuple(images.shape))


if __name__ == "__main__":
    main()
