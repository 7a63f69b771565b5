"""The i-CLEVR training set as a PyTorch dataset.

An i-CLEVR folder holds ``train.json`` (``{"CLEVR_train_001032_0.png": ["yellow sphere"], ...}``),
``objects.json`` and the PNG images, either beside ``train.json`` or in an ``images/``
subfolder. Only the images ``train.json`` lists are used, in its order.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..labels import LabelError, Vocabulary

__all__ = ["ClevrDataset", "DatasetError"]

logger = logging.getLogger(__name__)

# Checking or decoding fewer images than this is quick enough to do without a progress bar.
_PROGRESS_MIN = 2000
_NAMED_IN_ERRORS = 5
_LAYOUT_HELP = (
    'An i-CLEVR folder holds train.json ({"CLEVR_train_001032_0.png": ["yellow sphere"], ...}), '
    "objects.json and the PNG images, beside train.json or in an images/ subfolder."
)


class DatasetError(ValueError):
    """A data folder, its label file or one of its images is missing or invalid."""


def _image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``(height, width)`` from an int (square) or a ``(height, width)`` pair."""
    if isinstance(image_size, bool):
        raise DatasetError(f"image_size must be an int or (height, width), got {image_size!r}")
    if isinstance(image_size, int):
        size = (image_size, image_size)
    elif isinstance(image_size, Sequence) and len(image_size) == 2:
        size = (image_size[0], image_size[1])
    else:
        raise DatasetError(f"image_size must be an int or (height, width), got {image_size!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise DatasetError(f"image_size must hold positive integers, got {image_size!r}")
    return size


_WIDE_GRAY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
"""Pillow's modes for 16-bit grayscale PNGs (and other integer grayscale images)."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB; 16-bit grayscale is scaled from 0-65535 to 0-255.

    Pillow's own ``convert("RGB")`` clips such images at 255 instead of scaling them, which
    turns nearly every pixel white.
    """
    if image.mode in _WIDE_GRAY_MODES:
        wide = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)  # 65535 / 255 = 257
        return Image.fromarray(gray).convert("RGB")
    # i-CLEVR PNGs are RGBA with alpha 255: dropping alpha loses nothing.
    return image.convert("RGB")


