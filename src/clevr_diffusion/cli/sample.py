"""``clevr-diffusion sample``: draw images for label sets from a trained model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..constants import CONDITION_SETS
from .options import (
    add_device_option,
    add_model_option,
    add_sampling_options,
    check_output_dir,
    check_output_file,
    positive_int,
    sampling_settings,
)

logger = logging.getLogger(__name__)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "sample",
        help="draw images for label sets from a trained model (default: the bundled one)",
        description=(
            "Draw one image per label set. Give label sets with --labels (one image each) or a "
            "whole condition file with --conditions. Without --model, the model bundled with the "
            "package draws them (offline).\n\n"
            "examples:\n"
            '  clevr-diffusion sample --labels "red sphere, cyan cube" --out one.png\n'
            "  clevr-diffusion sample --model runs/demo/model --conditions test --out test.png\n"
            '  clevr-diffusion sample --model runs/demo/model --labels "red sphere, cyan cube" '
            '--labels "gray cylinder" --out two.png --method dpm++ --guidance 2\n'
            "  clevr-diffusion sample --model runs/demo/model --conditions test --preset unipc-10 "
            "--guidance 3 --guidance-rescale 0.7 --guidance-mode composable"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_option(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--labels",
        action="append",
        metavar='"OBJ, OBJ"',
        help='one label set, objects separated by commas, e.g. "red sphere, cyan cube"; repeat for more images',
    )
    what.add_argument(
        "--conditions",
        metavar="NAME|FILE",
        help=f"a condition file: {' or '.join(CONDITION_SETS)} (bundled) or a JSON list of label lists",
    )
    parser.add_argument("--out", type=Path, default=Path("samples.png"), help="grid PNG to write (default: samples.png)")
    parser.add_argument("--images-dir", type=Path, default=None, help="also save each image as DIR/0.png, 1.png, ...")
    parser.add_argument("--nrow", type=positive_int, default=8, help="images per grid row (default: 8)")
    parser.add_argument("--upscale", type=positive_int, default=1, help="enlarge grid tiles by this integer factor")
    parser.add_argument(
        "--trajectory", type=Path, default=None, help="also save the denoising frames of the first image as a PNG row"
    )
    add_device_option(parser, "where to sample")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --model (default: main)")
    add_sampling_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    from ..diffusion.sampler import DDPMSampler
    from ..labels import load_conditions

    # Sampling can take minutes: find a bad output path before, not after.
    check_output_file(args.out, "--out")
    check_output_dir(args.images_dir, "--images-dir")
    check_output_file(args.trajectory, "--trajectory")
    if args.labels:
        label_sets = [[name.strip() for name in item.split(",") if name.strip()] for item in args.labels]
    else:
        label_sets = load_conditions(args.conditions)
    sampler = DDPMSampler.from_pretrained(args.model, device=args.device, revision=args.revision, compile=args.compile)
    output = sampler.sample(
        label_sets, sampling_settings(args), seed=args.seed, return_trajectory=args.trajectory is not None
    )
    print(f"grid: {output.save_grid(args.out, nrow=args.nrow, upscale=args.upscale)}")
    if args.images_dir is not None:
        output.save(args.images_dir)
        print(f"images: {args.images_dir}/0.png ... {len(label_sets) - 1}.png")
    if args.trajectory is not None:
        print(f"denoising frames: {output.save_trajectory(args.trajectory, upscale=args.upscale)}")
    return 0
