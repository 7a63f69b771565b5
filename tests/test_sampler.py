"""DDPMSampler: methods, guidance, determinism, trajectories, outputs and saved folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from clevr_diffusion import OBJECT_NAMES, DDPMSampler, NoiseConfig, SamplingConfig, load_conditions
from clevr_diffusion.diffusion.schedulers import build_scheduler

LABELS = [["red sphere"], ["cyan cube", "gray cylinder"], ["blue sphere", "green cube", "yellow cylinder"]]


@pytest.fixture
def sampler(tiny_unet) -> DDPMSampler:  # type: ignore[no-untyped-def]
    for p in tiny_unet.parameters():  # non-trivial weights so outputs depend on labels
        torch.nn.init.normal_(p, std=0.05)
    return DDPMSampler(tiny_unet, NoiseConfig(num_train_timesteps=100))


@pytest.mark.parametrize(("method", "steps"), [("ddpm", None), ("ddim", 10), ("dpm++", 8)])
def test_methods_give_images_in_range(sampler: DDPMSampler, method: str, steps: int | None) -> None:
    out = sampler.sample(LABELS, method=method, num_inference_steps=steps, seed=0, progress=False)
    assert out.images.shape == (3, 3, 16, 16)
    assert out.images.dtype == torch.float32
    assert out.images.min() >= -1 and out.images.max() <= 1
    assert out.labels == LABELS


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpm++"])
def test_same_seed_same_images_other_seed_other_images(sampler: DDPMSampler, method: str) -> None:
    kwargs = dict(method=method, num_inference_steps=10, progress=False)
    a = sampler.sample(LABELS, seed=3, **kwargs).images
    b = sampler.sample(LABELS, generator=torch.Generator().manual_seed(3), **kwargs).images
    c = sampler.sample(LABELS, seed=4, **kwargs).images
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_guidance_uses_one_batched_forward_and_changes_images(sampler: DDPMSampler) -> None:
    batches: list[int] = []
    hook = sampler.model.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    plain = sampler.sample(LABELS, method="ddim", num_inference_steps=4, guidance_scale=1.0, seed=0, progress=False)
    assert batches == [3] * 4
    batches.clear()
    guided = sampler.sample(LABELS, method="ddim", num_inference_steps=4, guidance_scale=3.0, seed=0, progress=False)
    hook.remove()
    assert batches == [6] * 4  # conditional and unconditional halves together
    assert not torch.allclose(plain.images, guided.images)


def test_guidance_formula(sampler: DDPMSampler) -> None:
    """With DDIM (deterministic) one step, the guided update equals the update of the mixed output."""
    model = sampler.model
    scale = 2.5
    scheduler = build_scheduler("ddim", sampler.noise_config.scheduler_config())
    scheduler.set_timesteps(1)
    t = scheduler.timesteps[0]
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = sampler.vocabulary.encode_batch([["red cube"]])
    with torch.no_grad():
        cond = model(x, t.expand(1), labels)
        uncond = model(x, t.expand(1), torch.zeros_like(labels))
    expected = scheduler.step(uncond + scale * (cond - uncond), t, x).prev_sample.clamp(-1, 1)
    got = sampler.sample([["red cube"]], method="ddim", num_inference_steps=1, guidance_scale=scale, seed=0, progress=False)
    torch.testing.assert_close(got.images, expected, atol=1e-5, rtol=1e-5)


def test_tensor_labels_and_batching(sampler: DDPMSampler) -> None:
    vectors = sampler.vocabulary.encode_batch(LABELS)
    a = sampler.sample(vectors, method="ddim", num_inference_steps=3, seed=1, progress=False)
    assert a.labels == [sorted(x, key=sampler.vocabulary.index) for x in LABELS]
    sampler.config = SamplingConfig(batch_size=2)
    b = sampler.sample(LABELS, method="ddim", num_inference_steps=3, seed=1, progress=False)
    assert b.images.shape == a.images.shape


def test_trajectory_runs_from_noise_to_image(sampler: DDPMSampler, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = sampler.sample(LABELS, method="ddpm", num_inference_steps=20, seed=0, return_trajectory=True, trajectory_frames=8, progress=False)
    assert out.trajectory is not None and out.trajectory.shape == (8, 3, 3, 16, 16)
    assert out.frame_steps[0] == 0 and out.frame_steps[-1] == 20 and len(out.frame_steps) == 8
    assert torch.equal(out.trajectory[-1], out.images)
    # Frame 0 is the initial Gaussian noise: clipped at +-1 but far from an image's statistics.
    first = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert torch.equal(out.trajectory[0], first)
    row = Image.open(out.save_trajectory(tmp_path / "row.png", index=1))
    assert row.size == (8 * 18 + 2, 20)


def test_outputs_as_pil_png_and_grid(sampler: DDPMSampler, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = sampler.sample(load_conditions("test")[:10], method="ddim", num_inference_steps=2, seed=0, progress=False)
    pil = out.to_pil()
    assert len(pil) == 10 and pil[0].size == (16, 16) and pil[0].mode == "RGB"
    files = out.save(tmp_path / "images")
    assert [f.name for f in files] == [f"{i}.png" for i in range(10)]
    reread = torch.from_numpy(np.array(Image.open(files[4]))).permute(2, 0, 1).float()
    expected = ((out.images[4].clamp(-1, 1) + 1) * 127.5).round()
    assert torch.equal(reread, expected)
    grid = Image.open(out.save_grid(tmp_path / "grid.png", nrow=8))
    assert grid.size == (8 * 18 + 2, 2 * 18 + 2)


def test_bad_requests_fail_clearly(sampler: DDPMSampler) -> None:
    with pytest.raises(ValueError, match="exceeds the 100 diffusion steps"):
        sampler.sample(LABELS, method="ddpm", num_inference_steps=1000, progress=False)
    with pytest.raises(ValueError, match="sampling method"):
        sampler.sample(LABELS, method="euler", progress=False)
    with pytest.raises(ValueError, match="pink cube"):
        sampler.sample([["pink cube"]], progress=False)
    with pytest.raises(ValueError, match="not a string"):
        sampler.sample("red cube", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label tensor"):
        sampler.sample(torch.zeros(2, 5), progress=False)


def test_save_and_load_pretrained_folder(sampler: DDPMSampler, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sampler.config = SamplingConfig(method="ddim", num_inference_steps=5, guidance_scale=2.0)
    sampler.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"config.json", "model.safetensors", "scheduler_config.json", "sampler_config.json", "README.md"}
    # The scheduler config is diffusers' own format.
    scheduler = DDPMScheduler.from_pretrained(tmp_path)
    assert scheduler.config.num_train_timesteps == 100
    assert json.loads((tmp_path / "sampler_config.json").read_text())["vocabulary"] == list(OBJECT_NAMES)
    loaded = DDPMSampler.from_pretrained(tmp_path)
    assert loaded.config == sampler.config and loaded.noise_config == sampler.noise_config
    assert loaded.vocabulary == sampler.vocabulary
    a = sampler.sample(LABELS, seed=0, progress=False).images
    b = loaded.sample(LABELS, seed=0, progress=False).images
    assert torch.equal(a, b)
