"""Training throughput (images/s) of our ConditionalUNet against diffusers' UNet2DModel.

One training step is forward + MSE loss + backward + AdamW step on the same fixed batch of
64 x 64 images, labels, timesteps and noise; the table gives the median over ``--repeats``
steps after ``--warmup`` steps, for every model in one run, so the figures are comparable on
a shared, noisy machine. The models:

- ``ours-default``: the default `ConditionalUNet` (base 32 channels, 12.7 M parameters);
- ``ours-base64``: the same with ``base_channels=64``;
- ``diffusers-iclevr``: the ``UNet2DModel`` public i-CLEVR solutions train (block widths
  128, 128, 256, 256, 512, 512, attention at the fifth level, about 114 M parameters) with a
  ``Linear(24 -> 512)`` from the multi-hot label to its class embedding;
- ``diffusers-small``: a ``UNet2DModel`` of that layout whose widths were searched for about
  our default's parameter count.

A bar plot of images/s goes to ``--plot``. ``--options`` adds a table of the CPU-side
options on ``ours-default``: channels-last memory layout and (with a C++ compiler)
``torch.compile``.

    python benchmarks/train_throughput.py --threads 1 --batch-size 8 --repeats 3 --warmup 1
    python benchmarks/train_throughput.py --device cuda --batch-size 64 --mixed-precision bf16
    python benchmarks/train_throughput.py --models ours-default --options
    python benchmarks/train_throughput.py --models ours-default --compare-to HEAD --rounds 3

``--compare-to REF`` times the library of git revision REF beside the working tree's, in child
processes that alternate between the two (``--rounds`` times), and prints both with the ratio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DModel
from torch import nn

from clevr_diffusion import ConditionalUNet, NoiseProcess, encode_batch, load_conditions
from clevr_diffusion.utils.plotting import plot_bars

IMAGE_SIZE = 64
NUM_LABELS = 24
ICLEVR_DOWN = ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D")
ICLEVR_UP = ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4
ICLEVR_WIDTHS = (128, 128, 256, 256, 512, 512)
MODELS = ("ours-default", "ours-base64", "diffusers-iclevr", "diffusers-small")


class LabelledUNet2D(nn.Module):
    """diffusers' ``UNet2DModel`` conditioned on a multi-hot label, as i-CLEVR solutions do.

    The label goes through a linear layer to the time-embedding width and is added to the
    time embedding (``class_embed_type="identity"``).

    Args:
        block_out_channels: Widths of the six levels (multiples of 32, GroupNorm's groups).
    """

    def __init__(self, block_out_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.unet = UNet2DModel(
            sample_size=IMAGE_SIZE,
            in_channels=3,
            out_channels=3,
            layers_per_block=2,
            block_out_channels=block_out_channels,
            down_block_types=ICLEVR_DOWN,
            up_block_types=ICLEVR_UP,
            class_embed_type="identity",
        )
        self.label_projection = nn.Linear(NUM_LABELS, 4 * block_out_channels[0])  # the time-embedding width

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) noisy images, (B,) timesteps, (B, 24) labels -> (B, 3, H, W) prediction."""
        return self.unet(x, t, class_labels=self.label_projection(labels)).sample


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_widths(target: int) -> tuple[int, ...]:
    """Level widths (a, a, b, b, c, c) of the i-CLEVR layout with the parameter count nearest
    ``target``.

    a, b, c are multiples of 32 (GroupNorm's 32 groups) and grow by at most 2x per pair, as
    the i-CLEVR widths do, so the match keeps that model's shape rather than piling all
    parameters into the cheap low-resolution levels. Built on the meta device: no memory used.
    """
    candidates = [
        (a, a, b, b, c, c)
        for a, b, c in itertools.product(range(32, 129, 32), range(32, 257, 32), range(32, 513, 32))
        if a <= b <= 2 * a and b <= c <= 2 * b
    ]

    def count(widths: tuple[int, ...]) -> int:
        with torch.device("meta"):
            return count_parameters(LabelledUNet2D(widths))

    return min(candidates, key=lambda widths: abs(count(widths) - target))


def build(name: str) -> nn.Module:
    """One of `MODELS`, freshly initialised (seed 0)."""
    torch.manual_seed(0)
    if name == "ours-default":
        return ConditionalUNet(sample_size=IMAGE_SIZE)
    if name == "ours-base64":
        return ConditionalUNet(sample_size=IMAGE_SIZE, base_channels=64)
    if name == "diffusers-iclevr":
        return LabelledUNet2D(ICLEVR_WIDTHS)
    if name == "diffusers-small":
        return LabelledUNet2D(matched_widths(count_parameters(ConditionalUNet(sample_size=IMAGE_SIZE))))
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def describe(name: str, model: nn.Module) -> str:
    if isinstance(model, LabelledUNet2D):
        return f"{name} (block_out_channels {tuple(model.unet.config.block_out_channels)})"
    return f"{name} (base_channels {model.config.base_channels})"  # type: ignore[union-attr]


@dataclass
class Settings:
    """How each step runs."""

    device: torch.device
    batch_size: int
    mixed_precision: str
    compile: bool
    channels_last: bool


@dataclass
class Result:
    """Timings of one configuration."""

    name: str
    parameters: int
    times: list[float]
    warmup_s: float

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


def make_step(model: nn.Module, settings: Settings) -> Callable[[], None]:
    """A closure running one training step on a fixed batch (all inputs drawn once)."""
    device, b = settings.device, settings.batch_size
    gen = torch.Generator().manual_seed(0)
    noise_process = NoiseProcess()
    x0 = (torch.rand(b, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen) * 2 - 1).to(device)
    eps = torch.randn(x0.shape, generator=gen).to(device)
    t = torch.randint(0, noise_process.num_train_timesteps, (b,), generator=gen).to(device)
    conditions = load_conditions("test")
    labels = encode_batch([conditions[i % len(conditions)] for i in range(b)]).to(device)
    x_t = noise_process.add_noise(x0, eps, t)
    model.to(device).train()
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
        x_t = x_t.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True if device.type == "cuda" else None)
    forward = torch.compile(model) if settings.compile else model
    autocast = settings.mixed_precision == "bf16"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            prediction = forward(x_t, t, labels)
        loss = noise_process.training_loss(prediction, x0, eps, t)  # float32, as in the trainer
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(name: str, model: nn.Module, settings: Settings, repeats: int, warmup: int) -> Result:
    """Time ``warmup`` then ``repeats`` steps; CUDA is synchronised around each step."""
    step = make_step(model, settings)
    cuda = settings.device.type == "cuda"
    times, started, warmup_s = [], time.perf_counter(), 0.0
    for i in range(warmup + repeats):
        if i == warmup:
            warmup_s = time.perf_counter() - started  # includes compiling with --compile
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return Result(name, count_parameters(model), times, warmup_s)


