"""Option groups shared by several commands."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

# Only light modules at the top: every parser is built for `--help`, which must not wait for torch.
from ..constants import DEFAULT_MODEL, GUIDANCE_MODES, SAMPLING_METHODS, SAMPLING_PRESETS

if TYPE_CHECKING:
    from ..diffusion.settings import SamplingSettings
    from ..evaluation.evaluator import ClevrEvaluator

__all__ = [
    "DEFAULT_DEVICE_HELP",
    "add_device_option",
    "add_evaluator_options",
    "add_model_option",
    "add_sampling_options",
    "check_device",
    "check_output_dir",
    "check_output_file",
    "evaluator_option",
    "model_location",
    "non_negative_int",
    "parse_int_tuple",
    "positive_float",
    "positive_int",
    "resolve_device",
    "sampling_settings",
]


def parse_int_tuple(text: str) -> tuple[int, ...]:
    """Parse ``"1,2,4,8"`` into ``(1, 2, 4, 8)`` (an empty string gives ``()``)."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def _parse(text: str, kind: type[int] | type[float]) -> float | None:
    try:
        value = kind(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts and sizes: an integer >= 1."""
    value = _parse(text, int)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1 or more), got {text!r}")
    return int(value)


def non_negative_int(text: str) -> int:
    """An argparse ``type`` for counts where 0 turns something off: an integer >= 0."""
    value = _parse(text, int)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(value)


def positive_float(text: str) -> float:
    """An argparse ``type`` for sizes: a finite number > 0."""
    value = _parse(text, float)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return float(value)


DEFAULT_DEVICE_HELP = "cuda when available, else cpu"
"""The default of every command's --device, as its help states it (`resolve_device` applies it)."""


def add_device_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "") -> None:
    """Add --device, the same option with the same default in every command that has one.

    Args:
        parser: The command's parser or one of its argument groups.
        what: What runs on the device, for the help (e.g. ``"where to render"``); empty for a generic help.
    """
    parser.add_argument(
        "--device",
        default=None,
        help=f"{what or 'torch device'}: cpu, cuda, cuda:1, ... (default: {DEFAULT_DEVICE_HELP})",
    )


def resolve_device(device: str | None) -> str:
    """The device a command runs on: ``device`` checked, or the default (cuda when available, else cpu).

    Raises:
        ValueError: If ``device`` names no device of this machine (see `check_device`).
    """
    import torch  # only once a command runs: parsing and --help stay light

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return device


def check_device(device: str | None) -> None:
    """Fail early, in one line, when a --device value names no device of this machine.

    Raises:
        ValueError: If ``device`` is no torch device, or CUDA (or MPS) is not available.
    """
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"--device {device!r} is not a torch device; use e.g. cpu, cuda or cuda:1") from error
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("CUDA is not available on this machine; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; use one of them"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS is not available on this machine; use --device cpu")


def _check_writable_folder(path: Path, option: str, target: Path) -> None:
    """Raise unless files can be created in ``path``, or in the folders that would be made for it."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{option} {target}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{option} {target}: no permission to write into {existing}; choose a folder you can write to"
        )


def check_output_file(path: Path | None, option: str) -> None:
    """Fail before any work when the output file ``path`` of ``option`` cannot be written.

    Raises:
        IsADirectoryError: If ``path`` is a folder.
        NotADirectoryError: If a folder on the way to it is a file.
        PermissionError: If it, or the folder it goes into, is not writable.
    """
    if path is None:
        return
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give a file path, e.g. {path / 'grid.png'}")
    _check_writable_folder(path.parent, option, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{option} {path}: no permission to overwrite it; choose another path")


def check_output_dir(path: Path | None, option: str) -> None:
    """Fail before any work when the output folder ``path`` of ``option`` cannot be made or written into.

    Raises:
        NotADirectoryError: If ``path``, or a folder on the way to it, is a file.
        PermissionError: If it (or its nearest existing parent) is not writable.
    """
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"{option} {path} is a file, not a folder; give a folder path (it is created if missing)"
        )
    _check_writable_folder(path, option, path)


def model_location(text: str) -> Path | str:
    """A --model value: an existing folder (a `Path`), else a Hub repo id such as ``user/name``
    (a `str`), else a `Path` (a bundled model's name such as ``clevr-ddpm-small``, which
    ``from_pretrained`` resolves, or a missing folder, which then fails to load with a clear
    message)."""
    from ..model_folder import is_repo_id

    return text if is_repo_id(text) else Path(text)


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """Add the --model of commands that load a trained model: a bundled model's name, a folder or
    a Hub repo id; ``None`` (not given) stands for the bundled default model."""
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
    group.add_argument(
        "--steps", type=positive_int, default=None, help="denoising steps (default: per preset or method)"
    )
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


def sampling_settings(args: argparse.Namespace) -> SamplingSettings:
    """The sampling options `add_sampling_options` added, as the `SamplingSettings` that
    `DDPMSampler.sample` and `evaluate` take (``None`` where the model's saved setting applies;
    ``--seed`` and ``--compile`` are not settings of the draw and stay separate)."""
    from ..diffusion.settings import SamplingSettings

    return SamplingSettings(
        preset=args.preset,
        method=args.method,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        guidance_rescale=args.guidance_rescale,
        guidance_mode=args.guidance_mode,
    )


def add_evaluator_options(parser: argparse.ArgumentParser) -> None:
    """Add --evaluator, --checkpoint and --trust-checkpoint (read them with `evaluator_option`)."""
    parser.add_argument(
        "--evaluator",
        default=None,
        metavar="bundled|official|FILE",
        help="bundled: the library's own evaluator; official: the course's checkpoint.pth, given with "
        "--checkpoint; FILE: weights from `train-evaluator` (.safetensors) (default: official with "
        "--checkpoint, else bundled)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="the official evaluator's checkpoint.pth (a dict with key \"model\")",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="also unpickle non-tensor objects in --checkpoint (only for files you trust: a pickle can run code)",
    )


def evaluator_option(args: argparse.Namespace, device: str) -> ClevrEvaluator:
    """The evaluator the options ask for; checks their combination."""
    from ..evaluation.evaluate import load_evaluator

    kind = args.evaluator or ("official" if args.checkpoint is not None else "bundled")
    if kind == "official":
        if args.checkpoint is None:
            raise ValueError("--evaluator official needs --checkpoint PATH (the course's checkpoint.pth)")
        return load_evaluator(args.checkpoint, device, trusted=args.trust_checkpoint)
    if args.checkpoint is not None:
        raise ValueError("--checkpoint is the official evaluator's; use it with --evaluator official")
    if kind == "bundled":
        return load_evaluator(None, device)
    path = Path(kind)
    if path.suffix != ".safetensors":
        raise ValueError(
            f"--evaluator takes bundled, official or a .safetensors file from `train-evaluator`, got {kind!r}"
            + ("; for the course's checkpoint use --evaluator official --checkpoint FILE" if path.suffix == ".pth" else "")
        )
    return load_evaluator(path, device)
