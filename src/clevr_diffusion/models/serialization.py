"""Single safetensors files, written atomically, and strict loading of weights into a module.

Model folders (their file names and sharded weights) are `clevr_diffusion.model_folder`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..utils.io import atomic_path

__all__ = [
    "CheckpointMismatchError",
    "load_safetensors",
    "load_state_dict_strict",
    "read_safetensors_metadata",
    "save_safetensors",
]


class CheckpointMismatchError(ValueError):
    """Weights that do not fit the model they are loaded into (another configuration)."""


def save_safetensors(
    state: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> Path:
    """Write a flat tensor dict to ``path`` atomically (tensors are copied to CPU, contiguous)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def load_safetensors(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning a damaged file into a clear error.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is truncated or not a safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as error:
        raise ValueError(
            f"{path} is not a readable safetensors file ({error}); it may be truncated by an "
            "interrupted download or copy: delete it and fetch or save it again"
        ) from error


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header (empty if none).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a readable safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, RuntimeError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error})") from error


def load_state_dict_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module``, failing with every mismatch listed.

    Raises:
        CheckpointMismatchError: If keys are missing, unexpected or of another shape; the
            message names them and says the weights belong to another configuration.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if own[k].shape != state[k].shape
    )
    if missing or unexpected or shapes:

        def show(items: list[str]) -> str:
            head = ", ".join(items[:8])
            return head + (f", ... ({len(items)} in all)" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {show(shapes)}")
        raise CheckpointMismatchError(
            f"the weights in {source} were made for another model configuration; "
            + "; ".join(parts)
            + ". Load them with the config.json saved beside them."
        )
    module.load_state_dict(state, strict=True)

