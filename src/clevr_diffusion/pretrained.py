"""Pretrained diffusion models shipped inside the package: their names, folders and export.

A bundled model is a sampler folder under ``clevr_diffusion/resources/models/NAME/``: what
`DDPMSampler.save_pretrained` writes (``config.json``, ``scheduler_config.json``,
``sampler_config.json``, ``README.md``), except that the weights are float16 shards of at most
15 MiB each (``model_ema-00001-of-0000N.safetensors``), so the package stays small and every
file stays under the size limits of source hosts. ``DDPMSampler.from_pretrained()`` loads the
default one offline; `export_bundle` makes one from a trained model folder.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .hub import write_model_card
from .models.serialization import CONFIG_NAME, EMA_WEIGHTS_NAME, WEIGHTS_NAME, save_sharded_safetensors
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

DEFAULT_MODEL = "clevr-ddpm-small"
"""The bundled model ``DDPMSampler.from_pretrained()`` loads when given no name."""

MAX_SHARD_BYTES = 15 * 2**20
"""Largest weight shard `export_bundle` writes by default (15 MiB of tensor data)."""

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
    a folder that has one is complete).
    """
    root = bundled_models_root()
    names = sorted(p.name for p in root.iterdir() if (p / CONFIG_NAME).is_file()) if root.is_dir() else []
    return {name: _DESCRIPTIONS.get(name, "bundled model") for name in names}


PRETRAINED_MODELS: dict[str, str] = available_models()
"""The bundled models of this installation (name -> short description), read at import."""


def _unknown(name: str) -> FileNotFoundError:
    available = available_models()
    shipped = ", ".join(available) if available else "none in this installation"
    what = "is not bundled with this installation" if name in _DESCRIPTIONS else "is not a bundled model"
    return FileNotFoundError(
        f"{name!r} {what}; bundled models: {shipped}. Give a model folder or a Hub repo id instead "
        "(`clevr-diffusion demo --train` trains a small model)"
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
    if not text or any(sep in text for sep in ("/", os.sep)) or Path(text).exists():
        return None  # a path, or a local folder that shadows the name
    known = text in _DESCRIPTIONS or (bundled_models_root() / text / CONFIG_NAME).is_file()
    return text if known else None


def resolve_model_name(name_or_path: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
    """What ``from_pretrained`` loads: a bundled model's folder, or the argument unchanged.

    Precedence: ``None`` -> the default bundled model; an existing local folder -> itself; a
    bundled model's name -> its folder in the package; anything else (a Hub repo id, a
    missing folder) is returned as it is.

    Raises:
        FileNotFoundError: If the argument names a known model this installation does not bundle.
    """
    name = bundled_model_name(name_or_path)
    if name is not None:
        return bundled_model_dir(name)
    assert name_or_path is not None  # None always names the default model
    return name_or_path


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def export_bundle(
    source: str | os.PathLike[str] | DDPMSampler,
    out_folder: str | os.PathLike[str],
    max_shard_bytes: int = MAX_SHARD_BYTES,
    *,
    sampling: dict[str, Any] | None = None,
) -> Path:
    """Write a bundled model folder: float16 weight shards, the json configs and a model card.

    From a folder, the EMA weights are exported when there are some (``model_ema-*`` shards),
    else the raw ones (``model-*`` shards). A sampler's ``model`` is exported as it is, as
    ``model-*`` shards. A hand-written ``README.md`` in ``out_folder`` is kept; otherwise a model
    card is generated (with the training configuration and evaluation report of the source
    run when found). Weights of another layout already in ``out_folder`` are removed, and
    ``config.json`` is written last, so an interrupted export leaves no loadable half-bundle.

    Args:
        source: A trained model folder (``RUN/model``; a run folder ``RUN`` works too), a
            bundled folder, or a `DDPMSampler`.
        out_folder: The bundle to write, e.g. ``src/clevr_diffusion/resources/models/NAME``
            (created if missing).
        max_shard_bytes: Most tensor bytes per shard (whole tensors per shard; default 15 MiB).
        sampling: Changes to the saved default sampling settings (fields of `SamplingConfig`,
            e.g. ``{"preset": "unipc-10", "guidance_scale": 2.0}``).

    Returns:
        ``out_folder``.

    Raises:
        FileNotFoundError: If ``source`` is not a model folder.
        ValueError: If ``max_shard_bytes`` is not positive, ``out_folder`` is the source
            folder, or a weight does not fit in float16.
    """
    from .diffusion.sampler import SAMPLER_CONFIG_NAME, DDPMSampler
    from .utils.io import atomic_write_json

    if max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    out = Path(out_folder)
    card: dict[str, Any] = {}  # the source run's training config and evaluation, for the card
    if isinstance(source, DDPMSampler):
        sampler, ema = source, False
    else:
        folder = Path(source)
        if not (folder / CONFIG_NAME).is_file() and (folder / "model" / CONFIG_NAME).is_file():
            folder = folder / "model"  # a run folder, as `train` writes it
        if not (folder / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{folder} is not a model folder (no config.json); give e.g. RUN/model from `train`")
        if out.exists() and out.resolve() == folder.resolve():
            raise ValueError(f"export {folder} into another folder, not onto itself")
        sampler = DDPMSampler.from_pretrained(folder, use_ema=True)
        ema = (folder / EMA_WEIGHTS_NAME).is_file() or any(folder.glob(f"{EMA_SHARD_PREFIX}-*-of-*.safetensors"))
        card["training"] = _read_json(folder / "trainer_config.json") or _read_json(folder.parent / "trainer_config.json")
        card["evaluation"] = _read_json(folder / "report.json") or _read_json(folder / "evaluation" / "report.json")
    config = sampler.config.replace(**sampling) if sampling else sampler.config

    state = {k: v.detach().half() if v.is_floating_point() else v for k, v in sampler.model.state_dict().items()}
    overflow = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if overflow:
        raise ValueError(f"weights out of float16 range (or not finite) in {', '.join(overflow[:8])}; cannot bundle them")

    out.mkdir(parents=True, exist_ok=True)
    # Until the new config.json lands, the folder must not look complete; and weights of
    # another layout would be loaded in place of (or mixed with) the new shards.
    stale = [out / CONFIG_NAME, out / WEIGHTS_NAME, out / EMA_WEIGHTS_NAME]
    stale += [*out.glob(f"{WEIGHTS_SHARD_PREFIX}-*-of-*.safetensors"), *out.glob(f"{EMA_SHARD_PREFIX}-*-of-*.safetensors")]
    for path in stale:
        path.unlink(missing_ok=True)
    save_sharded_safetensors(state, out, EMA_SHARD_PREFIX if ema else WEIGHTS_SHARD_PREFIX, max_shard_bytes)
    sampler.noise_config.save_scheduler_config(out)
    atomic_write_json(out / SAMPLER_CONFIG_NAME, {"sampling": config.to_dict(), "vocabulary": list(sampler.vocabulary.names)})
    sampler.model.config.save(out / CONFIG_NAME)
    write_model_card(out, repo_id=out.name, **{k: v for k, v in card.items() if v is not None})
    return out
