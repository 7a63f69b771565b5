"""``clevr-diffusion train-evaluator``: train the library's own evaluator on rendered scenes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..constants import MAX_SHARD_BYTES
from ..render.randomization import DomainRandomization
from ..training.evaluator_config import EvaluatorTrainingConfig
from .options import add_device_option, check_output_dir, non_negative_int, positive_float, positive_int


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "train-evaluator",
        help="train the built-in evaluator (ResNet-18) on rendered, domain-randomised scenes",
        description=(
            "Render a training set of random CLEVR scenes (1 to 5 objects, i-CLEVR and full-CLEVR "
            "styles, domain randomisation) at 64 x 64, train a ResNet-18 in the official "
            "evaluator's layout on it with label-preserving augmentation, then report its "
            "accuracy on freshly rendered i-CLEVR-style images it never saw. Writes "
            "OUT_DIR/evaluator.safetensors (load it with ClevrEvaluator.from_file, or "
            "`evaluate --evaluator FILE`). Run it again to continue an interrupted run.\n\n"
            "example:\n"
            "  clevr-diffusion train-evaluator runs/evaluator --images 40000 --steps 8000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = EvaluatorTrainingConfig()
    parser.add_argument("out_dir", type=Path, help="folder for the data, checkpoints and weights")
    parser.add_argument("--images", type=positive_int, default=defaults.num_images,
                        help=f"training images to render (default: {defaults.num_images})")  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=defaults.max_steps,
                        help=f"optimiser steps (default: {defaults.max_steps})")  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                        help=f"(default: {defaults.batch_size})")  # fmt: skip
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help=f"peak learning rate (default: {defaults.learning_rate})")
    parser.add_argument("--clevr-fraction", type=float, default=defaults.clevr_fraction,
                        help=f"share of full-CLEVR scenes (default: {defaults.clevr_fraction})")  # fmt: skip
    parser.add_argument("--max-objects", type=positive_int, default=defaults.max_objects,
                        help=f"(default: {defaults.max_objects})")  # fmt: skip
    parser.add_argument("--supersample", type=positive_int, default=defaults.supersample,
                        help=f"renderer samples per pixel, k x k (default: {defaults.supersample})")  # fmt: skip
    parser.add_argument("--shaded-per-pixel", type=positive_int, default=None,
                        help="of those, samples shaded on diffuse surfaces (default: all of them); fewer is faster and noisier")  # fmt: skip
    parser.add_argument("--no-randomize", action="store_true", help="render without domain randomisation")
    parser.add_argument("--no-maxpool", action="store_true",
                        help="drop the ResNet's stem max pool: finer feature maps that see small objects better, ~3x the compute")  # fmt: skip
    parser.add_argument("--heldout", type=non_negative_int, default=960,
                        help="fresh images to measure accuracy on (default: 960)")  # fmt: skip
    parser.add_argument("--time-limit", type=positive_float, default=None,
                        help="stop after this many minutes (checkpointed)")  # fmt: skip
    parser.add_argument("--init", type=Path, default=None, help="start from these weights (fine-tuning) instead of random ones")
    parser.add_argument("--seed", type=int, default=0)
    add_device_option(parser, "where to render and train")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default="no", help="autocast precision (default: no)")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes that draw the scenes (default: 1)")
    parser.add_argument(
        "--bundle", type=Path, default=None, metavar="DIR",
        help=f"also write the weights as float16 shards of at most {MAX_SHARD_BYTES / 2**20:g} MiB into DIR (how the "
        "package ships them)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    from ..evaluation.evaluator import ClevrEvaluator
    from ..evaluation.heldout import heldout_accuracy
    from ..training.evaluator import train_evaluator

    if args.images < args.batch_size:
        raise ValueError(f"need --images >= --batch-size, got {args.images} < {args.batch_size}")
    check_output_dir(args.out_dir, "OUT_DIR")
    check_output_dir(args.bundle, "--bundle")
    config = EvaluatorTrainingConfig(
        output_dir=str(args.out_dir), num_images=args.images, max_steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.lr, clevr_fraction=args.clevr_fraction, max_objects=args.max_objects, seed=args.seed,
        init_from=None if args.init is None else str(args.init), device=args.device,
        mixed_precision=args.mixed_precision, workers=args.workers, maxpool=not args.no_maxpool,
        supersample=args.supersample, shaded_per_pixel=args.shaded_per_pixel,
        randomization=DomainRandomization(light_power=0, light_color=0, indirect=0, floor_albedo=(0.8, 0.8),
                                          floor_tint=0, roughness=0, fov=0) if args.no_randomize else DomainRandomization(),
    )  # fmt: skip
    started = time.perf_counter()
    path = train_evaluator(config, time_limit_s=None if args.time_limit is None else args.time_limit * 60)
    evaluator = ClevrEvaluator.from_file(path, device=args.device)
    print(f"weights: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if args.bundle is not None:
        shards = evaluator.save_bundle(args.bundle)
        print("bundle: " + ", ".join(f"{p} ({p.stat().st_size / 2**20:.2f} MiB)" for p in shards))
    if args.heldout > 0:
        result = heldout_accuracy(evaluator, num_images=args.heldout, workers=args.workers)
        print(f"held-out accuracy on {args.heldout} fresh i-CLEVR-style images: {result}")
    print(f"time: {time.perf_counter() - started:.0f} s")
    return 0
