"""Pretrained diffusion models shipped inside the package: their names, folders and export.

A bundled model is a model folder under ``clevr_diffusion/resources/models/NAME/``: what
`DDPMSampler.save_pretrained` writes (``config.json``, ``scheduler_config.json``,
``sampler_config.json``, ``README.md``), except that the weights are float16 shards of at most
15 MiB each in the Hugging Face layout (``model_ema-00001-of-0000N.safetensors`` and the index
``model_ema.safetensors.index.json``), so the package stays small and every file stays under
the size limits of source hosts. ``DDPMSampler.from_pretrained()`` loads the default one
offline; `export_bundle` makes one from a trained model folder. Finding a bundled model by
name is `clevr_diffusion.model_folder`'s, like finding any model folder; its names are
re-exported here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .constants import DEFAULT_MODEL, MAX_SHARD_BYTES
from .model_folder import (
    CONFIG_NAME,
    EMA_PREFIX,
    MODEL_CARD_NAME,
    SAMPLER_CONFIG_NAME,
    WEIGHTS_PREFIX,
    available_models,
    bundled_model_dir,
    bundled_model_name,
    bundled_models_root,
    find_model_folder,
    read_evaluation_report,
    read_training_config,
    resolve_model_name,
    weight_set,
    write_model_card,
)
from .model_folder.weights import save_weights
from .utils.io import atomic_folder, atomic_write_json

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

PRETRAINED_MODELS: dict[str, str] = available_models()
"""The bundled models of this installation (name -> short description), read at import."""


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
    # Imported here: finding bundled models by name must not wait for diffusers.
    from .diffusion.sampler import DDPMSampler

    if max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    out = Path(out_folder)
    card: dict[str, Any] = {}  # the source run's training config and evaluation, for the card
    folder = None if isinstance(source, DDPMSampler) else find_model_folder(source)
    if folder is not None and out.exists() and out.resolve() in (folder.resolve(), *folder.resolve().parents):
        # Replacing the output folder would delete the model being exported (and its run).
        raise ValueError(f"export {folder} into another folder, not onto itself or a folder holding it")
    _check_export_folder(out, overwrite)
    if isinstance(source, DDPMSampler):
        sampler, ema = source, False
    else:
        assert folder is not None
        sampler = DDPMSampler.from_pretrained(folder, use_ema=True)
        ema = weight_set(folder, EMA_PREFIX) is not None
        card["training"] = read_training_config(folder)
        card["evaluation"] = read_evaluation_report(folder)
    config = sampler.config.replace(**sampling) if sampling else sampler.config

    state = {k: v.detach().half() if v.is_floating_point() else v for k, v in sampler.model.state_dict().items()}
    overflow = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if overflow:
        raise ValueError(f"weights out of float16 range (or not finite) in {', '.join(overflow[:8])}; cannot bundle them")

    # Written beside ``out`` and swapped in whole: no mix of old and new files, ever.
    with atomic_folder(out) as tmp:
        if (out / MODEL_CARD_NAME).is_file():
            shutil.copy2(out / MODEL_CARD_NAME, tmp / MODEL_CARD_NAME)  # write_model_card keeps a hand-written one
        save_weights(state, tmp, EMA_PREFIX if ema else WEIGHTS_PREFIX, max_shard_bytes=max_shard_bytes)
        sampler.noise_config.save_scheduler_config(tmp)
        atomic_write_json(tmp / SAMPLER_CONFIG_NAME, sampler.sampler_config(config))
        sampler.model.config.save(tmp / CONFIG_NAME)
        write_model_card(tmp, repo_id=out.name, **{k: v for k, v in card.items() if v is not None})
    return out


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
