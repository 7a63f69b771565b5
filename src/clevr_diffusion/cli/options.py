"""Option groups shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..diffusion.guidance import GUIDANCE_MODES
from ..diffusion.schedulers import SAMPLING_METHODS, SAMPLING_PRESETS

__all__ = ["add_model_option", "add_sampling_options", "model_location", "parse_int_tuple", "sampling_kwargs"]


def parse_int_tuple(text: str) -> tuple[int, ...]:
    """Parse ``"1,2,4,8"`` into ``(1, 2, 4, 8)`` (an empty string gives ``()``)."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def model_location(text: str) -> Path | str:
    """A --model value: an existing folder (a `Path`), else a Hub repo id such as ``user/name``
    (a `str`), else a `Path` (a bundled model's name such as ``clevr-ddpm-small``, which
    ``from_pretrained`` resolves, or a missing folder, which then fails to load with a clear
    message)."""
    from ..hub import is_repo_id

    return text if is_repo_id(text) else Path(text)


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """Add the --model of commands that load a trained model: a bundled model's name, a folder or
    a Hub repo id; ``None`` (not given) stands for the bundled default model."""
    from ..pretrained import DEFAULT_MODEL

    parser.add_argument(
        "--model",
        default=None,
        type=model_location,
        metavar="NAME|FOLDER|REPO",
        help=f"a bundled model ({DEFAULT_MODEL}, shipped in the package, loaded offline), a model folder "
        "(e.g. RUN/model from `train`) or a Hugging Face Hub repo id (user/name), downloaded once into the "
        f"Hub cache; a local folder wins over a bundled name (default: {DEFAULT_MODEL})",
    )


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Add --preset, --method, --steps, --guidance, --guidance-rescale, --guidance-mode, --compile and --seed."""
    group = parser.add_argument_group("sampling")
    group.add_argument(
        "--preset",
        choices=tuple(SAMPLING_PRESETS),
        default=None,
        help="a named solver and step count: ddpm-1000 (slowest, the DDPM paper's), ddim-50, dpm++-20 or "
        "unipc-10 (fastest); --method and --steps override its parts",
    )
    group.add_argument(
        "--method",
        choices=SAMPLING_METHODS,
        default=None,
        help="solver: ddpm (1000 ancestral steps, the DDPM paper's), ddim (50 steps), dpm++ "
        "(20 steps) or unipc (10 steps); default: the preset's, else the model's saved setting",
    )
    group.add_argument("--steps", type=int, default=None, help="denoising steps (default: per preset or method)")
    group.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale; 1 = off (default: the model's)"
    )
    group.add_argument(
        "--guidance-rescale",
        type=float,
        default=None,
        metavar="PHI",
        help="guidance rescale in [0, 1] against over-saturation at large --guidance (Lin et al. 2023); "
        "0 = off (default: the model's)",
    )
    group.add_argument(
        "--guidance-mode",
        choices=GUIDANCE_MODES,
        default=None,
        help="joint: one guided pass with the whole label set; composable: one pass per object, "
        "guidance directions summed (Liu et al. 2022) (default: the model's, joint)",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="compile the network with torch.compile (CUDA graphs on CUDA); the first batch pays "
        "the compile time",
    )
    group.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images")


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The options `add_sampling_options` added, as keyword arguments of `DDPMSampler.sample`
    and `evaluate` (``None`` where the model's saved setting applies)."""
    return {
        "preset": args.preset,
        "method": args.method,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "guidance_rescale": args.guidance_rescale,
        "guidance_mode": args.guidance_mode,
        "seed": args.seed,
    }
