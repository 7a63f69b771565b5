"""Training and rendering speed on one device: the library's own step against a bare loop.

One command, one table (about 3 minutes on one GPU):

- ``library``: `DDPMTrainer.train` itself (data gathered on the device from a rendered,
  cached data set, noise, forward, loss, backward, clipping, fused AdamW, EMA), its speed
  read from the steady-state ``images_per_s`` / ``step_ms`` it logs over the last window;
- ``bare eager`` / ``bare compiled``: the same network in the shortest loop that trains it
  (one fixed batch already on the device, forward, loss, backward, AdamW step; no EMA, no
  clipping), timed over ``--steps`` steps with one synchronisation at the end; compiled with
  ``torch.compile`` (on by default on CUDA only: it takes minutes on a CPU);
- each at every ``--batch-sizes``, with the run's settings (bf16 autocast, TF32, channels-last
  and cuDNN autotuning on CUDA; float32 on the CPU, as `TrainerConfig`'s ``auto`` decides);
- achieved TFLOP/s from the network's FLOPs per image (forward + backward, counted once with
  ``torch.utils.flop_counter``), and its share of the card's dense bf16 peak when the card is
  known (or given with ``--peak-tflops``);
- the renderer's first pass over the data set: scenes drawn in worker processes (one per
  core), then every image rendered at ``--image-size`` on the device: scenes/s, images/s.

    python benchmarks/gpu_throughput.py --device cuda                          # the GPU table
    python benchmarks/gpu_throughput.py --device cpu --image-size 16 --base-channels 8 \\
        --batch-sizes 4 8 --steps 3 --scenes 8                                 # a smoke test on CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from clevr_diffusion import ConditionalUNet, DDPMTrainer, NoiseProcess, RenderedClevrDataset, TrainerConfig

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import platform_line  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; the first name
# contained in torch.cuda.get_device_name() wins, so the more specific names come first.
BF16_PEAK_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "H200": 989.4,
    "GH200": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10": 125.0,
}


@dataclass
class Row:
    """One measured configuration."""

    what: str
    batch_size: int
    images_per_s: float
    ms_per_step: float
    tflops: float | None = None
    peak_fraction: float | None = None


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    """The device's dense bf16 peak in TFLOP/s: ``override``, a known card's, or ``None``."""
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for card, peak in BF16_PEAK_TFLOPS.items() if card in name), None)


def build_model(args: argparse.Namespace) -> ConditionalUNet:
    torch.manual_seed(0)
    return ConditionalUNet(sample_size=args.image_size, base_channels=args.base_channels)


def flops_per_image(args: argparse.Namespace, device: torch.device) -> float:
    """FLOPs of one training image through the network, forward and backward."""
    model = build_model(args).to(device)
    batch = 2
    x = torch.randn(batch, 3, args.image_size, args.image_size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    labels = torch.zeros(batch, 24, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x, t, labels).square().mean().backward()
    return counter.get_total_flops() / batch


def trainer_config(args: argparse.Namespace, batch_size: int, output_dir: str, steps: int, compile_model: bool) -> TrainerConfig:
    """Settings of the library's run: a log line (and its one synchronisation) every ``--warmup`` steps."""
    return TrainerConfig(
        output_dir=output_dir, max_steps=args.warmup + steps, batch_size=batch_size, log_every=args.warmup,
        warmup_steps=1, checkpoint_every=0, sample_every=-1, compile=compile_model, cpu=args.device == "cpu",
    )  # fmt: skip


def library_step(args: argparse.Namespace, data: RenderedClevrDataset, batch_size: int, compile_model: bool) -> Row:
    """`DDPMTrainer.train`'s own speed as it logs it, over the windows after the first
    (``--warmup`` steps: compiling, cuDNN's autotuning)."""
    with tempfile.TemporaryDirectory() as folder:
        config = trainer_config(args, batch_size, folder, args.steps, compile_model)
        trainer = DDPMTrainer(build_model(args), data, NoiseProcess(), config)
        trainer.train()
        rows = trainer.metrics()
    windows = [(row["step"] - before["step"], row["step_ms"]) for before, row in zip(rows, rows[1:], strict=False)]
    steps = sum(n for n, _ in windows)
    ms_per_step = sum(n * ms for n, ms in windows) / steps
    name = "library" + (" compiled" if compile_model else "")
    return Row(name, batch_size, batch_size * 1000 / ms_per_step, ms_per_step)


