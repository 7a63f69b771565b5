"""Compare the built-in renderer with the Blender reference renders.

Renders every scene of ``shared/reference/blender/scenes.json`` (a) at 64 x 64 'square' against
``png64/`` and (b) at 320 x 240 'native' against ``png/``, and prints per image and overall the
measures of `clevr_diffusion.render.fidelity`: MAE, SSIM, the sharpness ratio, MAE on object
pixels and on object interiors, the share of object pixels more than 8 levels off and of floor
pixels more than 4 levels off, each beside its target. Writes

* a side-by-side grid (columns: ours 64, Blender 64, ours 320, Blender 320; one row per image),
* a difference grid (ours - Blender, amplified 8x around mid-grey, at 64 and at 320),
* the numbers as JSON (``--json``).

Usage: python benchmarks/render_fidelity.py [--reference DIR] [--out-dir DIR] [--supersample K]
       [--shaded-per-pixel N] [--limit N] [--no-native] [--json PATH] [--seed N]

Exits with status 1 when a target is missed (``--no-check`` to only report).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clevr_diffusion.render import load_scenes
from clevr_diffusion.render.fidelity import FidelityScores, difference_image, fidelity_scores
from clevr_diffusion.render.renderer import render, to_uint8

DEFAULT_REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "blender"

TARGETS_64 = {
    "mae": ("<=", 1.0),
    "ssim": (">=", 0.985),
    "ssim_worst": (">=", 0.97),
    "sharpness": ("in", (0.9, 1.1)),
    "object_mae": ("<=", 2.0),
    "floor_off": ("<=", 0.01),
}
"""Targets of issue 16 on the 38 shared references at 64 x 64 (default settings)."""
TARGETS_320 = {"object_mae": ("<=", 3.0)}
"""Target at 320 x 240 against ``png/``."""


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def _summary(scores: list[FidelityScores]) -> dict[str, float]:
    """Means over images, plus the worst SSIM."""
    table = {k: np.array([getattr(s, k) for s in scores]) for k in scores[0].as_dict()}
    out = {k: float(v.mean()) for k, v in table.items()}
    out["ssim_worst"] = float(table["ssim"].min())
    out["sharpness_range"] = [float(table["sharpness"].min()), float(table["sharpness"].max())]  # type: ignore[assignment]
    return out


def _meets(value: float, rule: tuple[str, object]) -> bool:
    op, bound = rule
    if op == "<=":
        return value <= bound  # type: ignore[operator]
    if op == ">=":
        return value >= bound  # type: ignore[operator]
    low, high = bound  # type: ignore[misc]
    return low <= value <= high


def _report(title: str, summary: dict[str, float], targets: dict[str, tuple[str, object]]) -> bool:
    print(title)
    ok = True
    for key, value in summary.items():
        if key == "sharpness_range":
            print(f"  {key:>14}: {value[0]:.3f} .. {value[1]:.3f}")  # type: ignore[index]
            continue
        rule = targets.get(key)
        verdict = ""
        if rule is not None:
            met = _meets(value, rule)
            ok &= met
            bound = rule[1] if rule[0] != "in" else f"{rule[1][0]}-{rule[1][1]}"  # type: ignore[index]
            verdict = f"  target {rule[0]} {bound}: {'met' if met else 'MISSED'}"
        print(f"  {key:>14}: {value:8.4f}{verdict}")
    return ok


def _grid(rows: list[list[np.ndarray]], scale: list[int]) -> Image.Image:
    """Tiles per row, each enlarged (nearest) by its column's factor, 4 px apart."""
    tiles = [
        [
            Image.fromarray(t).resize((t.shape[1] * s, t.shape[0] * s), Image.NEAREST)
            for t, s in zip(r, scale, strict=True)
        ]
        for r in rows
    ]
    width = sum(t.width for t in tiles[0]) + 4 * (len(tiles[0]) - 1)
    height = max(t.height for t in tiles[0])
    grid = Image.new("RGB", (width, len(tiles) * (height + 4) - 4), (255, 255, 255))
    for r, row in enumerate(tiles):
        x = 0
        for tile in row:
            grid.paste(tile, (x, r * (height + 4)))
            x += tile.width + 4
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/render_fidelity"))
    parser.add_argument("--supersample", type=int, default=2)
    parser.add_argument("--shaded-per-pixel", type=int, default=None, help="default: the renderer's")
    parser.add_argument("--limit", type=int, default=None, help="only the first N scenes")
    parser.add_argument("--no-native", action="store_true", help="skip the 320 x 240 comparison")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--seed", type=int, default=0, help="the renderer's noise seed (default 0)")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even when a target is missed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {"supersample": args.supersample, "shaded_per_pixel": args.shaded_per_pixel, "seed": args.seed}

    scenes = load_scenes(args.reference / "scenes.json")[: args.limit]
    names = [Path(s.file or f"png/{i:03d}.png").name for i, s in enumerate(scenes)]

    start = time.perf_counter()
    out64 = render(scenes, 64, 64, "square", **settings)
    elapsed = time.perf_counter() - start
    ours64 = to_uint8(out64.images).permute(0, 2, 3, 1).numpy()
    ref64 = np.stack([_load(args.reference / "png64" / n) for n in names])
    scores64 = fidelity_scores(ours64, ref64, out64.object_ids)

    scores320 = None
    if not args.no_native:
        out320 = render(scenes, 320, 240, "native", **settings)
        ours320 = to_uint8(out320.images).permute(0, 2, 3, 1).numpy()
        ref320 = np.stack([_load(args.reference / "png" / n) for n in names])
        scores320 = fidelity_scores(ours320, ref320, out320.object_ids)

    header = f"{'image':>8} {'kind':>6} {'objs':>4} {'MAE':>6} {'SSIM':>6} {'sharp':>6} {'objMAE':>7} {'intMAE':>7} {'floor>4':>8}"
    print(header + ("  objMAE320" if scores320 else ""))
    for i, (scene, name, s) in enumerate(zip(scenes, names, scores64, strict=True)):
        extra = f"  {scores320[i].object_mae:9.2f}" if scores320 else ""
        print(
            f"{name:>8} {scene.extra.get('kind', '?'):>6} {len(scene.objects):>4} {s.mae:6.2f} {s.ssim:6.3f} "
            f"{s.sharpness:6.2f} {s.object_mae:7.2f} {s.interior_mae:7.2f} {100 * s.floor_off:7.2f}%{extra}"
        )
    summary64 = _summary(scores64)
    ok = _report(f"64 x 64 square vs png64 ({len(scenes)} images, {settings}):", summary64, TARGETS_64)
    results = {
        "settings": settings,
        "64": summary64,
        "per_image_64": {n: s.as_dict() for n, s in zip(names, scores64, strict=True)},
    }
    if scores320 is not None:
        summary320 = _summary(scores320)
        ok &= _report("320 x 240 native vs png:", summary320, TARGETS_320)
        results["320"] = summary320
    print(
        f"throughput 64x64 ({torch.get_num_threads()} threads): {len(scenes) / elapsed:.1f} images/s "
        "(these scenes, one batch; benchmarks/render_speed.py measures speed)"
    )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    side, diff = [], []
    for i in range(len(scenes)):
        side.append([ours64[i], ref64[i]] + ([ours320[i], ref320[i]] if scores320 else []))
        diff.append([difference_image(ours64[i : i + 1], ref64[i : i + 1])[0]])
        if scores320:
            diff[-1].append(difference_image(ours320[i : i + 1], ref320[i : i + 1])[0])
    _grid(side, [4, 4, 1, 1][: len(side[0])]).save(args.out_dir / "side_by_side.png")
    _grid(diff, [4, 1][: len(diff[0])]).save(args.out_dir / "difference.png")
    print(f"wrote {args.out_dir / 'side_by_side.png'} and {args.out_dir / 'difference.png'}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if ok or args.no_check else 1


if __name__ == "__main__":
    raise SystemExit(main())
