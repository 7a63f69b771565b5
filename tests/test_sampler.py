"""DDPMSampler: methods, presets, guidance (joint, composable, rescale), compilation, outputs and saved folders."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UniPCMultistepScheduler
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from clevr_diffusion import OBJECT_NAMES, DDPMSampler, NoiseConfig, SamplingConfig, load_conditions
from clevr_diffusion.diffusion.guidance import (
    composed_prediction,
    guided_prediction,
    plan_guidance,
    rescale_guidance,
)
from clevr_diffusion.diffusion.schedulers import SAMPLING_METHODS, SAMPLING_PRESETS, build_scheduler, parse_preset

LABELS = [["red sphere"], ["cyan cube", "gray cylinder"], ["blue sphere", "green cube", "yellow cylinder"]]


@pytest.fixture
def sampler(tiny_unet) -> DDPMSampler:  # type: ignore[no-untyped-def]
    for p in tiny_unet.parameters():  # non-trivial weights so outputs depend on labels
        torch.nn.init.normal_(p, std=0.05)
    return DDPMSampler(tiny_unet, NoiseConfig(num_train_timesteps=100))


@pytest.mark.slow
@pytest.mark.parametrize(("method", "steps"), [("ddpm", None), ("ddim", 10), ("dpm++", 8), ("unipc", 6)])
def test_methods_give_images_in_range(sampler: DDPMSampler, method: str, steps: int | None) -> None:
    out = sampler.sample(LABELS, method=method, num_inference_steps=steps, seed=0, progress=False)
    assert out.images.shape == (3, 3, 16, 16)
    assert out.images.dtype == torch.float32
    assert out.images.min() >= -1 and out.images.max() <= 1
    assert out.labels == LABELS


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpm++", "unipc"])
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


def test_output_size_resizes_images_and_frames_and_round_trips(sampler: DDPMSampler, tmp_path) -> None:  # type: ignore[no-untyped-def]
    plain = sampler.sample(LABELS, method="ddim", num_inference_steps=3, seed=0, progress=False)
    big = sampler.sample(LABELS, method="ddim", num_inference_steps=3, seed=0, output_size=32,
                         return_trajectory=True, trajectory_frames=3, progress=False)  # fmt: skip
    assert big.images.shape == (3, 3, 32, 32) and big.trajectory is not None and big.trajectory.shape == (3, 3, 3, 32, 32)
    # The drawn images themselves, enlarged bilinearly (the same noise, the same denoising).
    enlarged = torch.nn.functional.interpolate(plain.images, size=(32, 32), mode="bilinear").clamp(-1, 1)
    assert torch.equal(big.images, enlarged)
    assert torch.equal(big.trajectory[-1], big.images)
    sampler.config = SamplingConfig(method="ddim", num_inference_steps=3, output_size=32)
    sampler.save_pretrained(tmp_path)
    loaded = DDPMSampler.from_pretrained(tmp_path)
    assert loaded.config.output_size == 32
    assert torch.equal(loaded.sample(LABELS, seed=0, progress=False).images, big.images)
    assert "output_size" not in SamplingConfig().to_dict()
    with pytest.raises(ValueError, match="output_size"):
        SamplingConfig(output_size=0)


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


# ------------------------------------------------------------------------------------ presets
def test_presets_parse_and_map_to_methods_and_steps(sampler: DDPMSampler) -> None:
    assert SAMPLING_PRESETS == {
        "ddpm-1000": ("ddpm", 1000), "ddim-50": ("ddim", 50), "dpm++-20": ("dpm++", 20), "unipc-10": ("unipc", 10)
    }
    for name, (method, steps) in SAMPLING_PRESETS.items():
        assert method in SAMPLING_METHODS
        assert parse_preset(name) == (method, steps)
        assert parse_preset(f" {name.upper()} ") == (method, steps)
        # The test model has T = 100: a preset never asks for more steps than that.
        assert sampler.resolve_settings(preset=name) == (method, min(steps, 100), 1.0)


@pytest.mark.parametrize("bad", ["euler-5", "dpm++", "ddim-49", ""])
def test_unknown_preset_names_the_valid_ones(sampler: DDPMSampler, bad: str) -> None:
    expected = f"unknown sampling preset {bad!r}; choose one of ddpm-1000, ddim-50, dpm++-20, unipc-10"
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse_preset(bad)
    with pytest.raises(ValueError, match="unknown sampling preset"):
        sampler.sample(LABELS, preset=bad, progress=False)
    with pytest.raises(ValueError, match="unknown sampling preset"):
        SamplingConfig(preset=bad)


def test_explicit_steps_and_method_win_over_the_preset(sampler: DDPMSampler) -> None:
    assert sampler.resolve_settings(preset="dpm++-20", num_inference_steps=7) == ("dpm++", 7, 1.0)
    # The preset's 20 steps belong to DPM-Solver++; another method takes its own default.
    assert sampler.resolve_settings(preset="dpm++-20", method="ddim") == ("ddim", 50, 1.0)
    assert sampler.resolve_settings(preset="unipc-10", method="ddim", num_inference_steps=3) == ("ddim", 3, 1.0)
    # The preset also beats the sampler's saved defaults.
    sampler.config = SamplingConfig(method="ddim", num_inference_steps=5)
    assert sampler.resolve_settings(preset="unipc-10") == ("unipc", 10, 1.0)
    assert sampler.resolve_settings() == ("ddim", 5, 1.0)
    calls: list[int] = []
    hook = sampler.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    sampler.sample(LABELS, preset="dpm++-20", num_inference_steps=3, seed=0, progress=False)
    hook.remove()
    assert calls == [3, 3, 3]
    with pytest.raises(ValueError, match="exceeds the 100 diffusion steps"):
        sampler.sample(LABELS, preset="ddpm-1000", num_inference_steps=101, progress=False)


@pytest.mark.slow
def test_preset_sets_the_same_images_as_its_method_and_steps(sampler: DDPMSampler) -> None:
    a = sampler.sample(LABELS, preset="unipc-10", guidance_scale=2.0, seed=1, progress=False).images
    b = sampler.sample(LABELS, method="unipc", num_inference_steps=10, guidance_scale=2.0, seed=1, progress=False).images
    c = sampler.sample(LABELS, preset="dpm++-20", guidance_scale=2.0, seed=1, progress=False).images
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_config_preset_sets_the_method_and_default_steps(sampler: DDPMSampler) -> None:
    cfg = SamplingConfig(preset="UniPC-10", guidance_scale=2.0)
    assert cfg.preset == "unipc-10" and cfg.method == "unipc" and cfg.num_inference_steps is None
    sampler.config = cfg
    assert sampler.resolve_settings() == ("unipc", 10, 2.0)
    sampler.config = SamplingConfig(preset="unipc-10", num_inference_steps=4)
    assert sampler.resolve_settings() == ("unipc", 4, 1.0)
    with pytest.raises(ValueError, match="preset 'dpm\\+\\+-20' samples with 'dpm\\+\\+', but method='ddim'"):
        SamplingConfig(preset="dpm++-20", method="ddim")
    assert cfg.replace(preset="ddim-50").method == "ddim"
    assert cfg.replace(method="dpm++").preset is None


def test_unipc_scheduler_settings() -> None:
    config = NoiseConfig(num_train_timesteps=100).scheduler_config()
    scheduler = build_scheduler("unipc", config)
    assert isinstance(scheduler, UniPCMultistepScheduler)
    assert scheduler.config.timestep_spacing == "trailing"
    assert scheduler.config.thresholding is True and scheduler.config.sample_max_value == 1.0
    assert scheduler.config.predict_x0 is True and scheduler.config.solver_order == 2
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) == 10 and int(scheduler.timesteps[0]) == 99  # starts from pure noise


# ---------------------------------------------------------------------------- guidance rescale
def _pair(seed: int, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    cond = torch.randn(batch, 3, 8, 8, generator=gen)
    uncond = 0.5 * torch.randn(batch, 3, 8, 8, generator=gen) + 0.2
    return cond, uncond


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 10.0), batch=st.integers(1, 4))
def test_rescale_zero_is_plain_guidance_and_one_matches_the_conditional_std(seed: int, scale: float, batch: int) -> None:
    cond, uncond = _pair(seed, batch)
    plain = uncond + scale * (cond - uncond)
    assert torch.equal(guided_prediction(cond, uncond, scale, rescale=0.0), plain)
    full = guided_prediction(cond, uncond, scale, rescale=1.0)
    torch.testing.assert_close(full.std(dim=(1, 2, 3)), cond.std(dim=(1, 2, 3)), rtol=1e-4, atol=1e-6)
    # Fully rescaled is the plain guided prediction times one factor per image.
    ratio = full / plain
    torch.testing.assert_close(ratio, ratio[:, :1, :1, :1].expand_as(ratio), rtol=1e-3, atol=1e-3)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1.5, 10.0), phi=st.floats(0.0, 1.0))
def test_rescale_mixes_rescaled_and_plain_by_phi(seed: int, scale: float, phi: float) -> None:
    cond, uncond = _pair(seed)
    plain = guided_prediction(cond, uncond, scale)
    full = guided_prediction(cond, uncond, scale, rescale=1.0)
    torch.testing.assert_close(guided_prediction(cond, uncond, scale, rescale=phi), phi * full + (1 - phi) * plain)


def test_rescale_leaves_a_constant_prediction_alone() -> None:
    flat = torch.full((2, 3, 4, 4), 0.3)
    out = rescale_guidance(flat, torch.randn(2, 3, 4, 4), 1.0)
    assert torch.equal(out, flat)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_rescale_is_applied_to_the_model_output(tiny_unet, prediction_type: str) -> None:  # type: ignore[no-untyped-def]
    """One deterministic DDIM step: the update is that of the rescaled guided model output."""
    for p in tiny_unet.parameters():
        torch.nn.init.normal_(p, std=0.05)
    sampler = DDPMSampler(tiny_unet, NoiseConfig(num_train_timesteps=100, prediction_type=prediction_type))
    scale, phi = 4.0, 0.7
    scheduler = build_scheduler("ddim", sampler.noise_config.scheduler_config())
    scheduler.set_timesteps(1)
    t = scheduler.timesteps[0]
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = sampler.vocabulary.encode_batch([["red cube", "blue sphere"]])
    with torch.no_grad():
        cond = tiny_unet(x, t.expand(1), labels)
        uncond = tiny_unet(x, t.expand(1), torch.zeros_like(labels))
    expected = scheduler.step(guided_prediction(cond, uncond, scale, phi), t, x).prev_sample.clamp(-1, 1)
    kwargs = dict(method="ddim", num_inference_steps=1, guidance_scale=scale, seed=0, progress=False)
    got = sampler.sample([["red cube", "blue sphere"]], guidance_rescale=phi, **kwargs).images
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, sampler.sample([["red cube", "blue sphere"]], **kwargs).images)


def test_bad_guidance_settings_fail_clearly(sampler: DDPMSampler) -> None:
    with pytest.raises(ValueError, match="guidance_rescale must be in \\[0, 1\\], got 1.5"):
        sampler.sample(LABELS, guidance_rescale=1.5, progress=False)
    with pytest.raises(ValueError, match="guidance_rescale must be in \\[0, 1\\]"):
        SamplingConfig(guidance_rescale=-0.1)
    with pytest.raises(ValueError, match="unknown guidance_mode 'sum'; choose one of joint, composable"):
        sampler.sample(LABELS, guidance_mode="sum", progress=False)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        sampler.sample(LABELS, guidance_scale=-1.0, progress=False)


# -------------------------------------------------------------------------- composable guidance
label_sets = st.lists(st.sets(st.integers(0, 23), min_size=0, max_size=4), min_size=1, max_size=5)


@settings(max_examples=30, deadline=None)
@given(objects=label_sets, scale=st.floats(0.0, 8.0), seed=st.integers(0, 10_000))
def test_composed_prediction_sums_one_direction_per_object(objects: list[set[int]], scale: float, seed: int) -> None:
    owner = torch.tensor([b for b, items in enumerate(objects) for _ in items], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    cond = torch.randn(len(owner), 3, 4, 4, generator=gen)
    uncond = torch.randn(len(objects), 3, 4, 4, generator=gen)
    got = composed_prediction(cond, uncond, owner, scale)
    for b in range(len(objects)):
        directions = sum((cond[i] - uncond[b] for i in (owner == b).nonzero().flatten().tolist()), torch.zeros(3, 4, 4))
        torch.testing.assert_close(got[b], uncond[b] + scale * directions)


@settings(max_examples=30, deadline=None)
@given(objects=label_sets, scale=st.floats(0.0, 8.0))
def test_composable_plan_has_one_row_per_object_plus_one_per_image(objects: list[set[int]], scale: float) -> None:
    labels = torch.zeros(len(objects), 24)
    for b, items in enumerate(objects):
        labels[b, list(items)] = 1.0
    plan = plan_guidance(labels, scale, "composable")
    count = sum(len(items) for items in objects)
    assert plan.rows == count + len(objects) and plan.num_conditional == count
    assert plan.owner is not None and plan.source is not None
    assert plan.owner.tolist() == sorted(plan.owner.tolist())
    for row, b in enumerate(plan.owner.tolist()):  # each conditional row: one of its image's objects
        (index,) = plan.labels[row].nonzero().flatten().tolist()
        assert index in objects[b]
    assert {(b, i) for b, i in zip(plan.owner.tolist(), plan.labels[:count].argmax(1).tolist(), strict=True)} == {
        (b, i) for b, items in enumerate(objects) for i in items
    }
    assert torch.equal(plan.labels[count:], torch.zeros(len(objects), 24))
    assert plan.source.tolist() == plan.owner.tolist() + list(range(len(objects)))
    x = torch.arange(len(objects), dtype=torch.float32)[:, None].expand(-1, 5)
    assert torch.equal(plan.expand(x)[:, 0], plan.source.float())


def test_composable_with_one_object_each_equals_joint(sampler: DDPMSampler) -> None:
    singles = [["red sphere"], ["cyan cube"], ["gray cylinder"]]
    kwargs = dict(method="dpm++", num_inference_steps=4, guidance_scale=2.5, seed=0, progress=False)
    joint = sampler.sample(singles, guidance_mode="joint", **kwargs).images
    composable = sampler.sample(singles, guidance_mode="composable", **kwargs).images
    assert torch.equal(joint, composable)
    # With rescale the reference spread is uncond + (cond - uncond): cond up to rounding.
    joint = sampler.sample(singles, guidance_mode="joint", guidance_rescale=0.6, **kwargs).images
    composable = sampler.sample(singles, guidance_mode="composable", guidance_rescale=0.6, **kwargs).images
    torch.testing.assert_close(joint, composable, atol=1e-5, rtol=1e-5)


def test_composable_batches_mixed_object_counts_in_one_forward_per_step(sampler: DDPMSampler) -> None:
    seen: list[tuple[int, torch.Tensor]] = []
    hook = sampler.model.register_forward_hook(lambda m, args, out: seen.append((args[0].shape[0], args[2].clone())))
    kwargs = dict(method="ddim", num_inference_steps=3, guidance_scale=3.0, seed=0, progress=False)
    composable = sampler.sample(LABELS, guidance_mode="composable", **kwargs).images
    hook.remove()
    # LABELS has 1 + 2 + 3 objects: 6 one-object rows and 3 null rows, one model call per step.
    assert [rows for rows, _ in seen] == [9, 9, 9]
    labels = seen[0][1]
    assert labels[:6].sum(1).tolist() == [1.0] * 6 and labels[6:].sum().item() == 0
    joint = sampler.sample(LABELS, guidance_mode="joint", **kwargs).images
    assert not torch.allclose(composable, joint)  # several objects: the modes differ


def test_composable_mode_from_the_saved_config(sampler: DDPMSampler) -> None:
    kwargs = dict(method="ddim", num_inference_steps=2, guidance_scale=2.0, seed=0, progress=False)
    explicit = sampler.sample(LABELS, guidance_mode="composable", guidance_rescale=0.5, **kwargs).images
    sampler.config = SamplingConfig(guidance_mode="composable", guidance_rescale=0.5)
    assert torch.equal(sampler.sample(LABELS, **kwargs).images, explicit)
    assert not torch.equal(sampler.sample(LABELS, guidance_mode="joint", **kwargs).images, explicit)


# --------------------------------------------------------------------------------- compilation
class _Counting(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(*args)


def test_compile_wraps_the_model_once_and_is_off_by_default(sampler: DDPMSampler, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[tuple[torch.nn.Module, str | None]] = []
    wrappers: list[_Counting] = []

    def fake_compile(model: torch.nn.Module, mode: str | None = None) -> torch.nn.Module:
        compiled.append((model, mode))
        wrappers.append(_Counting(model))
        return wrappers[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    kwargs = dict(method="ddim", num_inference_steps=3, guidance_scale=2.0, seed=0, progress=False)
    assert sampler.compile is False
    eager = sampler.sample(LABELS, **kwargs).images
    assert compiled == []
    sampler.compile = True
    a = sampler.sample(LABELS, **kwargs).images
    b = sampler.sample(LABELS, **kwargs).images
    assert compiled == [(sampler.model, None)]  # default mode on CPU, compiled once and cached
    assert wrappers[0].calls == 6  # every denoising step went through the compiled module
    assert torch.equal(a, eager) and torch.equal(b, eager)
    sampler.model = copy.deepcopy(sampler.model)  # a replaced model is compiled afresh
    sampler.network()
    assert len(compiled) == 2 and compiled[1][0] is sampler.model


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_sampling_on_cuda_matches_eager(tiny_unet) -> None:  # type: ignore[no-untyped-def]
    """CUDA graphs ("reduce-overhead") give the eager images, also across batch shapes."""
    if shutil.which("cc") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile (inductor) needs a C++ compiler")
    for p in tiny_unet.parameters():
        torch.nn.init.normal_(p, std=0.05)
    sampler = DDPMSampler(tiny_unet, NoiseConfig(num_train_timesteps=100), device="cuda")
    kwargs = dict(preset="dpm++-20", guidance_scale=2.0, seed=0, progress=False)
    modes = ("joint", "composable")
    eager = {mode: sampler.sample(LABELS, guidance_mode=mode, **kwargs).images for mode in modes}
    sampler.compile = True
    for mode in modes:
        compiled = sampler.sample(LABELS, guidance_mode=mode, **kwargs).images
        torch.testing.assert_close(compiled, eager[mode], atol=2e-3, rtol=2e-3)


# ------------------------------------------------------------------------------ saved settings
def test_sampling_config_round_trips_the_new_fields_and_reads_old_files(sampler: DDPMSampler, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = SamplingConfig(preset="unipc-10", guidance_scale=3.0, guidance_rescale=0.7, guidance_mode="composable", batch_size=8)
    assert SamplingConfig.from_json(cfg.to_json()) == cfg
    sampler.config = cfg
    sampler.save_pretrained(tmp_path)
    loaded = DDPMSampler.from_pretrained(tmp_path)
    assert loaded.config == cfg
    assert loaded.resolve_settings() == ("unipc", 10, 3.0) and loaded.resolve_guidance() == (0.7, "composable")
    # A sampler_config.json from before these settings still loads, with them off.
    old = {"method": "ddim", "num_inference_steps": 5, "guidance_scale": 2.0, "image_size": None, "batch_size": 64}
    saved = json.loads((tmp_path / "sampler_config.json").read_text())
    (tmp_path / "sampler_config.json").write_text(json.dumps({**saved, "sampling": old}))
    legacy = DDPMSampler.from_pretrained(tmp_path).config
    assert legacy == SamplingConfig(method="ddim", num_inference_steps=5, guidance_scale=2.0)
    assert (legacy.preset, legacy.guidance_rescale, legacy.guidance_mode) == (None, 0.0, "joint")
    # And settings at their defaults are left out, so older versions read new files.
    assert legacy.to_dict() == old


# ------------------------------------------------------------------------------ input checking
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_guidance_is_rejected(sampler: DDPMSampler, value: float) -> None:
    kwargs = dict(method="ddim", num_inference_steps=1, seed=0, progress=False)
    with pytest.raises(ValueError, match=f"guidance_scale must be >= 0 and finite, got {value}"):
        sampler.sample(LABELS, guidance_scale=value, **kwargs)
    with pytest.raises(ValueError, match=f"guidance_rescale must be in \\[0, 1\\], got {value}"):
        sampler.sample(LABELS, guidance_scale=2.0, guidance_rescale=value, **kwargs)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0 and finite"):
        SamplingConfig(guidance_scale=value)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0 and finite"):
        plan_guidance(sampler.vocabulary.encode_batch(LABELS), value)


def _bad_rows() -> list[tuple[torch.Tensor, str]]:
    good = torch.zeros(3, 24)
    good[:, 0] = 1
    cases = []
    for value, problem in [(float("nan"), "holds NaN"), (0.5, "holds 0.5"), (2.0, "holds 2.0"), (-1.0, "holds -1.0")]:
        labels = good.clone()
        labels[1, 5] = value
        cases.append((labels, problem))
    labels = good.clone()
    labels[1, :4] = 1
    cases.append((labels, "has 4 objects, more than the 3 an image holds"))
    return cases


@pytest.mark.parametrize(("labels", "problem"), _bad_rows())
def test_label_tensors_that_are_not_multi_hot_are_rejected(
    sampler: DDPMSampler, labels: torch.Tensor, problem: str
) -> None:
    message = f"label row 1 {re.escape(problem)}.*; each row must be 0/1 .*encode label lists with .*encode_batch"
    with pytest.raises(ValueError, match=message):
        sampler.sample(labels, method="ddim", num_inference_steps=1, seed=0, progress=False)


def test_guidance_plans_reject_non_binary_labels() -> None:
    labels = torch.zeros(2, 24)
    labels[0, 3] = float("nan")
    for mode in ("joint", "composable"):
        with pytest.raises(ValueError, match="label row 0 holds NaN"):
            plan_guidance(labels, 2.0, mode)


def test_all_zero_rows_draw_unconditional_images(sampler: DDPMSampler) -> None:
    """The all-zero vector is the documented "no label" input: sample() keeps accepting it."""
    kwargs = dict(method="ddim", num_inference_steps=2, guidance_scale=3.0, seed=0, progress=False)
    labels = sampler.vocabulary.encode_batch([["red cube"], ["blue sphere"]])
    labels[0] = 0
    out = sampler.sample(labels, **kwargs)
    assert out.labels == [[], ["blue sphere"]]
    assert torch.isfinite(out.images).all()
    # Guidance leaves an unconditional row alone: uncond + w * (uncond - uncond).
    unguided = sampler.sample(torch.zeros(2, 24), **{**kwargs, "guidance_scale": 1.0})
    torch.testing.assert_close(out.images[0], unguided.images[0], atol=1e-5, rtol=1e-5)


def test_flat_name_lists_and_empty_requests_fail_clearly(sampler: DDPMSampler) -> None:
    suggestion = re.escape(
        "[['red cube', 'blue cube']] for one image holding these objects, or [['red cube'], ['blue cube']]"
    )
    with pytest.raises(ValueError, match=f"flat list of names.*{suggestion} for one image each"):
        sampler.sample(["red cube", "blue cube"], progress=False)  # type: ignore[list-item]
    for empty in ([], torch.zeros(0, 24)):
        with pytest.raises(ValueError, match="no label sets given"):
            sampler.sample(empty, progress=False)


def test_numpy_integer_seeds_work_and_other_seeds_are_rejected(sampler: DDPMSampler) -> None:
    kwargs = dict(method="ddim", num_inference_steps=2, progress=False)
    expected = sampler.sample(LABELS, seed=3, **kwargs).images
    for seed in (np.int64(3), np.uint32(3), np.int8(3)):
        assert torch.equal(sampler.sample(LABELS, seed=seed, **kwargs).images, expected)
    for bad in (True, 3.0, np.float64(3), "3"):
        with pytest.raises(ValueError, match=f"seed must be an integer, got {type(bad).__name__}"):
            sampler.sample(LABELS, seed=bad, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside the 64-bit range"):
        sampler.sample(LABELS, seed=2**64, **kwargs)


@pytest.mark.parametrize("name", ["scheduler_config.json", "sampler_config.json", "config.json"])
def test_corrupt_folder_json_names_the_file_and_position(sampler: DDPMSampler, tmp_path: Path, name: str) -> None:
    sampler.save_pretrained(tmp_path)
    text = (tmp_path / name).read_text()
    (tmp_path / name).write_text(text[: len(text) // 2])  # cut off, as by an interrupted copy
    with pytest.raises(ValueError, match=rf"{re.escape(name)} is not valid JSON \(.* at line \d+, column \d+\); "):
        DDPMSampler.from_pretrained(tmp_path)


@pytest.mark.parametrize(("method", "steps"), [("dpm++", 20), ("ddim", 50), ("unipc", 25), ("ddpm", 1000)])
def test_trajectory_frames_follow_the_noise_level_not_the_step_count(method: str, steps: int) -> None:
    """A 10-frame row of a fast sampler shows the scene emerging: at most one of its middle
    frames is plain noise (log SNR below -4), where frames evenly spaced in steps gave three
    or more."""
    from clevr_diffusion import NoiseProcess
    from clevr_diffusion.diffusion.sampler import trajectory_steps
    from clevr_diffusion.diffusion.schedulers import build_scheduler

    config = NoiseConfig()
    scheduler = build_scheduler(method, config.scheduler_config())
    scheduler.set_timesteps(steps)
    picks = trajectory_steps(scheduler.timesteps, config, 10)
    assert len(picks) == 9 and picks[-1] == len(scheduler.timesteps) - 1 and picks == sorted(set(picks))
    abar = NoiseProcess(config).alphas_cumprod.double()
    reached = torch.cat([scheduler.timesteps[1:], torch.zeros(1, dtype=torch.long)])
    log_snr = (abar / (1 - abar)).log()[reached]
    assert sum(float(log_snr[i]) < -4 for i in picks[:-1]) <= 1
    # Fewer steps than frames: every step is a frame.
    few = build_scheduler("ddim", config.scheduler_config())
    few.set_timesteps(4)
    assert trajectory_steps(few.timesteps, config, 10) == [0, 1, 2, 3]


# ------------------------------------------------------------- one object for the settings
def test_settings_object_draws_what_the_keywords_draw(sampler: DDPMSampler) -> None:
    from clevr_diffusion import SamplingSettings

    labels = [["red cube"], ["blue sphere", "gray cylinder"]]
    settings = SamplingSettings(method="ddim", num_inference_steps=4, guidance_scale=2.0, guidance_mode="composable")
    by_object = sampler.sample(labels, settings, seed=3, progress=False).images
    by_keywords = sampler.sample(labels, method="ddim", num_inference_steps=4, guidance_scale=2.0,
                                 guidance_mode="composable", seed=3, progress=False).images  # fmt: skip
    assert torch.equal(by_object, by_keywords)
    assert not torch.equal(by_object, sampler.sample(labels, seed=3, progress=False).images)  # the settings mattered


def test_which_setting_wins(sampler: DDPMSampler) -> None:
    """Explicit keyword > settings object > the model's saved config > the defaults, field by field."""
    from clevr_diffusion import SamplingSettings

    sampler.config = SamplingConfig(method="ddim", num_inference_steps=7, guidance_scale=1.5, guidance_rescale=0.3)
    assert sampler.resolve() == SamplingSettings(
        method="ddim", num_inference_steps=7, guidance_scale=1.5, guidance_rescale=0.3, guidance_mode="joint",
        image_size=sampler.model.config.sample_size,
    )  # fmt: skip
    asked = SamplingSettings(guidance_scale=3.0, num_inference_steps=5, image_size=16)
    chosen = sampler.resolve(asked, guidance_scale=4.0, guidance_rescale=None)  # None: not given
    assert (chosen.method, chosen.num_inference_steps, chosen.guidance_scale) == ("ddim", 5, 4.0)
    assert (chosen.guidance_rescale, chosen.image_size, chosen.output_size) == (0.3, 16, None)
    # A preset in the settings brings its method and steps; an explicit method wins over it.
    assert sampler.resolve(SamplingSettings(preset="unipc-10")).num_inference_steps == 10
    assert sampler.resolve(SamplingSettings(preset="unipc-10"), method="ddpm").method == "ddpm"
    with pytest.raises(TypeError):
        sampler.resolve(steps=3)  # not a field: a typo fails instead of being ignored


def test_command_line_options_become_one_settings_object() -> None:
    from clevr_diffusion import SamplingSettings
    from clevr_diffusion.cli import build_parser
    from clevr_diffusion.cli.options import sampling_settings

    options = ["--labels", "red cube", "--preset", "dpm++-20", "--guidance", "2", "--guidance-mode", "composable"]
    args = build_parser().parse_args(["sample", *options])
    assert sampling_settings(args) == SamplingSettings(preset="dpm++-20", guidance_scale=2.0, guidance_mode="composable")
    assert sampling_settings(build_parser().parse_args(["evaluate"])) == SamplingSettings()
