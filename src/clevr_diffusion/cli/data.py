"""``clevr-diffusion make-toy-data``: write a small i-CLEVR-format data set."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import check_output_dir, parse_int_tuple, positive_int


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "make-toy-data",
        help="write a small 2-D stand-in data set in the i-CLEVR folder format",
        description=(
            "Write OUT_DIR/train.json, objects.json and CLEVR_train_XXXXXX_K.png images: simple "
            "2-D scenes of the 24 i-CLEVR objects, for trying the library without the real data. "
            "Scenes are nested like i-CLEVR's (frame K shows the first K + 1 objects). An "
            "interrupted run continues where it stopped."
        ),
    )
    parser.add_argument("out_dir", type=Path, help="folder to write")
    parser.add_argument("--scenes", type=positive_int, default=2000, help="number of scenes (default: 2000)")
    parser.add_argument(
        "--size", type=parse_int_tuple, default=(128, 96), help="image WIDTH,HEIGHT in pixels (default: 128,96)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--max-objects", type=positive_int, default=3, help="objects per scene, at most (default: 3)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    from ..data.toy import make_toy_dataset

    if len(args.size) != 2 or min(args.size) < 1:
        raise ValueError(f"--size takes WIDTH,HEIGHT, two positive integers, got {args.size}")
    check_output_dir(args.out_dir, "OUT_DIR")
    root = make_toy_dataset(args.out_dir, num_scenes=args.scenes, width=args.size[0], height=args.size[1], seed=args.seed, max_objects=args.max_objects)
    print(f"data set: {root}")
    return 0
