"""``clevr-diffusion export-model``: turn a trained model folder into a bundled model folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..constants import MAX_SHARD_BYTES, SAMPLING_PRESETS
from .options import positive_float, positive_int


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "export-model",
        help="write a trained model as a bundled model folder (float16 shards of at most 15 MiB)",
        description=(
            "Write a trained model the way models ship inside the package: its EMA weights (the\n"
            "raw ones when it has none) as float16 shards of at most --max-shard-mib each, and its\n"
            "config.json, scheduler_config.json, sampler_config.json and a model card (README.md;\n"
            "a hand-written one in OUT_DIR is kept). OUT_DIR must be new or empty (a model card\n"
            "alone is fine); --overwrite replaces a bundle there as a whole. Exported into\n"
            "src/clevr_diffusion/resources/models/NAME, it is loaded by NAME:\n"
            "DDPMSampler.from_pretrained(NAME), `--model NAME`.\n\n"
            "examples:\n"
            "  clevr-diffusion export-model runs/small/model \\\n"
            "      src/clevr_diffusion/resources/models/clevr-ddpm-small --preset unipc-10 --guidance 2 --overwrite\n"
            "  clevr-diffusion export-model runs/base bundle/ --max-shard-mib 5"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", type=Path, help="a model folder (RUN/model from `train`), or a run folder")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="the bundled model folder to write")
    parser.add_argument(
        "--max-shard-mib",
        type=positive_float,
        default=MAX_SHARD_BYTES / 2**20,
        help=f"most MiB of weights per shard (default: {MAX_SHARD_BYTES / 2**20:g})",
    )
    parser.add_argument(
        "--preset",
        choices=tuple(SAMPLING_PRESETS),
        default=None,
        help="save this sampling preset as the model's default (default: keep the source's setting)",
    )
    parser.add_argument(
        "--guidance", type=float, default=None, help="save this guidance scale as the model's default (default: keep)"
    )
    parser.add_argument(
        "--output-size",
        type=positive_int,
        default=None,
        metavar="PX",
        help="save this output size as the model's default: images are resized to PX x PX after sampling "
        "(e.g. 64 for a model trained at 32, so its images come out at i-CLEVR's size) (default: keep)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty OUT_DIR as a whole (written beside it, then swapped in; a hand-written "
        "README.md is kept)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    from ..pretrained import export_bundle

    sampling: dict[str, Any] = {}
    if args.preset is not None:
        # The preset's step count, not the source's saved one, goes with the preset's method.
        sampling.update(preset=args.preset, num_inference_steps=None)
    if args.guidance is not None:
        sampling["guidance_scale"] = args.guidance
    if args.output_size is not None:
        sampling["output_size"] = args.output_size
    out = export_bundle(
        args.source, args.out_dir, int(args.max_shard_mib * 2**20), sampling=sampling, overwrite=args.overwrite
    )
    shards = sorted(out.glob("*.safetensors"))
    size = sum(p.stat().st_size for p in shards) / 2**20
    print(f"bundled model: {out} ({len(shards)} weight shards, {size:.1f} MiB)")
    return 0
