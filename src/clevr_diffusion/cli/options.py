"""Option groups shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..diffusion.schedulers import SAMPLING_METHODS

__all__ = ["add_model_option", "add_sampling_options", "model_location", "parse_int_tuple"]


def parse_int_tuple(text: str) -> tuple[int, ...]:
    """Parse ``"1,2,4,8"`` into ``(1, 2, 4, 8)`` (an empty string gives ``()``)."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def model_location(text: str) -> Path | str:
    """A --model value: an existing folder (a `Path`), else a Hub repo id such as ``user/name``
    (a `str`), else a `Path` (which then fails to load with a clear message)."""
    from ..hub import is_repo_id

    return text if is_repo_id(text) else Path(text)


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """Add the required --model of commands that load a trained model: a folder or a Hub repo id."""
    parser.add_argument(
        "--model",
        required=True,
        type=model_location,
        metavar="FOLDER|REPO",
        help="a model folder (e.g. RUN/model from `train`) or a Hugging Face Hub repo id (user/name), "
        "downloaded once into the Hub cache",
    )


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Add --method, --steps, --guidance and --seed."""
    group = parser.add_argument_group("sampling")
    group.add_argument(
        "--method",
        choices=SAMPLING_METHODS,
        default=None,
        help="solver: ddpm (1000 ancestral steps, the DDPM paper's), ddim (50 steps) or dpm++ "
        "(20 steps); default: the model's saved setting",
    )
    group.add_argument("--steps", type=int, default=None, help="denoising steps (default: per method)")
    group.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale; 1 = off (default: the model's)"
    )
    group.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images")
