"""What a model folder holds: its file names, where its weights are, the run files beside it.

A model folder (what `DDPMSampler.save_pretrained` and the trainer's ``RUN/model`` write, and
what a bundled model or a Hub repo holds) is::

    config.json                 the UNet configuration
    model.safetensors           the weights (or shards, below)
    model_ema.safetensors       their exponential moving average, when trained with one
    scheduler_config.json       the noise schedule, in diffusers' format
    sampler_config.json         default sampling settings and the label vocabulary
    README.md                   the model card

Weights may instead be shards in the Hugging Face layout, ``model_ema-00001-of-0000N.safetensors``
with the index ``model_ema.safetensors.index.json`` naming the shard of every tensor (how
bundled models ship). Bundles written before the index existed hold the shards alone; they load
the same way. A training run folder ``RUN`` holds the model folder ``RUN/model`` beside
``trainer_config.json``; ``clevr-diffusion evaluate`` writes ``MODEL/evaluation/report.json``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Defined in constants, which the CLI's option parsers read without importing this package.
from ..constants import MAX_SHARD_BYTES

__all__ = [
    "CONFIG_NAME",
    "EMA_PREFIX",
    "EMA_WEIGHTS_NAME",
    "EVALUATION_DIR",
    "MAX_SHARD_BYTES",
    "MODEL_CARD_NAME",
    "MODEL_DIR",
    "REPORT_NAME",
    "SAMPLER_CONFIG_NAME",
    "SCHEDULER_CONFIG_NAME",
    "TRAINER_CONFIG_NAME",
    "UPLOAD_PATTERNS",
    "WEIGHTS_NAME",
    "WEIGHTS_PREFIX",
    "WeightFiles",
    "find_model_folder",
    "find_weights",
    "index_name",
    "is_model_folder",
    "prefix_files",
    "read_optional_json",
    "read_evaluation_report",
    "read_training_config",
    "shard_names",
    "weight_set",
]

CONFIG_NAME = "config.json"
"""The UNet configuration; written last, so a folder that has one is complete."""
SCHEDULER_CONFIG_NAME = "scheduler_config.json"
"""The noise schedule, readable by ``diffusers.DDPMScheduler.from_pretrained``."""
SAMPLER_CONFIG_NAME = "sampler_config.json"
"""``{"sampling": <SamplingConfig fields>, "vocabulary": [...]}``."""
MODEL_CARD_NAME = "README.md"
"""The model card (Hugging Face Hub convention)."""
WEIGHTS_PREFIX = "model"
"""Weights: ``model.safetensors``, or ``model-0000i-of-0000N.safetensors`` shards."""
EMA_PREFIX = "model_ema"
"""EMA weights: ``model_ema.safetensors``, or ``model_ema-0000i-of-0000N.safetensors`` shards."""
WEIGHTS_NAME = f"{WEIGHTS_PREFIX}.safetensors"
EMA_WEIGHTS_NAME = f"{EMA_PREFIX}.safetensors"
UPLOAD_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors", MODEL_CARD_NAME)
"""The files of a model folder that go to (and come from) the Hub."""

MODEL_DIR = "model"
"""The model folder inside a training run folder."""
TRAINER_CONFIG_NAME = "trainer_config.json"
"""The training settings, in the run folder (``RUN/trainer_config.json``)."""
EVALUATION_DIR = "evaluation"
"""Where ``clevr-diffusion evaluate`` writes by default, inside the model folder."""
REPORT_NAME = "report.json"
"""The evaluation report of ``clevr-diffusion evaluate``."""


def index_name(prefix: str) -> str:
    """The Hugging Face index file of sharded weights, e.g. ``model_ema.safetensors.index.json``."""
    return f"{prefix}.safetensors.index.json"


def shard_names(prefix: str, count: int) -> list[str]:
    """The names of ``count`` shards, ``{prefix}-00001-of-0000N.safetensors`` and on."""
    return [f"{prefix}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def _shard_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r"-(\d{5})-of-(\d{5})\.safetensors")


@dataclass(frozen=True)
class WeightFiles:
    """One set of weights in a folder: a single file, or shards (with or without an index).

    Attributes:
        folder: The folder.
        prefix: `WEIGHTS_PREFIX` or `EMA_PREFIX` (or another, such as the evaluator's).
        files: The weight files, in order (one for a single file).
        sharded: Whether they are shards.
        index: The index file of shards in the Hugging Face layout, ``None`` for a single
            file or shards written before the index existed.
    """

    folder: Path
    prefix: str
    files: tuple[str, ...]
    sharded: bool
    index: str | None = None

    @property
    def label(self) -> str:
        """How messages name these weights: the file, or ``PREFIX-*-of-*.safetensors``."""
        return f"{self.prefix}-*-of-*.safetensors" if self.sharded else self.files[0]

    def missing(self) -> list[str]:
        """Files of the set that are not in the folder (a partial copy or download)."""
        return [name for name in self.files if not (self.folder / name).is_file()]


def _read_index(path: Path) -> dict[str, Any]:
    """The JSON of a weights index, checked to have a ``weight_map`` of tensor -> shard file."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map is not an object of file names")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} is not a weights index (a JSON object with a weight_map) ({error}); the model folder is "
            "damaged: copy, download or export it again"
        ) from error
    return index


