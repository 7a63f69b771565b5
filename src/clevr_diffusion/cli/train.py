"""``clevr-diffusion train``: train a model on an i-CLEVR-format folder or on rendered scenes."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..constants import MIXED_PRECISIONS
from .options import check_output_dir, parse_int_tuple

if TYPE_CHECKING:
    from ..data.dataset import ClevrDataset
    from ..data.rendered import RenderedClevrDataset
    from ..training.recipe import Recipe

logger = logging.getLogger(__name__)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "train",
        help="train a model on an i-CLEVR-format folder or on scenes rendered on the fly",
        description=(
            "Train a label-conditioned DDPM. DATA is a folder with train.json, objects.json and "
            "the images (the real i-CLEVR data, or one written by `make-toy-data` or "
            "`make-dataset`). With --render-data SCENES instead, SCENES random i-CLEVR scenes "
            "(3 nested images each) are rendered while training, on the training device, with no "
            "image files: the images `make-dataset --scenes SCENES --width S --height S` would "
            "write for --image-size S and the same --seed and --supersample. Everything "
            "lands in --output-dir: checkpoints/, samples/ (grids during training), metrics.jsonl, "
            "loss.png and model/ (load it with `sample --model OUTPUT/model`). Run the same command "
            "again to resume an interrupted run exactly where it stopped. For several GPUs or "
            "machines, start it with `accelerate launch -m clevr_diffusion.cli train ...`.\n\n"
            "example:\n"
            "  clevr-diffusion train --data iclevr/ --output-dir runs/base --steps 20000 "
            "--batch-size 64\n"
            "  clevr-diffusion train --data iclevr/ --output-dir runs/gpu --snr-gamma 5 --compile  "
            "# on a GPU\n"
            "  clevr-diffusion train --data iclevr/ --output-dir runs/cpu --image-size 32 "
            "--mixed-precision bf16  # a CPU with bf16 instructions\n"
            "  clevr-diffusion train --render-data 6003 --output-dir runs/rendered --steps 20000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="i-CLEVR-format folder")
    source.add_argument(
        "--render-data",
        type=int,
        metavar="SCENES",
        help="train on SCENES random i-CLEVR scenes rendered on the fly instead of a folder "
        "(i-CLEVR has 6003)",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("runs/clevr-ddpm"), help="run folder")
    parser.add_argument(
        "--recipe",
        default=None,
        metavar="NAME|FILE",
        help="start from a recipe: a preset (cpu-small: 32 x 32 on a CPU, the ablation study's fastest "
        "learner; gpu-base: 64 x 64 on a GPU) or a recipe.json; the options below change it (default: "
        "the values shown)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change any recipe setting by dotted key, e.g. unet.cross_attention_stages=[1,2] or "
        "noise.rescale_betas_zero_snr=true; repeatable, applied last",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="start afresh; a run folder that holds a run is refused without --overwrite"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh, replacing the run already in --output-dir (deleted first)"
    )

    data = parser.add_argument_group("data")
    data.add_argument("--image-size", type=int, default=None, help="side of the square training images (default: 64)")
    data.add_argument(
        "--skip-broken", action="store_true", help="skip missing or unreadable images instead of failing (--data only)"
    )
    data.add_argument(
        "--preload",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hold every training image in memory on the training device and read batches by index there "
        "(--data: decoded once, 221 MB for i-CLEVR at 64 x 64, the fast way on a GPU; --render-data: each "
        "image rendered once before training starts). Default: on for --render-data, off for --data",
    )
    data.add_argument(
        "--supersample", type=int, default=2, help="k x k samples per pixel (--render-data only; default: 2)"
    )
    data.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader worker processes (data that is not preloaded); with --render-data, also the processes "
        "that draw all scenes before training starts (default: one per core)",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--base-channels", type=int, default=None, help="channels of the first stage (default: 32)")
    model.add_argument("--channel-mults", type=parse_int_tuple, default=None, help="per-stage multiples (default: 1,2,4,8)")
    model.add_argument("--attention-stages", type=parse_int_tuple, default=None, help="stages with attention (default: 2)")
    model.add_argument("--dropout", type=float, default=None, help="dropout in residual blocks (default: 0.1)")

    noise = parser.add_argument_group("noise process")
    noise.add_argument("--timesteps", type=int, default=None, help="diffusion steps T (default: 1000)")
    noise.add_argument(
        "--beta-schedule", choices=("linear", "scaled_linear", "squaredcos_cap_v2"), default=None, help="(default: linear)"
    )
    noise.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default=None, help="(default: epsilon)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 10000)")
    opt.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="MINUTES",
        help="also stop after this much wall time, ending as at --steps (checkpoint, samples, model); "
        "run again to continue towards --steps",
    )
    opt.add_argument("--batch-size", type=int, default=None, help="images per step and process (default: 64)")
    opt.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimiser step (default: 1)")
    opt.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 2e-4)")
    opt.add_argument("--warmup-steps", type=int, default=None, help="learning-rate warm-up steps (default: 500)")
    opt.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None, help="(default: constant)")
    opt.add_argument("--ema-decay", type=float, default=None, help="EMA decay (default: 0.999)")
    opt.add_argument("--label-dropout", type=float, default=None, help="label drop rate for guidance (default: 0.1)")
    opt.add_argument("--no-flip", action="store_true", help="turn off random horizontal flips")
    opt.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is available")
    opt.add_argument("--seed", type=int, default=None, help="(default: 0)")
    opt.add_argument(
        "--snr-gamma",
        type=float,
        default=None,
        metavar="GAMMA",
        help="min-SNR-gamma loss weighting (Hang et al. 2023; 5 is usual; default: off)",
    )

    speed = parser.add_argument_group("speed (saved weights are float32 either way)")
    speed.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISIONS,
        default=None,
        help="autocast precision; auto: bf16 on a GPU that supports it, else no (default: auto)",
    )
    speed.add_argument("--no-tf32", action="store_true", help="keep float32 matmuls exact on GPUs (no TF32)")
    speed.add_argument(
        "--fused-optimizer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="AdamW's fused kernel (default: on for GPUs, off on the CPU)",
    )
    speed.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last (NHWC) memory layout (default: on for GPUs, off on the CPU)",
    )
    speed.add_argument(
        "--no-cudnn-benchmark", action="store_true", help="do not let cuDNN pick the fastest convolution kernels"
    )
    speed.add_argument(
        "--compile", action="store_true", help="torch.compile the model (slow first step; needs a C++ compiler on CPU)"
    )

    out = parser.add_argument_group("outputs")
    out.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default: 1000)")
    out.add_argument("--sample-every", type=int, default=None, help="steps between sample grids (0: end only; -1: never)")
    out.add_argument("--log-every", type=int, default=None, help="steps between metrics lines (default: 10)")
    hub = parser.add_argument_group("Hugging Face Hub")
    hub.add_argument(
        "--push-to-hub",
        metavar="REPO",
        default=None,
        help="upload the finished model to this Hub repo (user/name; created if missing); the token comes "
        "from HF_TOKEN or `hf auth login`",
    )
    hub.add_argument("--push-every", type=int, default=0, metavar="N", help="also upload every N steps (default: 0, end only)")
    hub.add_argument("--private", action="store_true", help="create the Hub repo private")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    import torch

    from ..models.unet import ConditionalUNet
    from ..training.trainer import DDPMTrainer

    chosen = recipe(args)  # a bad --recipe or --set fails before the data set is built
    check_output_dir(args.output_dir, "--output-dir")  # before building the data set and model
    dataset = _dataset(args, chosen.image_size, chosen.trainer.seed)
    torch.manual_seed(chosen.trainer.seed)
    model = ConditionalUNet(chosen.unet.replace(sample_size=chosen.image_size))
    logger.info("ConditionalUNet with %.2f M parameters", model.num_parameters / 1e6)
    trainer = DDPMTrainer(model, dataset, chosen.noise, chosen.trainer, sampling=chosen.sampling)
    model_dir = trainer.train(resume=not args.no_resume, overwrite=args.overwrite)
    if trainer.is_main_process:
        print(f"model: {model_dir}")
        print(f"loss curve: {args.output_dir / 'loss.png'}")
    return 0


# Each option that changes a recipe setting, by its argparse dest; None means "not given".
_RECIPE_OPTIONS = {
    "image_size": "image_size",
    "base_channels": "unet.base_channels",
    "channel_mults": "unet.channel_mults",
    "attention_stages": "unet.attention_stages",
    "dropout": "unet.dropout",
    "timesteps": "noise.num_train_timesteps",
    "beta_schedule": "noise.beta_schedule",
    "prediction_type": "noise.prediction_type",
    "steps": "trainer.max_steps",
    "batch_size": "trainer.batch_size",
    "grad_accum": "trainer.gradient_accumulation_steps",
    "lr": "trainer.learning_rate",
    "warmup_steps": "trainer.warmup_steps",
    "lr_schedule": "trainer.lr_schedule",
    "ema_decay": "trainer.ema_decay",
    "label_dropout": "trainer.label_dropout",
    "snr_gamma": "trainer.snr_gamma",
    "mixed_precision": "trainer.mixed_precision",
    "fused_optimizer": "trainer.fused_optimizer",
    "channels_last": "trainer.channels_last",
    "seed": "trainer.seed",
    "checkpoint_every": "trainer.checkpoint_every",
    "sample_every": "trainer.sample_every",
    "log_every": "trainer.log_every",
}
# Switches that change a setting only when given.
_RECIPE_SWITCHES = {
    "no_flip": ("trainer.random_flip", False),
    "no_tf32": ("trainer.tf32", False),
    "no_cudnn_benchmark": ("trainer.cudnn_benchmark", False),
    "compile": ("trainer.compile", True),
    "cpu": ("trainer.cpu", True),
}


def recipe(args: argparse.Namespace) -> Recipe:
    """The recipe the parsed options ask for: ``--recipe`` (or the library's defaults), then the
    options given one by one, then ``--set KEY=VALUE`` (each later one wins)."""
    from ..training.recipe import Recipe, RecipeError, get_recipe, parse_assignment, parse_value

    if args.recipe is None:
        chosen = Recipe()
    elif Path(args.recipe).suffix == ".json":
        chosen = Recipe.load(args.recipe)
    else:
        chosen = get_recipe(args.recipe)
    changes = {key: getattr(args, dest) for dest, key in _RECIPE_OPTIONS.items() if getattr(args, dest) is not None}
    changes.update({key: value for dest, (key, value) in _RECIPE_SWITCHES.items() if getattr(args, dest)})
    for text in args.set:
        try:
            key, value = parse_assignment(text)
        except RecipeError as error:
            raise RecipeError(f"--set: {error}") from error
        changes[key] = parse_value(value)
    changes.update({
        "trainer.output_dir": str(args.output_dir),
        "trainer.time_limit_s": None if args.time_limit is None else args.time_limit * 60,
        "trainer.num_workers": args.num_workers,
        "trainer.push_to_hub": args.push_to_hub,
        "trainer.push_every": args.push_every,
        "trainer.hub_private": args.private,
    })  # fmt: skip
    return chosen.override(changes)


def _dataset(args: argparse.Namespace, image_size: int, seed: int) -> ClevrDataset | RenderedClevrDataset:
    """The folder of --data, or the scenes of --render-data rendered on the training device."""
    import torch

    from ..data.dataset import ClevrDataset
    from ..data.rendered import RenderedClevrDataset

    if args.data is not None:
        dataset = ClevrDataset(
            args.data, image_size=image_size, skip_broken=args.skip_broken, preload=bool(args.preload)
        )
        logger.info("training on %d images from %s", len(dataset), args.data)
        return dataset
    if args.skip_broken:
        raise ValueError("--skip-broken applies to --data folders, not to --render-data")
    if torch.cuda.is_available() and not args.cpu:
        # Each process of an `accelerate launch` renders on its own GPU.
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        device = torch.device("cpu")
    rendered = RenderedClevrDataset(
        args.render_data, image_size=image_size, seed=seed, supersample=args.supersample, device=device,
        cache=args.preload is not False,
    )  # fmt: skip
    rendered.draw_scenes(workers=args.num_workers or None)
    logger.info("training on %d images of %d scenes rendered on the fly on %s", len(rendered), args.render_data, device)
    return rendered
