"""Training images/s of every variant of an ablation plan, timed side by side.

An ablation's own timings (``accuracy_time.png``) come from its runs, which are hours apart on
a shared machine. This script times one optimiser step of each variant (its network, noise
process, batch size and image size; random images and labels) in interleaved rounds, so every
variant sees the same machine load, and prints the median images/s and the ratio to the
baseline: the figure that turns accuracy per image into accuracy per second.

    python benchmarks/ablation_speed.py --plan examples/ablations/cpu_32px.yaml
    python benchmarks/ablation_speed.py --plan examples/ablations/gpu_64px.yaml --device cuda --json speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch

from clevr_diffusion import ConditionalUNet, NoiseProcess
from clevr_diffusion.ablation import load_plan
from clevr_diffusion.training.recipe import Recipe


def make_step(recipe: Recipe, device: torch.device) -> Any:
    """One training step of the recipe on fixed random data (float32, the recipe's batch)."""
    torch.manual_seed(0)
    model = ConditionalUNet(recipe.unet).to(device)
    noise = NoiseProcess(recipe.noise)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.trainer.learning_rate)
    b, s = recipe.trainer.batch_size, recipe.image_size
    x0 = torch.rand(b, 3, s, s, device=device) * 2 - 1
    labels = torch.zeros(b, recipe.unet.num_labels, device=device)
    labels[torch.arange(b), torch.arange(b) % recipe.unet.num_labels] = 1

    def step() -> None:
        t = torch.randint(0, noise.num_train_timesteps, (b,), device=device)
        eps = torch.randn_like(x0)
        loss = noise.training_loss(model(noise.add_noise(x0, eps, t), t, labels), x0, eps, t, recipe.trainer.snr_gamma)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", required=True, help="an ablation plan (.yaml or .json)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round (default: 3)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    recipes = load_plan(args.plan).recipes()
    steps = {name: make_step(recipe, device) for name, recipe in recipes.items()}
    for step in steps.values():  # warm-up: allocator, kernels, autotuning
        step()
    times: dict[str, list[float]] = {name: [] for name in recipes}
    for _ in range(args.rounds):
        for name, step in steps.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    rates = {name: recipes[name].trainer.batch_size / statistics.median(t) for name, t in times.items()}
    base = next(iter(rates.values()))
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {device}")
    print("| variant | parameters | images/s (median) | vs first |")
    print("| --- | --- | --- | --- |")
    out = {}
    for name, rate in rates.items():
        params = ConditionalUNet(recipes[name].unet).num_parameters
        print(f"| {name} | {params / 1e6:.2f} M | {rate:.1f} | {rate / base:.2f}x |")
        out[name] = {"images_per_s": rate, "parameters": params, "step_seconds": times[name]}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=2)
    return out


if __name__ == "__main__":
    main()
