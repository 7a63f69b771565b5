"""The model folders shipped inside the package: their names and where they are.

A bundled model is a model folder under ``clevr_diffusion/resources/models/NAME/`` whose
weights are float16 shards of at most 15 MiB each (`clevr_diffusion.pretrained.export_bundle`
writes them), so the package stays small and every file stays under the size limits of source
hosts.
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
from pathlib import Path

from ..constants import DEFAULT_MODEL
from .layout import CONFIG_NAME

__all__ = [
    "KNOWN_MODELS",
    "available_models",
    "bundled_model_dir",
    "bundled_model_name",
    "bundled_models_root",
    "unknown_model_error",
]

KNOWN_MODELS: dict[str, str] = {
    "clevr-ddpm-small": "small UNet trained on a CPU at 32 x 32 pixels; samples in seconds on a CPU",
    "clevr-ddpm-base": "larger UNet trained on a GPU at 64 x 64 pixels; sharper, slower to sample on a CPU",
}
"""Every name the library knows, shipped or not, with a one-line description."""


def bundled_models_root() -> Path:
    """Folder of the bundled models inside the installed package (it may not exist)."""
    return Path(str(importlib.resources.files("clevr_diffusion") / "resources" / "models"))


def available_models() -> dict[str, str]:
    """The models this installation bundles: name -> short description, sorted by name.

    A model counts once its folder holds ``config.json`` (written last by `export_bundle`, so
    a folder that has one is complete). Hidden folders are the temporaries of an export in
    progress (or interrupted), not models.
    """
    root = bundled_models_root()
    folders = sorted(root.iterdir()) if root.is_dir() else []
    names = [p.name for p in folders if not p.name.startswith(".") and (p / CONFIG_NAME).is_file()]
    return {name: KNOWN_MODELS.get(name, "bundled model") for name in names}


def unknown_model_error(name: str, *, folder: bool = False) -> FileNotFoundError:
    """The error for a name that is no bundled model (nor, with ``folder``, a local folder),
    with the closest known name as a suggestion."""
    available = available_models()
    shipped = ", ".join(available) if available else "none in this installation"
    if name in KNOWN_MODELS:
        what = "is not bundled with this installation"
    else:
        what = "is neither a model folder nor a bundled model" if folder else "is not a bundled model"
    close = difflib.get_close_matches(name, sorted({*available, *KNOWN_MODELS}), n=1)
    suggestion = f" (did you mean {close[0]!r}?)" if close and close[0] != name else ""
    return FileNotFoundError(
        f"{name!r} {what}{suggestion}; bundled models: {shipped}. Give a model folder or a Hub repo id "
        "(user/name) instead (`clevr-diffusion demo --train` trains a small model)"
    )


def bundled_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder of a bundled model, ready for ``DDPMSampler.from_pretrained``.

    Args:
        name: A key of `PRETRAINED_MODELS` (default: `DEFAULT_MODEL`).

    Raises:
        FileNotFoundError: If this installation bundles no model of that name; the message
            lists those it does.
    """
    if name not in available_models():
        raise unknown_model_error(name)
    return bundled_models_root() / name


def has_separator(text: str) -> bool:
    """Whether ``text`` holds a path separator (so it is a path or a repo id, not a bare name)."""
    return any(sep in text for sep in ("/", os.sep))


def bundled_model_name(name_or_path: str | os.PathLike[str] | None) -> str | None:
    """The bundled model that a ``from_pretrained`` argument refers to, or ``None``.

    ``None`` refers to `DEFAULT_MODEL`; a known model name (bundled here or not) to itself,
    unless a local file or folder of that name exists (a local folder wins). Folders and Hub
    repo ids give ``None``.
    """
    if name_or_path is None:
        return DEFAULT_MODEL
    text = os.fspath(name_or_path)
    if not text or has_separator(text) or Path(text).exists():
        return None  # a path, or a local folder that shadows the name
    known = text in KNOWN_MODELS or (bundled_models_root() / text / CONFIG_NAME).is_file()
    return text if known else None
