"""Images per second of the built-in renderer at 64 x 64, by batch size and thread setting.

Renders 3-object i-CLEVR-style scenes at 64 x 64 (squashed frame, supersample 2 by default)
in batches of 1, 32 and 64 and prints the median images/s, next to Blender's speed (Cycles,
16 samples plus denoising: about 5 images/s at 64 x 64 on the 2-core development machine).

Each thread setting runs in a fresh process (OpenMP reads its settings at start-up), once on
an idle machine and once while another process keeps a core busy: with OpenMP's default
spin-waiting, torch's threads fight the neighbour for the cores and small operations can get
much slower. ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts) makes idle threads sleep
instead; one thread avoids the fight altogether.

    python benchmarks/render_speed.py                   # CPU, all settings, idle and busy
    python benchmarks/render_speed.py --device cuda --batch-sizes 1 64 256
    python benchmarks/render_speed.py --compare-to HEAD --rounds 3   # also time the committed renderer

With ``--compare-to REF`` the renderer of git revision REF (its ``src/``, extracted to a
temporary folder) is timed too, in children alternating with the working tree's, so both see
the same machine load; ``--rounds`` repeats that alternation and the medians pool all rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _versions import child_env, extract_src  # noqa: E402

BLENDER_IMAGES_PER_S = 5.0
SETTINGS = {
    "2 threads, OpenMP spin-wait": {"threads": 2, "env": {"OMP_WAIT_POLICY": "ACTIVE"}},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "1 thread": {"threads": 1, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
}


def _measure(args: argparse.Namespace) -> None:
    """Child process: time the renderer, print one JSON line {batch: [images/s per repeat]}."""
    import torch

    from clevr_diffusion.render import load_scenes, render

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    scenes = load_scenes(args.scenes)
    out = {}
    for batch in args.batch_sizes:
        rates = []
        for i in range(args.warmup + args.repeats):
            chunk = [scenes[(i * batch + j) % len(scenes)] for j in range(batch)]
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            render(chunk, 64, 64, "square", supersample=args.supersample, device=device, chunk=batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                rates.append(batch / (time.perf_counter() - start))
        out[batch] = rates
    print(json.dumps(out))


def _busy() -> subprocess.Popen[bytes]:
    """A neighbour that keeps one core busy (a pure-Python loop)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 64])
    parser.add_argument("--supersample", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--no-busy", action="store_true", help="skip the runs with a busy neighbour")
    parser.add_argument("--compare-to", metavar="GIT_REF", default=None, help="also time the renderer of this revision")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the versions, pooled")
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scenes", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenes is not None:  # child
        _measure(args)
        return 0

    from clevr_diffusion.render import sample_scenes, save_scenes

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenes.json"
        save_scenes(sample_scenes(64, seed=0, style="iclevr"), path)
        settings = ["cuda"] if args.device != "cpu" else args.settings
        conditions = ["idle"] if args.no_busy or args.device != "cpu" else ["idle", "busy neighbour"]
        versions = {"working tree": None}
        if args.compare_to is not None:
            old = Path(tmp) / "old"
            old.mkdir()
            versions[args.compare_to] = extract_src(args.compare_to, old)
        rates: dict[tuple[str, str, str], dict[str, list[float]]] = {}
        for _ in range(args.rounds):
            for name in settings:
                spec = SETTINGS.get(name, {"threads": os.cpu_count() or 1, "env": {}})
                for condition in conditions:
                    for version, src in versions.items():
                        result = _run_child(args, path, spec, condition, src)
                        pooled = rates.setdefault((version, name, condition), {})
                        for batch, values in result.items():
                            pooled.setdefault(batch, []).extend(values)
        rows = [(*key, {b: statistics.median(v) for b, v in pooled.items()}) for key, pooled in rates.items()]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; device {args.device}; 64 x 64, supersample {args.supersample}")
    runs = f"{args.rounds} x {args.repeats}" if args.rounds > 1 else str(args.repeats)
    print(f"images/s, median of {runs} batches (Blender: about {BLENDER_IMAGES_PER_S:g} images/s)")
    batches = "".join(f"{'batch ' + str(b):>11}" for b in args.batch_sizes)
    header = f"{'renderer':<14} {'setting':<36} {'machine':<15}{batches}"
    print(header + f"{'x Blender':>11}")
    for version, name, condition, medians in rows:
        values = [medians[str(b)] for b in args.batch_sizes]
        cells = "".join(f"{v:>11.1f}" for v in values)
        print(f"{version:<14} {name:<36} {condition:<15}{cells}{max(values) / BLENDER_IMAGES_PER_S:>11.1f}")
    return 0


def _run_child(
    args: argparse.Namespace, scenes: Path, spec: dict, condition: str, src: Path | None
) -> dict[str, list[float]]:
    """One child process timing the renderer (the working tree's, or the one under ``src``)."""
    neighbour = _busy() if condition != "idle" else None
    try:
        cmd = [sys.executable, __file__, "--scenes", str(scenes), "--threads", str(spec["threads"]),
               "--device", args.device, "--supersample", str(args.supersample),
               "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--batch-sizes", *map(str, args.batch_sizes)]  # fmt: skip
        result = subprocess.run(cmd, env=child_env(src, spec["env"]), capture_output=True, text=True, check=True)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    raise SystemExit(main())
