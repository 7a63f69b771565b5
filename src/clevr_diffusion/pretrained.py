"""Pretrained diffusion models shipped inside the package: their names, folders and export.

A bundled model is a sampler folder under ``clevr_diffusion/resources/models/NAME/``: what
`DDPMSampler.save_pretrained` writes (``config.json``, ``scheduler_config.json``,
``sampler_config.json``, ``README.md``), except that the weights are float16 shards of at most
15 MiB each (``model_ema-00001-of-0000N.safetensors``), so the package stays small and every
file stays under the size limits of source hosts. ``DDPMSampler.from_pretrained()`` loads the
default one offline; `export_bundle` makes one from a trained model folder.
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .constants import DEFAULT_MODEL, MAX_SHARD_BYTES
from .hub import MODEL_CARD_NAME, write_model_card
from .models.serialization import CONFIG_NAME, EMA_WEIGHTS_NAME, save_sharded_safetensors
from .models.unet import EMA_SHARD_PREFIX, WEIGHTS_SHARD_PREFIX

if TYPE_CHECKING:
    from .diffusion.sampler import DDPMSampler

__all__ = [
    "DEFAULT_MODEL",
    "MAX_SHARD_BYTES",
    "PRETRAINED_MODELS",
    "available_models",
    "bundled_model_dir",
    "bundled_model_name",
    "bundled_models_root",
    "export_bundle",
    "resolve_model_name",
]

_DESCRIPTIONS: dict[str, str] = {
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
    return {name: _DESCRIPTIONS.get(name, "bundled model") for name in names}


PRETRAINED_MODELS: dict[str, str] = available_models()
"""The bundled models of this installation (name -> short description), read at import."""


def _unknown(name: str, *, folder: bool = False) -> FileNotFoundError:
    """The error for a name that is no bundled model (nor, with ``folder``, a local folder),
    with the closest known name as a suggestion."""
    available = available_models()
    shipped = ", ".join(available) if available else "none in this installation"
    if name in _DESCRIPTIONS:
        what = "is not bundled with this installation"
    else:
        what = "is neither a model folder nor a bundled model" if folder else "is not a bundled model"
    close = difflib.get_close_matches(name, sorted({*available, *_DESCRIPTIONS}), n=1)
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
        raise _unknown(name)
    return bundled_models_root() / name


def bundled_model_name(name_or_path: str | os.PathLike[str] | None) -> str | None:
    """The bundled model that a ``from_pretrained`` argument refers to, or ``None``.

    ``None`` refers to `DEFAULT_MODEL`; a known model name (bundled here or not) to itself,
    unless a local file or folder of that name exists (a local folder wins). Folders and Hub
    repo ids give ``None``.
    """
    if name_or_path is None:
        return DEFAULT_MODEL
    text = os.fspath(name_or_path)
    if not text or _has_separator(text) or Path(text).exists():
        return None  # a path, or a local folder that shadows the name
    known = text in _DESCRIPTIONS or (bundled_models_root() / text / CONFIG_NAME).is_file()
    return text if known else None


def resolve_model_name(name_or_path: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
    """What ``from_pretrained`` loads: a bundled model's folder, or the argument unchanged.

    Precedence: ``None`` -> the default bundled model; an existing local folder -> itself; a
    bundled model's name -> its folder in the package; anything else with a path separator
    (a Hub repo id, a missing folder) is returned as it is.

    Raises:
        FileNotFoundError: If the argument names a known model this installation does not bundle,
            or is a bare name (no path separator) that is neither a local folder nor a bundled
            model, e.g. a misspelt model name; the message suggests the closest bundled name.
    """
    name = bundled_model_name(name_or_path)
    if name is not None:
        return bundled_model_dir(name)
    assert name_or_path is not None  # None always names the default model
    text = os.fspath(name_or_path)
    if text and not _has_separator(text) and not Path(text).exists():
        # Not a folder, and without a '/' not a Hub repo id either: a bundled name, misspelt.
        raise _unknown(text, folder=True)
    return name_or_path


def _has_separator(text: str) -> bool:
    return any(sep in text for sep in ("/", os.sep))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def export_bundle(
    source: str | os.PathLike[str] | DDPMSampler,
    out_folder: str | os.PathLike[str],
    max_shard_bytes: int = MAX_SHARD_BYTES,
    *,
    sampling: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundled model folder: float16 weight shards, the json configs and a model card.

    From a folder, the EMA weights are exported when there are some (``model_ema-*`` shards),
    else the raw ones (``model-*`` shards). A sampler's ``model`` is exported as it is, as
    ``model-*`` shards. A hand-written ``README.md`` in ``out_folder`` is kept; otherwise a model
    card is generated (with the training configuration and evaluation report of the source
    run when found).

    ``out_folder`` must be missing or empty (a model card alone does not count) unless
    ``overwrite``; then it is replaced as a whole: the bundle is written into a temporary
    sibling folder and swapped in, so an interrupted export leaves the old folder or the new
    one, never a mix of their files.

    Args:
        source: A trained model folder (``RUN/model``; a run folder ``RUN`` works too), a
            bundled folder, or a `DDPMSampler`.
        out_folder: The bundle to write, e.g. ``src/clevr_diffusion/resources/models/NAME``
            (created if missing).
        max_shard_bytes: Most tensor bytes per shard (whole tensors per shard; default 15 MiB).
        sampling: Changes to the saved default sampling settings (fields of `SamplingConfig`,
            e.g. ``{"preset": "unipc-10", "guidance_scale": 2.0}``).
        overwrite: Replace a non-empty ``out_folder`` (its files are deleted).

    Returns:
        ``out_folder``.

    Raises:
        FileNotFoundError: If ``source`` is not a model folder.
        FileExistsError: If ``out_folder`` is not empty and ``overwrite`` is false.
        NotADirectoryError: If ``out_folder`` is a file.
        ValueError: If ``max_shard_bytes`` is not positive, ``out_folder`` is (or holds) the
            source folder, or a weight does not fit in float16.
    """
    from .diffusion.sampler import SAMPLER_CONFIG_NAME, DDPMSampler
    from .utils.io import atomic_folder, atomic_write_json

    if max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    out = Path(out_folder)
    card: dict[str, Any] = {}  # the source run's training config and evaluation, for the card
    folder = None if isinstance(source, DDPMSampler) else _model_folder(source)
    if folder is not None and out.exists() and out.resolve() in (folder.resolve(), *folder.resolve().parents):
        # Replacing the output folder would delete the model being exported (and its run).
        raise ValueError(f"export {folder} into another folder, not onto itself or a folder holding it")
    _check_export_folder(out, overwrite)
    if isinstance(source, DDPMSampler):
        sampler, ema = source, False
    else:
        assert folder is not None
        sampler = DDPMSampler.from_pretrained(folder, use_ema=True)
        ema = (folder / EMA_WEIGHTS_NAME).is_file() or any(folder.glob(f"{EMA_SHARD_PREFIX}-*-of-*.safetensors"))
        card["training"] = _read_json(folder / "trainer_config.json") or _read_json(folder.parent / "trainer_config.json")
        card["evaluation"] = _read_json(folder / "report.json") or _read_json(folder / "evaluation" / "report.json")
    config = sampler.config.replace(**sampling) if sampling else sampler.config

    state = {k: v.detach().half() if v.is_floating_point() else v for k, v in sampler.model.state_dict().items()}
    overflow = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if overflow:
        raise ValueError(f"weights out of float16 range (or not finite) in {', '.join(overflow[:8])}; cannot bundle them")

    # Written beside ``out`` and swapped in whole: no mix of old and new files, ever.
    with atomic_folder(out) as tmp:
        if (out / MODEL_CARD_NAME).is_file():
            shutil.copy2(out / MODEL_CARD_NAME, tmp / MODEL_CARD_NAME)  # write_model_card keeps a hand-written one
        save_sharded_safetensors(state, tmp, EMA_SHARD_PREFIX if ema else WEIGHTS_SHARD_PREFIX, max_shard_bytes)
        sampler.noise_config.save_scheduler_config(tmp)
        vocabulary = list(sampler.vocabulary.names)
        atomic_write_json(tmp / SAMPLER_CONFIG_NAME, {"sampling": config.to_dict(), "vocabulary": vocabulary})
        sampler.model.config.save(tmp / CONFIG_NAME)
        write_model_card(tmp, repo_id=out.name, **{k: v for k, v in card.items() if v is not None})
    return out


def _model_folder(source: str | os.PathLike[str]) -> Path:
    """The model folder of a model or run folder (``RUN/model``, as `train` writes it)."""
    folder = Path(source)
    if not (folder / CONFIG_NAME).is_file() and (folder / "model" / CONFIG_NAME).is_file():
        folder = folder / "model"
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{folder} is not a model folder (no config.json); give e.g. RUN/model from `train`")
    return folder


def _check_export_folder(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that `export_bundle` cannot write, or would lose files in without ``overwrite``.

    A folder holding only a model card is free: the card is kept, nothing is lost.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file, not a folder; give the path of the bundle folder to write")
    held = sorted(p.name for p in out.iterdir() if p.name != MODEL_CARD_NAME) if out.is_dir() else []
    if held and not overwrite:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise FileExistsError(
            f"{out} is not empty (it holds {shown}); export into a new or empty folder, or replace it "
            "as a whole with overwrite=True (CLI: --overwrite)"
        )
