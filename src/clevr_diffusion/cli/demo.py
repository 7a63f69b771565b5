"""``clevr-diffusion demo``: the whole pipeline in a few minutes on a laptop CPU."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from ..data.dataset import ClevrDataset
from ..diffusion.noise import NoiseConfig
from ..diffusion.sampler import DDPMSampler
from ..labels import load_conditions
from ..models.unet import ConditionalUNet
from ..render.dataset_writer import make_dataset
from ..training.config import TrainerConfig
from ..training.trainer import DDPMTrainer

logger = logging.getLogger(__name__)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "demo",
        help="make a small data set, train a small model for a few minutes, draw the test.json grid",
        description=(
            "End-to-end demo on data the library makes itself, sized for a 2-core CPU: renders an "
            "i-CLEVR-style data set at 64 x 64 with the built-in renderer, trains a small "
            "ConditionalUNet on it at 32 x 32 pixels, then "
            "samples the 32 label sets of the benchmark's test.json into an 8 x 4 grid. Run it "
            "again to continue training from the last checkpoint (raise --steps)."
        ),
    )
    parser.add_argument("--output-dir", type=Path, default=Path("demo"), help="where everything goes (default: demo)")
    parser.add_argument("--steps", type=int, default=800, help="training steps (default: 800, about 4 minutes on 2 cores)")
    parser.add_argument("--scenes", type=int, default=600, help="scenes to render (3 nested frames each; default: 600)")
    parser.add_argument("--image-size", type=int, default=32, help="training image side (default: 32)")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance of the final grid (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    started = time.perf_counter()
    out: Path = args.output_dir
    data_dir = make_dataset(out / "data", num_scenes=args.scenes, width=64, height=64, seed=args.seed)
    dataset = ClevrDataset(data_dir, image_size=args.image_size, preload=True)
    print(f"data: {len(dataset)} images in {data_dir}")

    torch.manual_seed(args.seed)
    model = ConditionalUNet(
        base_channels=32, channel_mults=(1, 2, 4), attention_stages=(2,), dropout=0.0, sample_size=args.image_size
    )
    print(f"model: ConditionalUNet, {model.num_parameters / 1e6:.2f} M parameters")
    config = TrainerConfig(
        output_dir=str(out / "run"),
        max_steps=args.steps,
        batch_size=16,
        learning_rate=1e-3,
        warmup_steps=min(50, args.steps // 4),
        lr_schedule="cosine",
        ema_decay=0.995,
        checkpoint_every=200,
        sample_every=-1,
        log_every=10,
        seed=args.seed,
    )
    trainer = DDPMTrainer(model, dataset, NoiseConfig(), config)
    model_dir = trainer.train()
    trained = time.perf_counter()

    sampler = DDPMSampler.from_pretrained(model_dir)
    output = sampler.sample(load_conditions("test"), method="ddim", num_inference_steps=50, guidance_scale=args.guidance, seed=args.seed)
    grid = output.save_grid(out / "test_grid.png", nrow=8, upscale=2)
    losses = [row["loss"] for row in trainer.metrics()]
    print(f"loss: {losses[0]:.4f} at the start, {losses[-1]:.4f} at the end")
    print(f"time: {trained - started:.0f} s to make data and train, {time.perf_counter() - trained:.0f} s to sample")
    print(f"grid of test.json (8 x 4): {grid}")
    print(f"loss curve: {out / 'run' / 'loss.png'}")
    print(f"model: {model_dir}  (try: clevr-diffusion sample --model {model_dir} --labels \"red sphere, cyan cube\")")
    return 0
