"""Weights in a model folder, written and read through huggingface_hub's serialization.

`save_weights` lays a state dict out as the Hugging Face Hub does (``huggingface_hub.
save_torch_state_dict``): one ``PREFIX.safetensors`` file, or ``PREFIX-0000i-of-0000N.safetensors``
shards with the index ``PREFIX.safetensors.index.json``, so ``huggingface_hub.load_torch_model``,
other Hub tools read our folders too. `load_weights` reads either, and the shards without an
index that older bundles hold, file by file with ``huggingface_hub.load_state_dict_from_file``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layout import WeightFiles, prefix_files

if TYPE_CHECKING:
    import torch

__all__ = ["load_weights", "read_weights_metadata", "save_weights"]

_DAMAGED = (
    "it may be truncated by an interrupted download or copy: delete it and fetch or save it again"
)


def save_weights(
    state: dict[str, torch.Tensor],
    folder: str | os.PathLike[str],
    prefix: str,
    *,
    max_shard_bytes: int | None = None,
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Write ``state`` as ``PREFIX.safetensors``, or shards and an index past ``max_shard_bytes``.

    Every file is swapped in whole (written beside it, then renamed), the index after its
    shards; files of an earlier save with the same prefix that this one does not write (a
    single file replaced by shards, or more shards) are removed last.

    Args:
        state: Tensors (copied to the CPU, contiguous).
        folder: The destination (created if missing).
        prefix: File name prefix, e.g. ``"model_ema"``.
        max_shard_bytes: Most tensor bytes per shard (whole tensors per shard); ``None``: one
            file up to huggingface_hub's default shard size (5 GB).
        metadata: Strings stored in the single file's header, or in the index of shards.

    Returns:
        The files written, shards first.
    """
    from huggingface_hub import save_torch_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    options = {} if max_shard_bytes is None else {"max_shard_size": max_shard_bytes}
    earlier = prefix_files(folder, prefix)
    # huggingface_hub writes in place; a hidden folder beside the targets makes each file atomic.
    with tempfile.TemporaryDirectory(prefix=f".{prefix}-", dir=folder) as tmp, _quiet(save_torch_state_dict):
        save_torch_state_dict(
            tensors, tmp, filename_pattern=prefix + "{suffix}.safetensors", metadata=dict(metadata or {}), **options
        )
        written = sorted(Path(tmp).iterdir(), key=lambda p: (p.name.endswith(".json"), p.name))
        for path in written:
            os.replace(path, folder / path.name)
    for name in earlier - {p.name for p in written}:
        (folder / name).unlink(missing_ok=True)
    return [folder / p.name for p in written]


@contextlib.contextmanager
def _quiet(function: Callable[..., Any]) -> Iterator[None]:
    """Hold back the INFO lines of ``function``'s module: huggingface_hub logs where it saved, and
    that is our hidden temporary folder, which would only confuse a reader of the log."""
    log = logging.getLogger(function.__code__.co_filename)  # its logger is named after its file
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def load_weights(weights: WeightFiles, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read every file of ``weights`` into one state dict.

    Raises:
        FileNotFoundError: If some shards are missing; the message names them.
        ValueError: If a file is damaged (truncated, not safetensors), or the shards hold
            other tensors than their index lists.
    """
    from huggingface_hub import load_state_dict_from_file
    from safetensors import SafetensorError

    missing = weights.missing()
    if missing:
        raise FileNotFoundError(
            f"{weights.folder} holds an incomplete set of {weights.prefix} weight shards: missing "
            f"{', '.join(missing)} of {len(weights.files)}; copy (or export) all of them"
        )
    state: dict[str, torch.Tensor] = {}
    for name in weights.files:
        path = weights.folder / name
        try:
            state.update(load_state_dict_from_file(path, map_location=str(device)))
        except (SafetensorError, OSError, RuntimeError, ValueError) as error:
            # The cause (a header that does not parse, a short read) stays chained to the error.
            raise ValueError(f"{path} is not a readable safetensors file; {_DAMAGED}") from error
    if weights.index is not None:
        listed = set(json.loads((weights.folder / weights.index).read_text(encoding="utf-8"))["weight_map"])
        if listed != set(state):
            raise ValueError(f"the shards in {weights.folder} hold other tensors than {weights.index} lists; {_DAMAGED}")
    return state


def read_weights_metadata(weights: WeightFiles) -> dict[str, str]:
    """The string metadata saved with ``weights``: the index's for shards with an index, else the
    first file's header (older bundles gave every shard the same)."""
    from safetensors import SafetensorError, safe_open

    if weights.index is not None:
        meta = json.loads((weights.folder / weights.index).read_text(encoding="utf-8")).get("metadata") or {}
        return {k: v for k, v in meta.items() if isinstance(v, str)}
    path = weights.folder / weights.files[0]
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, RuntimeError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error})") from error