def print_table(title: str, results: list[Result], batch_size: int, reference: str = "ours-default") -> None:
    """Model, parameters (M), median images/s, s/step and throughput relative to ``reference``
    (the first row when ``reference`` was not measured)."""
    base = next((r for r in results if r.name == reference), results[0])
    print(f"\n{title} (ratio: images/s relative to {base.name})")
    print(f"{'model':32} {'params (M)':>10} {'images/s':>9} {'s/step':>8} {'min s':>8} {'max s':>8} {'ratio':>7} {'warm-up s':>9}")
    reference_s = base.seconds
    for r in results:
        print(
            f"{r.name:32} {r.parameters / 1e6:10.2f} {batch_size / r.seconds:9.2f} {r.seconds:8.3f} "
            f"{min(r.times):8.3f} {max(r.times):8.3f} {reference_s / r.seconds:6.2f}x {r.warmup_s:9.1f}"
        )


def platform_line(device: torch.device) -> str:
    if device.type == "cuda":
        chip = torch.cuda.get_device_name(device)
    else:
        chip = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    chip = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return f"platform: {chip}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"


def option_results(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """``ours-default`` with channels-last off/on and, with a C++ compiler, compile off/on."""
    compiles = [False, True] if (device.type == "cuda" or shutil.which("cc")) else [False]
    if compiles == [False]:
        print("(no C++ compiler: torch.compile rows skipped)")
    results = []
    for compiled, nhwc in itertools.product(compiles, [False, True]):
        torch._dynamo.reset()
        settings = Settings(device, args.batch_size, args.mixed_precision, compiled, nhwc)
        name = "default" + (" +compile" if compiled else "") + (" +channels_last" if nhwc else "")
        results.append(measure(name, build("ours-default"), settings, args.repeats, max(args.warmup, 2 if compiled else 0)))
        print(f"  measured {name}", flush=True)
    return results


def compare_versions(args: argparse.Namespace, device: torch.device) -> None:
    """Time ``--models`` with the working tree's library and with ``--compare-to``'s, alternating."""
    from _versions import child_env, extract_src

    forwarded = [
        "--child", "--device", args.device, "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
        "--warmup", str(args.warmup), "--mixed-precision", args.mixed_precision, "--models", *args.models,
    ]  # fmt: skip
    forwarded += ["--threads", str(args.threads)] if args.threads else []
    forwarded += ["--compile"] if args.compile else []
    forwarded += ["--channels-last"] if args.channels_last else []
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"working tree": None, args.compare_to: extract_src(args.compare_to, Path(tmp))}
        for round_ in range(args.rounds):
            for version, src in versions.items():
                out = subprocess.run(
                    [sys.executable, __file__, *forwarded], env=child_env(src), capture_output=True, text=True, check=True
                )
                for name, values in json.loads(out.stdout.strip().splitlines()[-1]).items():
                    times.setdefault((name, version), []).extend(values)
                print(f"  round {round_ + 1}: measured {version}", flush=True)
    print(platform_line(device))
    print(
        f"batch {args.batch_size}, mixed precision {args.mixed_precision}, compile {args.compile}, channels_last "
        f"{args.channels_last}; median of {args.rounds} x {args.repeats} steps, versions alternating"
    )
    print(f"{'model':16} {'library':>14} {'images/s':>9} {'s/step':>8} {'min s':>8} {'max s':>8} {'ratio':>7}")
    for name in args.models:
        old = statistics.median(times[(name, args.compare_to)])
        for version in (args.compare_to, "working tree"):
            values = times[(name, version)]
            median = statistics.median(values)
            print(
                f"{name:16} {version:>14} {args.batch_size / median:9.2f} {median:8.3f} {min(values):8.3f} "
                f"{max(values):8.3f} {old / median:6.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=None, help="default: 16 on CPU, 64 on CUDA")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big-repeats", type=int, default=None, help="repeats for diffusers-iclevr (default: --repeats)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default="no")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (warm-up includes compiling)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--options", action="store_true", help="also compare channels-last / compile on ours-default")
    parser.add_argument("--plot", type=Path, default=Path("/tmp/train_throughput.png"))
    parser.add_argument("--compare-to", metavar="GIT_REF", default=None, help="also time the library of this revision")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two versions (--compare-to)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch_size = args.batch_size or (64 if device.type == "cuda" else 16)
    if args.child:
        settings = Settings(device, args.batch_size, args.mixed_precision, args.compile, args.channels_last)
        print(json.dumps({name: measure(name, build(name), settings, args.repeats, args.warmup).times for name in args.models}))
        return
    if args.compare_to:
        compare_versions(args, device)
        return

    print(platform_line(device))
    print(
        f"batch {args.batch_size} x 3 x {IMAGE_SIZE} x {IMAGE_SIZE}, forward + loss + backward + AdamW step, "
        f"median of {args.repeats} after {args.warmup} warm-up; mixed precision {args.mixed_precision}, "
        f"compile {args.compile}, channels_last {args.channels_last}"
    )
    settings = Settings(device, args.batch_size, args.mixed_precision, args.compile, args.channels_last)
    results = []
    for name in args.models:
        model = build(name)
        print(f"{describe(name, model)}: {count_parameters(model):,} parameters", flush=True)
        repeats = args.big_repeats if name == "diffusers-iclevr" and args.big_repeats else args.repeats
        results.append(measure(name, model, settings, repeats, args.warmup))
        del model
    print_table("training throughput", results, args.batch_size)
    rates = {r.name: args.batch_size / r.seconds for r in results}
    print(f"plot: {plot_bars(rates, args.plot, f'training images/s, batch {args.batch_size}, {device}', 'img/s')}")
    if args.options:
        print_table("options on ours-default", option_results(args, device), args.batch_size, reference="default")


if __name__ == "__main__":
    main()
