"""Atomic writes of files and whole folders: a reader never sees a half-written one, even after
``kill -9``; and the clean-up of what an interrupted write leaves behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "TEMPORARY_MARK",
    "atomic_folder",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "remove_folder",
    "remove_stale_temporaries",
]

TEMPORARY_MARK = ".tmp"
"""What every temporary name of this module contains: ``.NAME.XXXX.tmp`` files from
`atomic_path`, ``.NAME.tmp-XXXX`` folders from `atomic_folder` and `remove_folder`."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic on
    POSIX and Windows. On error the temporary file is removed and ``path`` is untouched.

    Args:
        path: Destination file. Its parent folder is created if missing.

    Yields:
        A fresh temporary path to write to (the file exists and is empty).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes owner-only files, and some writers (safetensors) recreate the file
        # with those permissions: give the result the permissions open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as handle:
            # Flush to disk before the rename so a power cut cannot leave an empty file.
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    return _atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically and return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it in for ``path`` when the block succeeds.

    The old folder (if any) is renamed aside, the new one renamed into place, then the old one
    deleted. A ``kill -9`` leaves the old folder whole, the new one whole, or (between the two
    renames, a moment) neither, with both as hidden temporaries that `remove_stale_temporaries`
    deletes: never a mix of old and new files. On error the temporary folder is deleted and
    ``path`` is untouched.

    Args:
        path: Destination folder. Its parent is created if missing.

    Yields:
        A fresh, empty temporary folder to fill.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}{TEMPORARY_MARK}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            remove_folder(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_folder(path: str | os.PathLike[str]) -> None:
    """Delete a folder as one step: renamed to a hidden temporary first, then deleted.

    A ``kill -9`` during the deletion leaves a temporary for `remove_stale_temporaries`, never
    a half-deleted folder under its own name (a checkpoint missing its weights but not its
    ``state.json`` would look complete).
    """
    path = Path(path)
    doomed = path.parent / f".{path.name}{TEMPORARY_MARK}-del-{uuid.uuid4().hex[:8]}"
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries an interrupted write left in ``folder`` (not in its subfolders).

    Only call this when no other process is writing there (e.g. when a run starts).

    Returns:
        What was deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(".") and TEMPORARY_MARK in p.name]
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale
