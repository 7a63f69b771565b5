"""Compare the built-in renderer with the Blender reference renders.

Renders every scene of ``shared/reference/blender/scenes.json`` (a) at 64 x 64 'square' against
``png64/`` and (b) at 320 x 240 'native' against ``png/``, prints the mean absolute error in
0-255 levels per image and overall, the 64 x 64 throughput, and writes a side-by-side grid
(columns: ours 64, Blender 64, ours 320, Blender 320; one row per image).

Usage: python benchmarks/render_fidelity.py [--reference DIR] [--out PATH] [--supersample K]
       [--limit N] [--no-native]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clevr_diffusion.render import load_scenes
from clevr_diffusion.render.renderer import render, to_uint8


DEFAULT_REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "blender"


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--out", type=Path, default=Path("/tmp/render_fidelity.png"))
    parser.add_argument("--supersample", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N scenes")
    parser.add_argument("--no-native", action="store_true", help="skip the 320 x 240 comparison")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    scenes = load_scenes(args.reference / "scenes.json")[: args.limit]
    names = [Path(s.file or f"png/{i:03d}.png").name for i, s in enumerate(scenes)]

    render(scenes[:2], 64, 64, "square", supersample=args.supersample)  # warm-up (filter tables)
    start = time.perf_counter()
    ours64 = to_uint8(render(scenes, 64, 64, "square", supersample=args.supersample).images)
    elapsed = time.perf_counter() - start
    ours64 = ours64.permute(0, 2, 3, 1).numpy()
    ref64 = np.stack([_load(args.reference / "png64" / n) for n in names])
    mae64 = np.abs(ours64.astype(np.float64) - ref64).mean(axis=(1, 2, 3))

    mae320 = None
    if not args.no_native:
        ours320 = to_uint8(render(scenes, 320, 240, "native", supersample=args.supersample).images)
        ours320 = ours320.permute(0, 2, 3, 1).numpy()
        ref320 = np.stack([_load(args.reference / "png" / n) for n in names])
        mae320 = np.abs(ours320.astype(np.float64) - ref320).mean(axis=(1, 2, 3))

    print(f"{'image':>10} {'kind':>7} {'objs':>4} {'MAE64':>7} {'MAE320':>7}")
    for i, (scene, name) in enumerate(zip(scenes, names, strict=True)):
        m320 = f"{mae320[i]:7.2f}" if mae320 is not None else "      -"
        print(f"{name:>10} {scene.extra.get('kind', '?'):>7} {len(scene.objects):>4} {mae64[i]:7.2f} {m320}")
    print(f"overall MAE 64x64 square: {mae64.mean():.2f} levels (worst {names[int(mae64.argmax())]}: {mae64.max():.2f})")
    if mae320 is not None:
        print(
            f"overall MAE 320x240 native: {mae320.mean():.2f} levels "
            f"(worst {names[int(mae320.argmax())]}: {mae320.max():.2f})"
        )
    print(
        f"throughput 64x64, supersample {args.supersample}, {torch.get_num_threads()} threads: "
        f"{len(scenes) / elapsed:.2f} images/s (these scenes; benchmarks/render_speed.py measures speed)"
    )

    # Side-by-side grid: per row ours64 | ref64 (each upscaled x4 nearest) | ours320 | ref320.
    rows = []
    for i in range(len(scenes)):
        tiles = [
            Image.fromarray(ours64[i]).resize((256, 256), Image.NEAREST),
            Image.fromarray(ref64[i]).resize((256, 256), Image.NEAREST),
        ]
        if mae320 is not None:
            tiles += [Image.fromarray(ours320[i]), Image.fromarray(ref320[i])]
        rows.append(tiles)
    tile_w = [t.width for t in rows[0]]
    width = sum(tile_w) + 4 * (len(tile_w) - 1)
    height = 256
    grid = Image.new("RGB", (width, len(rows) * (height + 4)), (255, 255, 255))
    for r, tiles in enumerate(rows):
        x = 0
        for tile in tiles:
            grid.paste(tile, (x, r * (height + 4)))
            x += tile.width + 4
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
