"""DDPMSampler: draw images for label sets, with DDIM or DPM-Solver++, guidance and seeds.

Run from the repository root (a few seconds on a CPU):

    python examples/sampler.py                           # an untrained tiny model: noise-like images
    python examples/sampler.py --model demo/run/model    # a trained model, e.g. from `clevr-diffusion demo`
    python examples/sampler.py --out samples/            # keep the PNGs (default: a temporary folder)

Without ``--model`` it saves an untrained tiny ConditionalUNet as a sampler folder and loads
it back, so the pictures are meaningless but every step is the real one. It prints the
shapes of what it draws, checks that a seed reproduces its images, and writes a grid, one
PNG per image and a denoising row into the output folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from clevr_diffusion import ConditionalUNet, DDPMSampler, NoiseConfig, SamplingConfig, load_conditions


def tiny_sampler_folder(folder: Path) -> Path:
    """Save an untrained tiny model with its noise schedule and sampling defaults."""
    torch.manual_seed(0)
    model = ConditionalUNet(base_channels=16, channel_mults=(1, 2), attention_stages=(1,), sample_size=16)
    sampler = DDPMSampler(model, NoiseConfig(beta_schedule="squaredcos_cap_v2"), SamplingConfig(method="ddim"))
    return sampler.save_pretrained(folder)


def run(model_dir: Path | None, out: Path) -> None:
    if model_dir is None:
        model_dir = tiny_sampler_folder(out / "tiny-model")
        print("saved an untrained sampler folder:", sorted(p.name for p in model_dir.iterdir()))
    sampler = DDPMSampler.from_pretrained(model_dir)  # EMA weights when the folder has them
    print(f"model: {sampler.model.num_parameters:,} parameters, {sampler.model.config.sample_size} px, "
          f"default method {sampler.config.method!r}")

    labels = [["red sphere"], ["cyan cube", "gray cylinder"], ["red sphere", "cyan cylinder", "cyan cube"]]

    # DDIM, 20 steps, a fixed seed: the same seed gives the same images.
    first = sampler.sample(labels, method="ddim", num_inference_steps=20, seed=0, progress=False)
    again = sampler.sample(labels, method="ddim", num_inference_steps=20, seed=0, progress=False)
    other = sampler.sample(labels, method="ddim", num_inference_steps=20, seed=1, progress=False)
    print("ddim images:", tuple(first.images.shape), "in",
          f"[{first.images.min().item():.2f}, {first.images.max().item():.2f}]")
    print("same seed, same images:", torch.equal(first.images, again.images),
          "| another seed differs:", not torch.equal(first.images, other.images))
    print("labels as understood:", first.labels)

    # DPM-Solver++ (20 steps by default) with classifier-free guidance.
    guided = sampler.sample(labels, method="dpm++", guidance_scale=3.0, seed=0, progress=False)
    print("dpm++ with guidance 3:", tuple(guided.images.shape))

    # A whole condition file: the benchmark's test.json, a grid and one PNG per image.
    test = sampler.sample(load_conditions("test"), method="dpm++", num_inference_steps=10, seed=0, progress=False)
    grid = test.save_grid(out / "test_grid.png", nrow=8, upscale=2)
    files = test.save(out / "images" / "test")
    print(f"test.json: {len(files)} images -> {grid.name} and images/test/0.png ... {files[-1].name}")

    # The denoising process of one label set, from pure noise to the image.
    trajectory = sampler.sample([labels[2]], method="ddim", num_inference_steps=20, seed=0,
                                return_trajectory=True, trajectory_frames=8, progress=False)
    print("trajectory:", tuple(trajectory.trajectory.shape), "frames after steps", trajectory.frame_steps)
    print("denoising row:", trajectory.save_trajectory(out / "denoising.png", upscale=2).name)
    print("written:", sorted(str(p.relative_to(out)) for p in out.iterdir()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a model folder (default: an untrained tiny model)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        run(args.model, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args.model, Path(tmp))


if __name__ == "__main__":
    main()
