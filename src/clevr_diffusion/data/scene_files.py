"""Rendering a CLEVR scene file (``scenes.json``) into a folder of PNGs, resumably.

What ``clevr-diffusion render-scenes`` does, as a library function: every scene of the file
becomes one PNG, named after its ``file`` field or its index; PNGs already in the folder are
kept, so an interrupted run continues where it stopped and renders the same images (scene i
always draws from its own random stream).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..render.camera import Frame
    from ..render.scene import Scene

__all__ = ["SceneFileRenders", "output_names", "render_scene_file"]


@dataclass(frozen=True)
class SceneFileRenders:
    """What `render_scene_file` did.

    Attributes:
        folder: The output folder.
        paths: The PNG of every scene, in file order (rendered now or before).
        rendered: How many were rendered by this call (the others were there already).
        frame: The camera frame used, ``"native"`` or ``"square"``.
    """

    folder: Path
    paths: list[Path]
    rendered: int
    frame: Frame


def output_names(scenes: list[Scene]) -> list[str]:
    """PNG name of each scene: the basename of its `file` field, else its zero-padded index.

    Raises:
        ValueError: If two scenes would share a name.
    """
    names = [Path(s.file).name if s.file else f"{i:06d}.png" for i, s in enumerate(scenes)]
    if len(set(names)) != len(names):
        raise ValueError("two scenes share one `file` name; give every scene its own or none")
    return [n if n.lower().endswith(".png") else n + ".png" for n in names]


def render_scene_file(
    scenes_file: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    width: int = 64,
    height: int = 64,
    *,
    frame: Frame | None = None,
    supersample: int = 2,
    device: str | torch.device = "cpu",
    seed: int = 0,
    randomize: bool = False,
    batch_size: int = 32,
    progress: bool = True,
) -> SceneFileRenders:
    """Render every scene of a scene file into ``out_dir``, one PNG each, skipping those already there.

    Args:
        scenes_file: A JSON list of scenes in CLEVR's format (`clevr_diffusion.render.load_scenes`).
        out_dir: The folder of the PNGs (created if missing).
        width: Image width in pixels.
        height: Image height in pixels.
        frame: ``"native"`` (square pixels) or ``"square"`` (the 4:3 view squashed onto the grid,
            as i-CLEVR's images are); ``None``: native for 4:3 sizes, square otherwise.
        supersample: k x k samples per pixel.
        device: Where to render.
        seed: Seed of the rendering noise (and of the randomisation).
        randomize: Domain randomisation per image (`DomainRandomization` defaults).
        batch_size: Scenes rendered together.
        progress: Show a progress bar.

    Returns:
        The folder, every scene's PNG path, how many were rendered now and the frame.

    Raises:
        FileNotFoundError: If there is no scene file.
        ValueError: If the file is not a list of valid scenes, or two scenes share a name.
    """
    from tqdm.auto import tqdm

    from ..render.camera import frame_for
    from ..render.randomization import DomainRandomization
    from ..render.renderer import render
    from ..render.scene import load_scenes
    from ..utils.images import save_images

    folder = Path(out_dir)
    scenes = load_scenes(scenes_file)
    chosen: Frame = frame or frame_for(width, height)
    names = output_names(scenes)
    todo = [i for i, name in enumerate(names) if not (folder / name).is_file()]
    randomization = DomainRandomization() if randomize else None
    with tqdm(total=len(todo), desc="rendering", unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            # Scene i keeps its own random stream (its index), so a resumed run renders it alike.
            out = render([scenes[i] for i in batch], width, height, chosen, supersample, device, seed, batch, randomization)
            save_images(out.images * 2 - 1, folder, [names[i] for i in batch])
            bar.update(len(batch))
    return SceneFileRenders(folder, [folder / n for n in names], len(todo), chosen)
