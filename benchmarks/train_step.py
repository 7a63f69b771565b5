"""Time one training step and one sampling step of the ConditionalUNet.

Prints the median (and spread) over repeated steps, after warm-up, for each configuration in
one run, so figures are comparable on a shared, noisy machine.

    python benchmarks/train_step.py                       # default UNet, batch 16, 64 px, CPU
    python benchmarks/train_step.py --batch-size 64 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from clevr_diffusion import ConditionalUNet, NoiseProcess, encode_batch, load_conditions


def timed(fn, repeats: int, warmup: int, device: torch.device) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = ConditionalUNet(sample_size=args.image_size).to(device)
    noise = NoiseProcess()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, s = args.batch_size, args.image_size
    x0 = torch.rand(b, 3, s, s, device=device) * 2 - 1
    conditions = load_conditions("test")
    labels = encode_batch([conditions[i % len(conditions)] for i in range(b)]).to(device)

    def train_step() -> None:
        t = torch.randint(0, noise.num_train_timesteps, (b,), device=device)
        eps = torch.randn_like(x0)
        loss = noise.training_loss(model(noise.add_noise(x0, eps, t), t, labels), x0, eps, t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.inference_mode()
    def guided_sampling_step() -> None:
        # One denoising step for the 32 test.json images with guidance: a batch of 64.
        x = torch.randn(64, 3, s, s, device=device)
        model(x, torch.full((64,), 500, device=device), torch.cat([labels[:32].repeat(2, 1)[:32], torch.zeros(32, 24, device=device)]))

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, device {device}")
    print(f"model: default ConditionalUNet, {model.num_parameters / 1e6:.2f} M parameters, {s} x {s} px")
    rows = []
    model.train()
    rows.append((f"training step (batch {b})", b, timed(train_step, args.repeats, args.warmup, device)))
    model.eval()
    rows.append(("guided sampling step (32 images = batch 64)", 32, timed(guided_sampling_step, args.repeats, args.warmup, device)))
    print(f"{'what':48} {'median s':>9} {'min s':>8} {'max s':>8} {'images/s':>9}")
    for name, count, times in rows:
        median = statistics.median(times)
        print(f"{name:48} {median:9.3f} {min(times):8.3f} {max(times):8.3f} {count / median:9.1f}")


if __name__ == "__main__":
    main()