def bare_step(args: argparse.Namespace, device: torch.device, batch_size: int, compile_model: bool) -> Row:
    """The shortest loop that trains the network, on one fixed batch, with the run's settings."""
    config = TrainerConfig(cpu=device.type == "cpu")
    bf16 = config.resolve_mixed_precision(device.type, device.type == "cuda" and torch.cuda.is_bf16_supported()) == "bf16"
    channels_last = config.use_channels_last(device.type)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    model = build_model(args).to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=config.use_fused_optimizer(device.type))
    noise = NoiseProcess()
    gen = torch.Generator(device).manual_seed(0)
    size = args.image_size
    x0 = torch.rand(batch_size, 3, size, size, device=device, generator=gen) * 2 - 1
    eps = torch.randn(x0.shape, device=device, generator=gen)
    t = torch.randint(0, noise.num_train_timesteps, (batch_size,), device=device, generator=gen)
    labels = (torch.rand(batch_size, 24, device=device, generator=gen) < 0.1).float()
    x_t = noise.add_noise(x0, eps, t).contiguous(memory_format=memory_format)
    forward = torch.compile(model) if compile_model else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            prediction = forward(x_t, t, labels)
        noise.training_loss(prediction, x0, eps, t).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize(device)
        times.append((time.perf_counter() - start) / args.steps)
    seconds = statistics.median(times)
    return Row("bare " + ("compiled" if compile_model else "eager"), batch_size, batch_size / seconds, 1000 * seconds)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_pass(args: argparse.Namespace, device: torch.device) -> tuple[RenderedClevrDataset, dict[str, float]]:
    """Draw the scenes in workers and render every image once: the data the library trains on."""
    data = RenderedClevrDataset(args.scenes, image_size=args.image_size, device=device, cache=True)
    start = time.perf_counter()
    data.draw_scenes()
    drawn = time.perf_counter()
    data.make_resident()
    synchronize(device)
    done = time.perf_counter()
    return data, {
        "scenes": args.scenes,
        "images": len(data),
        "scenes_per_s": args.scenes / (drawn - start),
        "render_images_per_s": len(data) / (done - drawn),
        "first_pass_images_per_s": len(data) / (done - start),
    }


def print_table(rows: list[Row], render: dict[str, float], args: argparse.Namespace, flops: float, peak: float | None) -> None:
    print(
        f"\nnetwork: ConditionalUNet base_channels={args.base_channels}, {args.image_size} x {args.image_size}, "
        f"{flops / 1e9:.2f} GFLOP a training image (forward + backward); bf16 peak: "
        + (f"{peak:.0f} TFLOP/s" if peak else "unknown (pass --peak-tflops)")
    )
    print(f"\n{'what':18} {'batch':>6} {'images/s':>10} {'ms/step':>9} {'TFLOP/s':>8} {'of peak':>8} {'vs bare':>8}")
    for row in rows:
        bare = next((r for r in rows if r.what == "bare " + ("compiled" if "compiled" in row.what else "eager") and r.batch_size == row.batch_size), None)
        ratio = f"{row.images_per_s / bare.images_per_s:7.2f}x" if bare and row.what.startswith("library") else ""
        share = f"{100 * row.peak_fraction:7.1f}%" if row.peak_fraction is not None else "     n/a"
        print(
            f"{row.what:18} {row.batch_size:6d} {row.images_per_s:10.1f} {row.ms_per_step:9.2f} "
            f"{row.tflops:8.2f} {share} {ratio:>8}"
        )
    print(
        f"\nrenderer, first pass at {args.image_size} x {args.image_size}: {render['scenes']:.0f} scenes drawn in "
        f"workers at {render['scenes_per_s']:.1f} scenes/s, {render['images']:.0f} images rendered at "
        f"{render['render_images_per_s']:.1f} images/s; {render['first_pass_images_per_s']:.1f} images/s in all"
    )


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--base-channels", type=int, default=32, help="network width (default: 32, the default network)")
    parser.add_argument("--steps", type=int, default=60, help="steps timed a window (default: 60)")
    parser.add_argument("--warmup", type=int, default=15, help="steps before timing (default: 15)")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows of the bare loop; median (default: 3)")
    parser.add_argument("--scenes", type=int, default=1000, help="scenes rendered for the library's data (default: 1000)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="also compiled rows (default: on CUDA only)"
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's bf16 peak, if not a known card")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here as JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    compiled = [False, True] if (device.type == "cuda" if args.compile is None else args.compile) else [False]

    print(platform_line(device))
    data, render = first_pass(args, device)
    print(f"rendered {render['images']:.0f} training images", flush=True)
    flops = flops_per_image(args, device)
    peak = peak_tflops(device, args.peak_tflops)
    rows = []
    for batch_size in args.batch_sizes:
        for compile_model in compiled:
            torch._dynamo.reset()
            rows.append(bare_step(args, device, batch_size, compile_model))
            print(f"  measured {rows[-1].what}, batch {batch_size}", flush=True)
        rows.append(library_step(args, data, batch_size, compile_model=False))
        print(f"  measured library, batch {batch_size}", flush=True)
    for row in rows:
        row.tflops = row.images_per_s * flops / 1e12
        row.peak_fraction = row.tflops / peak if peak else None
    print_table(rows, render, args, flops, peak)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"platform": platform_line(device), "flops_per_image": flops, "peak_tflops": peak, "renderer": render}
        args.json.write_text(json.dumps({**report, "rows": [asdict(r) for r in rows]}, indent=2))
    return rows


if __name__ == "__main__":
    main()