def prefix_files(folder: str | os.PathLike[str], prefix: str) -> set[str]:
    """Every weights file of ``prefix`` in ``folder``: the single file, shards and index alike."""
    folder = Path(folder)
    pattern = _shard_pattern(prefix)
    names = {p.name for p in folder.glob(f"{prefix}-*-of-*.safetensors") if pattern.fullmatch(p.name)}
    return names | {n for n in (f"{prefix}.safetensors", index_name(prefix)) if (folder / n).is_file()}


def weight_set(folder: str | os.PathLike[str], prefix: str) -> WeightFiles | None:
    """The weights of ``prefix`` in ``folder``, or ``None`` if there are none.

    A single file wins over shards; shards are listed from the index when there is one, else
    (older bundles) from the count in the first shard's name.

    Raises:
        ValueError: If the index file is not a valid index.
    """
    folder = Path(folder)
    if (folder / f"{prefix}.safetensors").is_file():
        return WeightFiles(folder, prefix, (f"{prefix}.safetensors",), sharded=False)
    index = folder / index_name(prefix)
    if index.is_file():
        files = tuple(sorted(set(_read_index(index)["weight_map"].values())))
        return WeightFiles(folder, prefix, files, sharded=True, index=index.name)
    pattern = _shard_pattern(prefix)
    found = sorted(p.name for p in folder.glob(f"{prefix}-*-of-*.safetensors") if pattern.fullmatch(p.name))
    if not found:
        return None
    count = int(pattern.fullmatch(found[0]).group(2))  # type: ignore[union-attr]
    return WeightFiles(folder, prefix, tuple(shard_names(prefix, count)), sharded=True)


def find_weights(folder: str | os.PathLike[str], use_ema: bool = True) -> WeightFiles | None:
    """The weights a model loads from ``folder``: the EMA weights first when ``use_ema``."""
    for prefix in (EMA_PREFIX, WEIGHTS_PREFIX) if use_ema else (WEIGHTS_PREFIX,):
        found = weight_set(folder, prefix)
        if found is not None:
            return found
    return None


def is_model_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a (complete) model: it has a ``config.json``."""
    return (Path(folder) / CONFIG_NAME).is_file()


def find_model_folder(path: str | os.PathLike[str]) -> Path:
    """The model folder at ``path``: ``path`` itself, or ``path/model`` for a training run folder.

    Raises:
        FileNotFoundError: If neither is a model folder.
    """
    folder = Path(path)
    if not is_model_folder(folder) and is_model_folder(folder / MODEL_DIR):
        folder = folder / MODEL_DIR
    if not is_model_folder(folder):
        raise FileNotFoundError(f"{folder} is not a model folder (no config.json); give e.g. RUN/model from `train`")
    return folder


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` if it is missing or unreadable (optional extras only)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def read_training_config(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``trainer_config.json`` of a model folder's run (in the folder or the run folder above)."""
    folder = Path(folder)
    return _read_json(folder / TRAINER_CONFIG_NAME) or _read_json(folder.parent / TRAINER_CONFIG_NAME)


def read_evaluation_report(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``report.json`` of ``clevr-diffusion evaluate`` (in the folder or its ``evaluation/``)."""
    folder = Path(folder)
    return _read_json(folder / REPORT_NAME) or _read_json(folder / EVALUATION_DIR / REPORT_NAME)


def read_optional_json(folder: str | os.PathLike[str], name: str) -> Any:
    """The JSON of file ``name`` in ``folder``, or ``None`` if missing or unreadable."""
    return _read_json(Path(folder) / name)