def _load_rgb(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode ``path`` to a (H, W, 3) uint8 array, resized to ``size`` = (height, width)."""
    with Image.open(path) as image:
        rgb = _to_rgb(image)
    height, width = size
    if rgb.size != (width, height):
        # Squashes 4:3 into the target shape, as the benchmark pipelines do.
        rgb = rgb.resize((width, height), Image.BILINEAR)
    return np.array(rgb, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays


def _verify(path: Path) -> str | None:
    """Return why ``path`` is not a readable image, or ``None`` if it is."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # PIL raises many types (SyntaxError, OSError, struct.error...)
        return f"unreadable ({type(err).__name__}: {err})"
    return None


class ClevrDataset(Dataset):
    """Images and multi-hot labels of an i-CLEVR style folder.

    Args:
        root: The data folder (see the module docstring).
        image_size: Output size: an int for square images or ``(height, width)``.
        labels_file: Label file inside ``root``, ``{filename: [object names]}``.
        skip_broken: Drop missing or unreadable images (listed in `skipped`) instead
            of raising.
        preload: Decode every image once into memory, (N, 3, H, W) uint8.
        vocabulary: Label vocabulary; default the 24 i-CLEVR objects.
        check_images: Verify every image up front; ``False`` only checks that files exist.

    Items are ``(image, label)``: image (3, H, W) float32 in [-1, 1], label (24,) float32
    multi-hot in the vocabulary's order.

    Raises:
        DatasetError: If the folder, ``train.json`` or ``objects.json`` is missing or invalid,
            or (with ``skip_broken=False``) any listed image is missing or unreadable.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int | tuple[int, int] = 64,
        labels_file: str = "train.json",
        skip_broken: bool = False,
        preload: bool = False,
        vocabulary: Vocabulary | None = None,
        check_images: bool = True,
    ) -> None:
        self._root = Path(root)
        self._size = _image_size(image_size)
        self._vocabulary = vocabulary if vocabulary is not None else Vocabulary.default()
        if not self._root.is_dir():
            raise DatasetError(f"data folder {self._root} does not exist. {_LAYOUT_HELP}")
        self._check_objects_file()
        entries = self._read_labels(self._root / labels_file)
        paths, skipped = self._locate(entries, check_images)
        if skipped and not skip_broken:
            shown = "; ".join(f"{name}: {why}" for name, why in skipped[:_NAMED_IN_ERRORS])
            extra = len(skipped) - _NAMED_IN_ERRORS
            more = f" (and {extra} more)" if extra > 0 else ""
            raise DatasetError(
                f"{len(skipped)} of {len(entries)} images listed in {labels_file} are missing or "
                f"unreadable in {self._root}: {shown}{more}. Restore them, or pass "
                "skip_broken=True to train without them."
            )
        if skipped:
            logger.warning(
                "skipping %d of %d images listed in %s (missing or unreadable); see .skipped",
                len(skipped),
                len(entries),
                self._root / labels_file,
            )
        keep = [name for name, _ in entries if name in paths]
        if not keep:
            raise DatasetError(
                f"no usable images left in {self._root}: all {len(entries)} are broken"
            )
        by_name = dict(entries)
        self._skipped: list[tuple[str, str]] = skipped
        self._files: list[str] = keep
        self._paths: list[Path] = [paths[name] for name in keep]
        self._label_lists: list[list[str]] = [by_name[name] for name in keep]
        self._labels = self._vocabulary.encode_batch(self._label_lists)
        self._images: torch.Tensor | None = self._preload() if preload else None

    # -- construction helpers -----------------------------------------------------------

    def _check_objects_file(self) -> None:
        """The folder's objects.json (if any) must name the vocabulary's objects."""
        path = self._root / "objects.json"
        if not path.exists():
            return
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetError(f"cannot read {path}: {err}") from err
        if not isinstance(mapping, dict):
            raise DatasetError(
                f"{path} must map object names to indices, got {type(mapping).__name__}"
            )
        # Only the names matter: labels are always encoded by name with the library's order.
        theirs: set[str] = set()
        unknown: list[str] = []
        for name in mapping:
            if name in self._vocabulary:
                theirs.add(self._vocabulary.normalize(name))
            else:
                unknown.append(name)
        missing = sorted(set(self._vocabulary.names) - theirs)
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"names not in the vocabulary: {unknown}")
            if missing:
                parts.append(f"vocabulary names it lacks: {missing}")
            raise DatasetError(
                f"{path} does not describe the same {len(self._vocabulary)} objects as the "
                f"vocabulary ({'; '.join(parts)}). Pass a matching vocabulary "
                "(Vocabulary.from_json(path)) or use the i-CLEVR objects.json."
            )

    def _read_labels(self, path: Path) -> list[tuple[str, list[str]]]:
        """Read and validate ``train.json`` as ``[(filename, canonical names), ...]``."""
        if not path.is_file():
            raise DatasetError(f"label file {path} not found. {_LAYOUT_HELP}")
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetError(f"cannot read label file {path}: {err}") from err
        if not isinstance(mapping, dict) or not mapping:
            raise DatasetError(
                f"{path} must be a non-empty JSON object {{filename: [object names]}}, "
                f"got {type(mapping).__name__} {str(mapping)[:60]}"
            )
        entries = []
        for name, names in mapping.items():
            try:
                self._vocabulary.encode(names)
            except LabelError as err:
                raise DatasetError(f"{path}, entry {name!r}: {err}") from None
            entries.append((name, [self._vocabulary.normalize(n) for n in names]))
        return entries

    def _locate(
        self, entries: list[tuple[str, list[str]]], check_images: bool
    ) -> tuple[dict[str, Path], list[tuple[str, str]]]:
        """Find (and optionally verify) every image; return found paths and (name, reason)."""
        found: dict[str, Path] = {}
        skipped: list[tuple[str, str]] = []
        bar = tqdm(
            entries,
            desc="checking images" if check_images else "finding images",
            unit="img",
            disable=len(entries) <= _PROGRESS_MIN,
        )
        for name, _ in bar:
            path = next(
                (p for p in (self._root / name, self._root / "images" / name) if p.is_file()), None
            )
            if path is None:
                skipped.append((name, "missing (looked in the folder and in images/)"))
                continue
            reason = _verify(path) if check_images else None
            if reason is not None:
                skipped.append((name, reason))
                continue
            found[name] = path
        return found, skipped

    def _preload(self, progress: bool | None = None) -> torch.Tensor:
        height, width = self._size
        images = torch.empty(len(self._paths), 3, height, width, dtype=torch.uint8)
        quiet = len(self._paths) <= _PROGRESS_MIN if progress is None else not progress
        bar = tqdm(self._paths, desc="loading images", unit="img", disable=quiet)
        for i, path in enumerate(bar):
            images[i] = torch.from_numpy(self._read(path)).permute(2, 0, 1)
        return images

    def _read(self, path: Path) -> np.ndarray:
        try:
            return _load_rgb(path, self._size)
        except Exception as err:
            raise DatasetError(
                f"cannot read image {path} ({type(err).__name__}: {err}); open the data set with "
                "skip_broken=True to leave such files out, or replace the file"
            ) from err

    # -- Dataset API --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(image, label)``: (3, H, W) float32 in [-1, 1] and (24,) float32."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        if self._images is not None:
            pixels = self._images[index]
        else:
            pixels = torch.from_numpy(self._read(self._paths[index])).permute(2, 0, 1)
        image = pixels.to(torch.float32) / 127.5 - 1.0
        return image, self._labels[index].clone()

    # -- whole batches (preloaded) ------------------------------------------------------

    @property
    def can_gather(self) -> bool:
        """Whether `gather` can read batches: the images are preloaded."""
        return self._images is not None

    def gather(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch by one index gather from the preloaded images, where they are held.

        Args:
            indices: (B,) int64 item indices in [0, len), on any device.

        Returns:
            ``(images, labels)``: (B, 3, H, W) float32 in [-1, 1] and (B, 24) float32, the
            items `__getitem__` returns, stacked.

        Raises:
            RuntimeError: If the images are not preloaded (``preload=True`` or `make_resident`).
        """
        if self._images is None:
            raise RuntimeError("gather needs the images in memory: open the data set with preload=True")
        indices = indices.to(self._images.device, non_blocking=True)
        return self._images[indices].float() / 127.5 - 1.0, self._labels[indices]

    def make_resident(self, device: str | torch.device | None = None, progress: bool = False) -> None:
        """Decode every image (if not preloaded yet) and keep images and labels on ``device``.

        A GPU then reads training batches with `gather` where it trains, with no copies and
        no host-device synchronisation (18,009 i-CLEVR images at 64 x 64 take 221 MB).

        Args:
            device: Where to keep them (default: where they are).
            progress: Show a progress bar while decoding.
        """
        if self._images is None:
            self._images = self._preload(progress)
        if device is not None:
            self._images = self._images.to(device)
            self._labels = self._labels.to(device)

    def __repr__(self) -> str:
        height, width = self._size
        return (
            f"ClevrDataset(root={str(self._root)!r}, images={len(self)}, size={height}x{width}, "
            f"skipped={len(self._skipped)}, preloaded={self._images is not None})"
        )

    # -- read-only views ----------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The data folder."""
        return self._root

    @property
    def image_size(self) -> tuple[int, int]:
        """Output ``(height, width)`` in pixels."""
        return self._size

    @property
    def vocabulary(self) -> Vocabulary:
        """The vocabulary labels are encoded with."""
        return self._vocabulary

    @property
    def files(self) -> list[str]:
        """Image filenames (train.json keys) in item order."""
        return list(self._files)

    @property
    def labels(self) -> torch.Tensor:
        """All labels, (N, 24) float32 multi-hot, in item order."""
        return self._labels.clone()

    @property
    def label_lists(self) -> list[list[str]]:
        """All labels as canonical name lists, in item order."""
        return [list(names) for names in self._label_lists]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(filename, reason)`` of the images dropped by ``skip_broken=True``."""
        return list(self._skipped)
