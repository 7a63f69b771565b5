"""Seconds to draw the 32 images of test.json with each sampling preset.

Draws the 32 label sets of the benchmark's ``test.json`` in one batch with each preset
(``ddpm-1000``, ``ddim-50``, ``dpm++-20``, ``unipc-10``), with classifier-free guidance (scale 2
by default: 2 x 32 = 64 rows per forward pass), and prints the median wall time over repeated
draws, images per second and the speed-up over ``ddpm-1000``; a bar plot goes to ``--plot``.

Latency does not depend on the weights, so without ``--model`` a freshly initialised default
``ConditionalUNet`` (64 x 64, T = 1000) is timed. Each preset is warmed up first with a short
draw of the same batch shape (with ``--compile`` that draw pays the compilation). ``ddpm-1000``
is repeated at most ``--ddpm-repeats`` times: it takes minutes on a CPU. When it is not timed,
its time is estimated as 1000 x the median time per step of the measured presets, and the
speed-ups are marked ``~``.

    python benchmarks/sampling_latency.py                                   # CPU, all presets
    python benchmarks/sampling_latency.py --threads 1 --presets ddim-50 dpm++-20 unipc-10
    python benchmarks/sampling_latency.py --device cuda --compile --model runs/base/model
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from clevr_diffusion import ConditionalUNet, DDPMSampler, NoiseConfig, load_conditions
from clevr_diffusion.diffusion.schedulers import SAMPLING_PRESETS, parse_preset
from clevr_diffusion.utils.plotting import plot_bars

BASELINE = "ddpm-1000"


@dataclass
class Timing:
    """The measured draws of one preset."""

    preset: str
    steps: int
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def build_sampler(args: argparse.Namespace) -> DDPMSampler:
    """The sampler to time: a saved model, or a fresh default UNet with the default schedule."""
    if args.model is not None:
        return DDPMSampler.from_pretrained(args.model, device=args.device, compile=args.compile)
    torch.manual_seed(0)
    return DDPMSampler(ConditionalUNet(), NoiseConfig(), device=args.device, compile=args.compile)


def draw(sampler: DDPMSampler, labels: list[list[str]], preset: str, guidance: float, steps: int | None = None) -> float:
    """Seconds for one draw of every label set (the images come back to the CPU, which syncs CUDA)."""
    start = time.perf_counter()
    sampler.sample(labels, preset=preset, num_inference_steps=steps, guidance_scale=guidance, seed=0, progress=False)
    return time.perf_counter() - start


def time_preset(sampler: DDPMSampler, labels: list[list[str]], preset: str, args: argparse.Namespace) -> Timing:
    """Warm up with a 2-step draw of the same shapes, then time ``repeats`` full draws."""
    _, steps = sampler.resolve_settings(preset=preset)[:2]
    draw(sampler, labels, preset, args.guidance, steps=min(2, steps))
    repeats = min(args.repeats, args.ddpm_repeats) if preset == BASELINE else args.repeats
    seconds = [draw(sampler, labels, preset, args.guidance) for _ in range(max(repeats, 1))]
    return Timing(preset, steps, seconds)


def baseline_seconds(timings: list[Timing], steps: int) -> tuple[float, bool]:
    """The ddpm-1000 time: measured, or (True) estimated from the median per-step time."""
    for t in timings:
        if t.preset == BASELINE:
            return t.median, False
    return steps * statistics.median(t.median / t.steps for t in timings), True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a model folder (default: a fresh default UNet)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", nargs="+", default=list(SAMPLING_PRESETS), choices=list(SAMPLING_PRESETS))
    parser.add_argument("--guidance", type=float, default=2.0, help="guidance scale; 1 halves the batch (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed draws per preset; the median is shown")
    parser.add_argument("--ddpm-repeats", type=int, default=1, help="at most this many draws of ddpm-1000")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="sample through torch.compile")
    parser.add_argument("--plot", type=Path, default=Path("/tmp/sampling_latency.png"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name in args.presets:
        parse_preset(name)

    sampler = build_sampler(args)
    labels = load_conditions("test")
    params = sum(p.numel() for p in sampler.model.parameters())
    size = sampler.model.config.sample_size
    rows = 2 * len(labels) if args.guidance != 1.0 else len(labels)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"device {sampler.device}{', compiled' if args.compile else ''}"
    )
    print(
        f"model: {args.model or 'fresh default ConditionalUNet'}, {params / 1e6:.2f} M parameters, {size} x {size} px, "
        f"T = {sampler.noise_config.num_train_timesteps}; {len(labels)} test.json images, guidance {args.guidance:g} "
        f"({rows} rows per forward)"
    )
    timings = [time_preset(sampler, labels, name, args) for name in args.presets]

    base_steps = sampler.resolve_settings(preset=BASELINE)[1]
    base, estimated = baseline_seconds(timings, base_steps)
    mark = "~" if estimated else ""
    speedups = [f"{mark}{base / t.median:.1f}x" for t in timings]
    print(f"{'preset':<10} {'steps':>6} {'seconds':>9} {'min s':>8} {'max s':>8} {'images/s':>9} {'speed-up':>9} {'draws':>6}")
    for t, speedup in zip(timings, speedups, strict=True):
        print(
            f"{t.preset:<10} {t.steps:>6} {t.median:>9.2f} {min(t.seconds):>8.2f} {max(t.seconds):>8.2f} "
            f"{len(labels) / t.median:>9.2f} {speedup:>9} {len(t.seconds):>6}"
        )
    if estimated:
        print(f"~ {BASELINE} not timed: speed-ups against an estimated {base:.1f} s ({base_steps} x the median s/step)")
    title = f"seconds to draw the {len(labels)} test.json images, guidance {args.guidance:g}, {sampler.device}"
    bars = {f"{t.preset} ({speedup})": t.median for t, speedup in zip(timings, speedups, strict=True)}
    print(f"plot: {plot_bars(bars, args.plot, title, 's')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
