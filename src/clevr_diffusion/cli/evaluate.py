"""``clevr-diffusion evaluate``: the i-CLEVR deliverables and accuracies of a trained model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..constants import CONDITION_SETS
from .options import (
    add_device_option,
    add_evaluator_options,
    add_model_option,
    add_sampling_options,
    check_output_dir,
    evaluator_option,
    positive_int,
    sampling_settings,
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "evaluate",
        help="sample test.json and new_test.json, save the i-CLEVR deliverables, report accuracy",
        description=(
            "Everything the i-CLEVR benchmark asks for from one model: samples the 32 label sets "
            "of test.json and new_test.json, saves them as OUT/images/test/0.png ... 31.png and "
            "OUT/images/new_test/... in file order, the 8 x 4 grids OUT/test_grid.png and "
            "OUT/new_test_grid.png, the denoising row of \"red sphere, cyan cylinder, cyan cube\" "
            "(OUT/denoising.png, 10 frames from noise to image) and OUT/report.json and "
            "OUT/report.md with each file's accuracy. With --seeds N every file is drawn N times "
            "(seeds S, S+1, ...) and the mean and spread are reported; the images saved are the "
            "first draw's. Without --model, the model bundled with the package is evaluated "
            "(into evaluation/NAME).\n\n"
            "examples:\n"
            "  clevr-diffusion evaluate --preset unipc-10\n"
            "  clevr-diffusion evaluate --model runs/base/model\n"
            "  clevr-diffusion evaluate --model runs/base/model --evaluator official "
            "--checkpoint checkpoint.pth --method ddim --steps 100 --guidance 2 --seeds 5"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_option(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder to write everything to (default: MODEL/evaluation; evaluation/NAME for a bundled or Hub model)",
    )
    add_evaluator_options(parser)
    parser.add_argument(
        "--conditions",
        action="append",
        metavar="NAME|FILE",
        help=f"a condition file to evaluate: {' or '.join(CONDITION_SETS)} (bundled) or a JSON list of "
        "label lists; repeat for more (default: test and new_test)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="draws per file, seeds S, S+1, ...: reports mean and spread (default: 1)",
    )
    add_device_option(parser, "where to sample and score")
    add_sampling_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    from ..evaluation.evaluate import evaluate
    from ..model_folder import EVALUATION_DIR, bundled_model_name, resolve_model_name

    started = time.perf_counter()
    model, bundled = args.model, bundled_model_name(args.model)
    resolve_model_name(model)  # a misspelt model name fails here, before any loading
    if args.out is not None:
        out = args.out
    elif bundled is not None:  # never into the installed package
        out = Path(EVALUATION_DIR) / bundled
    elif isinstance(model, str):  # a Hub repo id: not into the download cache
        out = Path(EVALUATION_DIR) / model.replace("/", "--")
    else:
        out = model / EVALUATION_DIR
    check_output_dir(out, "--out")
    device = args.device  # resolved by `main`: cuda when available, else cpu
    evaluator = evaluator_option(args, device)
    result = evaluate(
        model,
        out,
        evaluator=evaluator,
        files=args.conditions or CONDITION_SETS,
        settings=sampling_settings(args),
        seed=args.seed,
        compile=args.compile,
        seeds=args.seeds,
        device=device,
        progress=not args.quiet,
    )
    print(result)
    for f in result.files.values():
        print(f"{f.name}.json: images {f.images_dir}/0.png ... {f.conditions - 1}.png, grid {f.grid}")
    print(f"denoising row ({len(result.denoising_frame_steps)} frames): {result.denoising}")
    print(f"report: {result.report_md} and {result.report_json}")
    print(f"time: {time.perf_counter() - started:.1f} s")
    return 0
