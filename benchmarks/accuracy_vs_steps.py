"""Accuracy of a trained model on test.json and new_test.json against sampling steps and guidance.

For every solver, step count and classifier-free guidance scale, draws the 32 images of each
condition file (``--seeds`` times, from seeds 0, 1, ...), scores them with an evaluator (the
bundled one by default, ``--evaluator checkpoint.pth`` for the official one) and prints the
mean label accuracy (and its spread over seeds), the seconds per 32 images and a PNG plot of
accuracy against steps, one line per solver and guidance scale, for each file. Images of a
model trained below 64 x 64 are enlarged (bilinear) to the evaluator's 64 x 64.

    python benchmarks/accuracy_vs_steps.py --model runs/clevr-ddpm/model
    python benchmarks/accuracy_vs_steps.py --model user/repo --methods ddim,dpm++ \\
        --steps 10,20,50 --guidance 1,2,4 --seeds 3 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from clevr_diffusion import DDPMSampler, load_conditions
from clevr_diffusion.cli.options import model_location
from clevr_diffusion.evaluation.evaluate import load_evaluator
from clevr_diffusion.utils.images import as_saved_png
from clevr_diffusion.utils.plotting import plot_lines

FILES = ("test", "new_test")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=model_location, required=True, help="model folder or Hub repo id")
    parser.add_argument("--evaluator", default="bundled", help="bundled, a .safetensors file or checkpoint.pth")
    parser.add_argument("--trust-checkpoint", action="store_true", help="load an official checkpoint.pth with pickle")
    parser.add_argument("--methods", default="ddim,dpm++", help="comma-separated solvers (default: ddim,dpm++)")
    parser.add_argument("--steps", type=_ints, default=[5, 10, 20, 50], help="comma-separated step counts")
    parser.add_argument("--guidance", type=_floats, default=[1.0, 2.0, 4.0], help="comma-separated guidance scales")
    parser.add_argument("--seeds", type=int, default=1, help="draws per setting (default: 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--plot", type=Path, default=Path("/tmp/accuracy_vs_steps.png"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sampler = DDPMSampler.from_pretrained(args.model, device=device)
    evaluator = load_evaluator(args.evaluator, device=device, trusted=args.trust_checkpoint)
    conditions = {name: load_conditions(name) for name in FILES}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"model: {args.model} | evaluator: {evaluator.kind} | {name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads | {args.seeds} seed(s) per setting")  # fmt: skip

    header = f"{'method':<7} {'steps':>5} {'guidance':>8} | {'test':>15} | {'new_test':>15} | {'s / 32 images':>13}"
    print(header)
    print("-" * len(header))
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {f: {} for f in FILES}
    for method in args.methods.split(","):
        for guidance in args.guidance:
            for steps in args.steps:
                cells, seconds = [], []
                for file in FILES:
                    scores = []
                    for seed in range(args.seeds):
                        start = time.perf_counter()
                        out = sampler.sample(conditions[file], method=method, num_inference_steps=steps,
                                             guidance_scale=guidance, seed=seed, progress=False)  # fmt: skip
                        seconds.append(time.perf_counter() - start)
                        labels = sampler.vocabulary.encode_batch(out.labels)
                        images = out.images
                        if images.shape[-1] != 64:
                            # The evaluator judges 64 x 64: a smaller model's images are enlarged.
                            images = torch.nn.functional.interpolate(images, size=(64, 64), mode="bilinear").clamp(-1, 1)
                        images = as_saved_png(images).to(device)  # scored as saved PNGs are: 8 bits
                        scores.append(evaluator.accuracy(images, labels).label_accuracy)
                    mean = statistics.fmean(scores)
                    spread = f" +-{statistics.stdev(scores):.3f}" if len(scores) > 1 else ""
                    cells.append(f"{mean:.3f}{spread}")
                    xs, ys = curves[file].setdefault(f"{method} w={guidance:g}", ([], []))
                    xs.append(steps)
                    ys.append(mean)
                print(f"{method:<7} {steps:>5} {guidance:>8g} | {cells[0]:>15} | {cells[1]:>15} | "
                      f"{statistics.median(seconds):>13.2f}", flush=True)  # fmt: skip
    for file in FILES:
        path = args.plot.with_name(f"{args.plot.stem}_{file}{args.plot.suffix}")
        plot_lines(curves[file], path, f"{file}.json: label accuracy ({evaluator.kind} evaluator)",
                   "sampling steps", "accuracy", log_x=True, y_range=(0.0, 1.0))  # fmt: skip
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
