"""Writing rendered i-CLEVR-format data sets: images, train.json, objects.json, scenes.json."""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..utils.images import save_png, to_uint8
from ..utils.io import atomic_write_bytes, atomic_write_json
from .camera import frame_for
from .randomization import DomainRandomization
from .renderer import render
from .sampling import Style, sample_scene, scene_prefix
from .scene import Scene

__all__ = ["make_dataset"]

_PARAMS_FILE = "make_dataset.json"


_BATCH = 48
"""Frames rendered together."""


def _check_params(root: Path, params: dict[str, object]) -> None:
    path = root / _PARAMS_FILE
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(previous) | set(params) if previous.get(k) != params.get(k))
        if changed:
            raise ValueError(
                f"{root} holds a data set made with other settings (differing: {', '.join(changed)}); "
                "write to a new folder, or delete this one"
            )
    elif (root / "train.json").exists():
        raise ValueError(f"{root} already holds a train.json that make_dataset did not write; use a new folder")


def _complete(root: Path) -> bool:
    """Whether ``root`` holds a finished data set: ``train.json`` (written last) and every image
    it lists. Drawing the scenes again only to find every image there takes minutes for 6,003."""
    path = root / "train.json"
    if not (path.is_file() and (root / _PARAMS_FILE).is_file()):
        return False
    return all((root / name).is_file() for name in json.loads(path.read_text(encoding="utf-8")))


def make_dataset(
    root: str | os.PathLike[str],
    num_scenes: int = 6003,
    width: int = 320,
    height: int = 240,
    style: Style = "iclevr",
    seed: int = 0,
    num_objects: int | tuple[int, int] | None = None,
    nested: bool = True,
    supersample: int = 2,
    device: str = "cpu",
    progress: bool = True,
    randomization: DomainRandomization | None = None,
) -> Path:
    """Render an i-CLEVR-format folder that `ClevrDataset` reads unchanged.

    Scene ``i`` is drawn from ``numpy.random.default_rng([seed, i])``. With ``nested`` (the
    i-CLEVR way) it is saved one frame per object, ``CLEVR_train_{i:06d}_{k}.png`` showing its
    first k + 1 objects with the same camera and lamps; otherwise one ``_0`` image per scene.
    Images are RGBA PNGs (alpha 255), like the originals. ``train.json`` maps each image to its
    object names, ``scenes.json`` to its full scene; both are written last. Images already in
    ``root`` are kept, so an interrupted run continues where it stopped, and a finished folder
    of the same settings is returned at once.

    Args:
        root: Output folder (created if missing).
        num_scenes: Number of scenes (i-CLEVR: 6003, giving 18009 nested frames).
        width: Image width in pixels (i-CLEVR: 320).
        height: Image height in pixels (i-CLEVR: 240).
        style: ``"iclevr"`` (large rubber objects, distinct labels) or ``"clevr"``.
        seed: Seed of the scenes and of the rendering noise.
        num_objects: Objects per scene, or an inclusive (min, max) range (default: 3 for
            ``"iclevr"``, 3-6 for ``"clevr"``).
        nested: Save every prefix of a scene as its own frame.
        supersample: k x k samples per pixel.
        device: Torch device to render on.
        progress: Show a progress bar.
        randomization: Optional `DomainRandomization` (per-image jitter of lights, floor,
            materials and field of view; labels stay true).

    Returns:
        ``root``.

    Raises:
        ValueError: On invalid arguments, or if ``root`` holds another data set.
    """
    if num_scenes < 1 or seed < 0:
        raise ValueError(f"need num_scenes >= 1 and seed >= 0, got {num_scenes} and {seed}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    params: dict[str, object] = {
        "num_scenes": num_scenes, "width": width, "height": height, "style": style, "seed": seed,
        "num_objects": list(num_objects) if isinstance(num_objects, tuple) else num_objects,
        "nested": nested, "supersample": supersample,
        "randomization": randomization.to_dict() if randomization is not None else None,
    }
    _check_params(root, params)
    if _complete(root):
        return root  # a finished folder of these settings: nothing to draw or render
    atomic_write_json(root / _PARAMS_FILE, params)
    frame = frame_for(width, height)

    labels: dict[str, list[str]] = {}
    entries: list[dict[str, object]] = []
    pending: list[tuple[Scene, int, Path]] = []  # (frame scene, noise stream, file) to render

    def flush() -> None:
        # Frames render together (faster than one by one); each keeps its own noise stream,
        # a (scene, frame) pair, so a resumed run renders every frame alike.
        if pending:
            out = render([p[0] for p in pending], width, height, frame, supersample, device, seed,
                         [p[1] for p in pending], randomization)  # fmt: skip
            rgb = to_uint8(out.images * 2 - 1).permute(0, 2, 3, 1).cpu().numpy()
            for (_, _, path), image in zip(pending, rgb, strict=True):
                rgba = np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=2)
                save_png(Image.fromarray(rgba, mode="RGBA"), path)
            pending.clear()

    for i in tqdm(range(num_scenes), desc="rendering scenes", unit="scene", disable=not progress):
        scene = sample_scene(np.random.default_rng([seed, i]), style=style, num_objects=num_objects)
        counts = range(1, len(scene.objects) + 1) if nested else [len(scene.objects)]
        for k, count in enumerate(counts):
            name = f"CLEVR_train_{i:06d}_{k}.png"
            frame_scene: Scene = dataclasses.replace(scene_prefix(scene, count, recount=False), file=name)
            if not (root / name).is_file():
                pending.append((frame_scene, i * 32 + k, root / name))
            labels[name] = frame_scene.label_names
            entries.append(frame_scene.to_dict())
        if len(pending) >= _BATCH:
            flush()
    flush()

    bundled = importlib.resources.files("clevr_diffusion") / "resources" / "iclevr" / "objects.json"
    atomic_write_bytes(root / "objects.json", bundled.read_bytes())
    atomic_write_json(root / "scenes.json", entries)
    atomic_write_json(root / "train.json", labels)
    return root
