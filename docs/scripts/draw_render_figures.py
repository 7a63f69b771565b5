"""Draw the renderer page's figures into ``docs/images/``.

* ``render_vs_blender.png``: 8 reference scenes of ``shared/reference/blender``, one a row:
  ours at 64 x 64, Blender at 64 x 64 (both shown 2x), ours at 320 x 240, Blender at 320 x 240.
* ``render_difference.png``: the same rows as differences, ours - Blender amplified 8x around
  mid-grey (brighter: ours is brighter there), at 64 x 64 (shown 2x) and at 320 x 240.
* ``rendered_scenes.png``: 8 x 4 random i-CLEVR-style scenes (``sample_scenes(32, seed=0)``)
  rendered at 64 x 64, the size models train on.
* ``randomization.png``: one scene, plain and with 7 draws of `DomainRandomization()`.

Run: ``python docs/scripts/draw_render_figures.py [REFERENCE_DIR]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clevr_diffusion.render import DomainRandomization, load_scenes, render, sample_scenes
from clevr_diffusion.render.fidelity import difference_image
from clevr_diffusion.utils.images import save_grid

IMAGES = Path(__file__).resolve().parents[1] / "images"
PICKS = ("002.png", "005.png", "011.png", "026.png", "030.png", "031.png", "032.png", "036.png")


def _pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(a) for a in (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()]


def side_by_side(reference: Path) -> None:
    scenes = [s for s in load_scenes(reference / "scenes.json") if Path(s.file or "").name in PICKS]
    small = _pil(render(scenes, 64, 64, "square").images)
    large = _pil(render(scenes, 320, 240, "native").images)
    gap = 4
    canvas = Image.new("RGB", (2 * 128 + 2 * 320 + 3 * gap, len(scenes) * (240 + gap) - gap), "white")
    for row, scene in enumerate(scenes):
        name = Path(scene.file).name  # type: ignore[arg-type]
        tiles = [
            small[row].resize((128, 128), Image.NEAREST),
            Image.open(reference / "png64" / name).convert("RGB").resize((128, 128), Image.NEAREST),
            large[row],
            Image.open(reference / "png" / name).convert("RGB"),
        ]
        x, y = 0, row * (240 + gap)
        for tile in tiles:
            canvas.paste(tile, (x, y + (240 - tile.height) // 2))
            x += tile.width + gap
    canvas.save(IMAGES / "render_vs_blender.png", optimize=True)

    diff = Image.new("RGB", (128 + 320 + gap, len(scenes) * (240 + gap) - gap), "white")
    for row, scene in enumerate(scenes):
        name = Path(scene.file).name  # type: ignore[arg-type]
        pairs = [(small[row], reference / "png64" / name), (large[row], reference / "png" / name)]
        x, y = 0, row * (240 + gap)
        for ours, path in pairs:
            d = difference_image(np.asarray(ours)[None], np.asarray(Image.open(path).convert("RGB"))[None])[0]
            tile = Image.fromarray(d)
            if tile.width == 64:
                tile = tile.resize((128, 128), Image.NEAREST)
            diff.paste(tile, (x, y + (240 - tile.height) // 2))
            x += tile.width + gap
    diff.save(IMAGES / "render_difference.png", optimize=True)


def main() -> None:
    reference = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "shared/reference/blender"
    torch.set_num_threads(2)
    side_by_side(reference)
    scenes = sample_scenes(32, seed=0)
    save_grid(render(scenes, 64, 64, "square").images * 2 - 1, IMAGES / "rendered_scenes.png", nrow=8, upscale=2)
    scene = scenes[0]
    plain = render(scene, 64, 64, "square").images
    varied = render([scene] * 7, 64, 64, "square", scene_offset=list(range(1, 8)), randomization=DomainRandomization())
    save_grid(torch.cat([plain, varied.images]) * 2 - 1, IMAGES / "randomization.png", nrow=8, upscale=2)
    names = ("render_vs_blender.png", "render_difference.png", "rendered_scenes.png", "randomization.png")
    print("wrote", *(IMAGES / n for n in names))



if __name__ == "__main__":
    main()
