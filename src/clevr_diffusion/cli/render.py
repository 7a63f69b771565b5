"""``clevr-diffusion render-scenes``: render scene descriptions to PNG files."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_device_option, check_output_dir, positive_int

RANDOMIZE_HELP = (
    "domain randomisation: jitter light powers and colours, indirect light, floor albedo, "
    "roughness and field of view per image (labels stay true)"
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the commands."""
    _add_make_dataset(commands)
    parser = commands.add_parser(
        "render-scenes",
        help="render CLEVR scene descriptions (JSON) to PNG images",
        description=(
            "Render every scene of SCENES.json (a JSON list in the format of CLEVR's scene files: "
            "camera, lights, objects with shape, color, size, material, 3d_coords, rotation) into "
            "OUT_DIR, one PNG per scene, named after the scene's `file` field when it has one, "
            "else by index (000000.png, ...). Files already in OUT_DIR are kept, so an "
            "interrupted run continues where it stopped.\n\n"
            "example:\n"
            "  clevr-diffusion render-scenes scenes.json renders/ --width 320 --height 240 --frame native"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenes", type=Path, help="JSON list of scenes")
    parser.add_argument("out_dir", type=Path, help="folder for the PNGs")
    parser.add_argument("--width", type=positive_int, default=64, help="image width in pixels (default: 64)")
    parser.add_argument("--height", type=positive_int, default=64, help="image height in pixels (default: 64)")
    parser.add_argument(
        "--frame",
        choices=("square", "native"),
        default=None,
        help="'native': square pixels (the 4:3 camera at 4:3 sizes); 'square': the 4:3 view "
        "squashed onto the grid, as i-CLEVR's 64 x 64 images are (default: native for 4:3 "
        "sizes, square otherwise)",
    )
    parser.add_argument("--supersample", type=positive_int, default=2, help="k x k samples per pixel (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default: 0)")
    add_device_option(parser, "where to render")
    parser.add_argument("--randomize", action="store_true", help=RANDOMIZE_HELP)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    from ..data.scene_files import render_scene_file

    check_output_dir(args.out_dir, "OUT_DIR")
    result = render_scene_file(
        args.scenes, args.out_dir, args.width, args.height, frame=args.frame, supersample=args.supersample,
        device=args.device, seed=args.seed, randomize=args.randomize,
    )  # fmt: skip
    print(
        f"rendered {result.rendered} of {len(result.paths)} scenes into {args.out_dir} "
        f"({result.frame} frame, {args.width} x {args.height})"
    )
    return 0


def _add_make_dataset(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "make-dataset",
        help="render an i-CLEVR-format data set of random CLEVR scenes",
        description=(
            "Render random CLEVR scenes into OUT_DIR in the i-CLEVR folder format: "
            "CLEVR_train_{scene:06d}_{k}.png (frame k shows the scene's first k + 1 objects), "
            "train.json, objects.json and scenes.json (each image's full scene). ClevrDataset "
            "reads the folder unchanged. The defaults reproduce i-CLEVR's size (6003 scenes x 3 "
            "frames, 320 x 240 RGBA). An interrupted run continues where it stopped.\n\n"
            "example:\n"
            "  clevr-diffusion make-dataset data/iclevr-rendered --scenes 200 --width 160 --height 120"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, help="folder to write")
    parser.add_argument("--scenes", type=positive_int, default=6003, help="number of scenes (default: 6003)")
    parser.add_argument("--width", type=positive_int, default=320, help="image width in pixels (default: 320)")
    parser.add_argument("--height", type=positive_int, default=240, help="image height in pixels (default: 240)")
    parser.add_argument("--style", choices=("iclevr", "clevr"), default="iclevr", help="(default: iclevr)")
    parser.add_argument(
        "--min-objects", type=positive_int, default=None, help="fewest objects per scene (default: per style)"
    )
    parser.add_argument(
        "--max-objects", type=positive_int, default=None, help="most objects per scene (default: per style)"
    )
    parser.add_argument("--not-nested", action="store_true", help="one image per scene instead of one per object")
    parser.add_argument("--supersample", type=positive_int, default=2, help="k x k samples per pixel (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_option(parser, "where to render")
    parser.add_argument("--randomize", action="store_true", help=RANDOMIZE_HELP)
    parser.set_defaults(run=_run_make_dataset)


def _run_make_dataset(args: argparse.Namespace) -> int:
    from ..render.dataset_writer import make_dataset
    from ..render.randomization import DomainRandomization

    check_output_dir(args.out_dir, "OUT_DIR")
    count: tuple[int, int] | None = None
    if args.min_objects is not None or args.max_objects is not None:
        low = args.min_objects if args.min_objects is not None else 1
        count = (low, args.max_objects if args.max_objects is not None else low)
    root = make_dataset(
        args.out_dir, num_scenes=args.scenes, width=args.width, height=args.height, style=args.style,
        seed=args.seed, num_objects=count, nested=not args.not_nested, supersample=args.supersample,
        device=args.device, randomization=DomainRandomization() if args.randomize else None,
    )
    print(f"data set: {root}")
    return 0
