"""Training checkpoints in safetensors: written whole or not at all, and read back exactly.

A checkpoint is a folder ``step_XXXXXXXX/`` with ``model.safetensors``, ``ema.safetensors``,
``optimizer.safetensors`` (tensors of the optimiser state), ``rng_<rank>.safetensors`` (each
process's random number generator states), ``scheduler_config.json`` (the noise schedule, in
diffusers' format) and ``state.json`` (step, optimiser hyper-parameters, configs). It is assembled in a hidden temporary folder and renamed into place in one step,
so a ``kill -9`` at any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.serialization import load_safetensors, read_safetensors_metadata, save_safetensors
from ..utils.io import atomic_write_json, remove_folder

__all__ = [
    "CHECKPOINT_PREFIX",
    "capture_rng_state",
    "checkpoint_path",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_optimizer",
    "optimizer_from_tensors",
    "optimizer_to_tensors",
    "restore_rng_state",
    "save_optimizer",
]

CHECKPOINT_PREFIX = "step_"
STATE_NAME = "state.json"


def checkpoint_path(folder: str | os.PathLike[str], step: int) -> Path:
    """Path of the checkpoint of ``step`` inside ``folder``."""
    return Path(folder) / f"{CHECKPOINT_PREFIX}{step:08d}"


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first (half-written temporaries excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def find_latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint in ``folder``, or ``None``."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def temporary_checkpoint_path(folder: str | os.PathLike[str], step: int) -> Path:
    """Where the checkpoint of ``step`` is assembled before `publish_checkpoint`."""
    return Path(folder) / f".tmp-{CHECKPOINT_PREFIX}{step:08d}"


def publish_checkpoint(tmp: Path, final: Path, keep: int) -> None:
    """Rename an assembled checkpoint into place, then delete all but the ``keep`` newest.

    Deleted checkpoints are renamed away first (`remove_folder`), so a kill during a deletion
    never leaves a half-deleted checkpoint that still looks complete.
    """
    if final.exists():  # a checkpoint of the same step from an earlier, interrupted run
        remove_folder(final)
    os.replace(tmp, final)
    if keep > 0:
        for old in list_checkpoints(final.parent)[:-keep]:
            remove_folder(old)


def optimizer_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state dict into flat tensors and JSON-ready metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            key = f"state.{index}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value
            else:
                scalars[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an optimiser state dict from `optimizer_to_tensors`' two halves."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_optimizer(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write an optimiser state dict as one safetensors file, atomically: its tensors, and the
    rest (hyper-parameters, scalars) as JSON in the file's metadata. No pickle."""
    tensors, meta = optimizer_to_tensors(state)
    return save_safetensors(tensors, path, metadata={"optimizer": json.dumps(meta)})


def load_optimizer(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an optimiser state dict written by `save_optimizer`, its tensors on ``device``."""
    meta = json.loads(read_safetensors_metadata(path)["optimizer"])
    return optimizer_from_tensors(load_safetensors(path, device), meta)


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's torch (CPU and CUDA), NumPy and Python RNG states: tensors and JSON."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    np_state = np.random.get_state()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    return tensors, meta


def restore_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Undo `capture_rng_state`."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    name, keys, *rest = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_rng(folder: Path, rank: int) -> None:
    """Write this process's RNG states into checkpoint folder ``folder``."""
    tensors, meta = capture_rng_state()
    save_safetensors(tensors, folder / f"rng_{rank}.safetensors", metadata={"meta": json.dumps(meta)})


def load_rng(folder: Path, rank: int) -> bool:
    """Restore this process's RNG states from ``folder``; False if it holds none for ``rank``."""
    path = folder / f"rng_{rank}.safetensors"
    if not path.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
    restore_rng_state(load_safetensors(path), meta)
    return True


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Write ``state.json``: its presence marks the checkpoint complete."""
    atomic_write_json(folder / STATE_NAME, state)


def read_state(folder: Path) -> dict[str, Any]:
    """Read a checkpoint's ``state.json``."""
    return json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
