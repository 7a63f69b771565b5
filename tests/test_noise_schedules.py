"""Noise-schedule options: zero terminal SNR (Lin et al. 2024) and the shifted schedule (Hoogeboom et al. 2023)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from clevr_diffusion import ConditionalUNet, DDPMSampler, NoiseConfig, NoiseProcess, SamplingConfig
from clevr_diffusion.diffusion.sampler import trajectory_steps
from clevr_diffusion.diffusion.schedulers import build_scheduler

SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]
ZERO_SNR = dict(prediction_type="v_prediction", rescale_betas_zero_snr=True)
TINY = dict(base_channels=8, channel_mults=(1, 2), attention_stages=(1,), norm_groups=4, num_heads=2, sample_size=16)
EPS32 = 2.0**-24  # half a float32 ulp at 1: the rounding of an abar near 1


def comparable(config: dict) -> dict:  # type: ignore[type-arg]
    """A scheduler config with its (unordered) ``_use_default_values`` as a set."""
    return {k: set(v) if k == "_use_default_values" else v for k, v in config.items()}


# ----------------------------------------------------------------------- defaults


def test_default_scheduler_is_todays() -> None:
    today = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
        prediction_type="epsilon", clip_sample=True,
    )  # fmt: skip
    config = NoiseConfig().scheduler_config()
    assert comparable(config) == comparable(today.config)
    assert config["trained_betas"] is None and config["rescale_betas_zero_snr"] is False
    assert {"trained_betas", "rescale_betas_zero_snr"} <= set(config["_use_default_values"])
    assert torch.equal(NoiseProcess().alphas_cumprod, today.alphas_cumprod)
    # noise_shift = 1 is no shift at all, not a round trip through trained_betas.
    assert comparable(NoiseConfig(noise_shift=1.0).scheduler_config()) == comparable(today.config)


def test_default_files_are_unchanged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert NoiseConfig().to_dict() == {
        "num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
        "prediction_type": "epsilon",
    }  # fmt: skip
    saved = json.loads(NoiseConfig().save_scheduler_config(tmp_path).read_text())
    assert "noise_shift" not in saved and saved["trained_betas"] is None and saved["rescale_betas_zero_snr"] is False


# ----------------------------------------------------------------------- validation


def test_epsilon_with_zero_terminal_snr_is_refused() -> None:
    with pytest.raises(ValueError, match="use prediction_type='v_prediction'"):
        NoiseConfig(rescale_betas_zero_snr=True)
    with pytest.raises(ValueError, match="v_prediction"):
        NoiseConfig.from_dict({"rescale_betas_zero_snr": True, "prediction_type": "epsilon"})
    assert NoiseConfig(**ZERO_SNR).rescale_betas_zero_snr


@pytest.mark.parametrize("shift", [0.0, -1.0, math.nan, math.inf, True])
def test_bad_noise_shift_is_refused(shift: float) -> None:
    with pytest.raises(ValueError, match="noise_shift must be a finite number > 0"):
        NoiseConfig(noise_shift=shift)


# ------------------------------------------------------------------ zero terminal SNR


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("shift", [1.0, 0.5, 2.0])
def test_zero_terminal_snr(schedule: str, shift: float) -> None:
    plain = NoiseProcess(beta_schedule=schedule, prediction_type="v_prediction", noise_shift=shift)
    rescaled = NoiseProcess(beta_schedule=schedule, noise_shift=shift, **ZERO_SNR)
    abar = rescaled.alphas_cumprod
    assert abar[-1].item() == 0.0 and plain.alphas_cumprod[-1].item() > 0.0
    assert torch.all(abar[1:] < abar[:-1])  # still strictly decreasing
    # The rescaling keeps sqrt(abar_0), so the cleanest step's SNR stays (up to float32 rounding).
    torch.testing.assert_close(abar[0], plain.alphas_cumprod[0], atol=4 * EPS32, rtol=0)
    t = torch.arange(1000)
    snr = rescaled.snr(t)
    assert snr[-1].item() == 0.0 and torch.all(torch.isfinite(snr)) and torch.all(snr[:-1] > 0)
    weights = rescaled.loss_weights(t, 5.0)
    assert torch.all(torch.isfinite(weights)) and torch.all((weights >= 0) & (weights <= 1))
    assert weights[-1].item() == 0.0  # v-prediction: min(0, gamma) / (0 + 1)
    gen = torch.Generator().manual_seed(0)
    x0, eps, pred = (torch.randn(3, 3, 4, 4, generator=gen) for _ in range(3))
    last = torch.full((3,), 999)
    # At SNR 0, x_t is the noise and v = -x0.
    assert torch.equal(rescaled.add_noise(x0, eps, last), eps)
    torch.testing.assert_close(rescaled.target(x0, eps, last), -x0)
    loss = rescaled.training_loss(pred, x0, eps, torch.tensor([0, 500, 999]), snr_gamma=5.0)
    assert torch.isfinite(loss)


def test_every_solver_gets_the_rescaled_schedule() -> None:
    config = NoiseConfig(num_train_timesteps=100, **ZERO_SNR).scheduler_config()
    for method in ("ddpm", "ddim"):
        assert build_scheduler(method, config).alphas_cumprod[-1].item() == 0.0
    for method in ("dpm++", "unipc"):  # diffusers keeps their log-SNR finite with 2**-24
        assert build_scheduler(method, config).alphas_cumprod[-1].item() == pytest.approx(2.0**-24)


# ----------------------------------------------------------------------- the shift


def shifted_reference(abar: torch.Tensor, shift: float) -> torch.Tensor:
    """``abar / (abar + s^2 (1 - abar))`` in float64: the SNR divided by s^2."""
    abar = abar.double()
    return abar / (abar + shift**2 * (1 - abar))


def abar_error_bound(process: NoiseProcess) -> torch.Tensor:
    """(T,) bound on the relative float32 error of each abar_t: every step of the cumulative
    product rounds beta (its ``1 - beta`` then errs by ``eps / (1 - beta)``) and the product."""
    betas = process.scheduler.betas.double()
    return torch.cumsum(EPS32 * (2 + 1 / (1 - betas)), dim=0)


@settings(max_examples=25, deadline=None)
@given(shift=st.floats(0.1, 10.0), schedule=st.sampled_from(SCHEDULES), steps=st.sampled_from([50, 1000]))
def test_shift_divides_every_snr_by_its_square(shift: float, schedule: str, steps: int) -> None:
    base = NoiseProcess(num_train_timesteps=steps, beta_schedule=schedule)
    shifted = NoiseProcess(num_train_timesteps=steps, beta_schedule=schedule, noise_shift=shift)
    expected = shifted_reference(base.alphas_cumprod, shift)
    abar = shifted.alphas_cumprod.double()
    # diffusers rebuilds abar from float32 betas with a float32 cumulative product.
    torch.testing.assert_close(abar, expected, atol=4 * EPS32, rtol=1e-4)
    t = torch.arange(steps)
    snr, snr_base = shifted.snr(t).double(), base.snr(t).double()
    # An SNR's relative error is its abar's over (1 - abar); both the shifted and the base one err.
    tolerance = abar_error_bound(shifted) / (1 - abar) + abar_error_bound(base) / (1 - base.alphas_cumprod.double())
    assert torch.all((snr * shift**2 / snr_base - 1).abs() <= tolerance)


def test_shift_makes_the_schedule_noisier_or_cleaner() -> None:
    t = torch.arange(1000)
    base = NoiseProcess().snr(t)
    assert torch.all(NoiseProcess(noise_shift=2.0).snr(t) < base)
    assert torch.all(NoiseProcess(noise_shift=0.5).snr(t) > base)
    betas = NoiseConfig(noise_shift=0.5).shifted_betas()
    assert len(betas) == 1000 and all(0 < b < 1 for b in betas)


def test_shift_comes_before_the_zero_snr_rescaling() -> None:
    shifted = NoiseProcess(noise_shift=0.5, prediction_type="v_prediction").alphas_cumprod
    both = NoiseProcess(noise_shift=0.5, **ZERO_SNR).alphas_cumprod
    # Rescaling the shifted schedule keeps its first abar (not the unshifted one) and zeroes its last.
    torch.testing.assert_close(both[0], shifted[0], atol=4 * EPS32, rtol=0)
    assert both[-1].item() == 0.0
    assert abs(both[0].item() - NoiseProcess().alphas_cumprod[0].item()) > 1e-5


# ----------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "options",
    [dict(noise_shift=0.5), ZERO_SNR, dict(ZERO_SNR, noise_shift=2.0, beta_schedule="squaredcos_cap_v2")],
    ids=["shift", "zero-snr", "both"],
)
def test_scheduler_config_json_round_trip(tmp_path, options: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    config = NoiseConfig(**options)
    path = config.save_scheduler_config(tmp_path)
    saved = json.loads(path.read_text())
    assert ("noise_shift" in saved) == (config.noise_shift != 1.0)
    assert saved["rescale_betas_zero_snr"] == config.rescale_betas_zero_snr
    assert NoiseConfig.from_scheduler_config(saved) == config
    # diffusers alone (trained_betas and rescale_betas_zero_snr) reads the same schedule.
    loaded = DDPMScheduler.from_pretrained(tmp_path)
    assert torch.equal(loaded.alphas_cumprod, NoiseProcess(config).alphas_cumprod)
    # And the dataclass's own JSON.
    assert NoiseConfig.from_json(config.to_json()) == config


# ----------------------------------------------------------------------- sampling


@pytest.fixture
def token_sampler() -> DDPMSampler:
    torch.manual_seed(0)
    model = ConditionalUNet(**TINY, label_vector=False, cross_attention_stages=(1,), cross_attention_bottleneck=True)
    for p in model.parameters():  # untrained, but every path switched on
        torch.nn.init.normal_(p, std=0.05)
    noise = NoiseConfig(num_train_timesteps=40, noise_shift=2.0, **ZERO_SNR)
    return DDPMSampler(model, noise)


@pytest.mark.parametrize(("method", "steps"), [("ddpm", 40), ("ddpm", 5), ("ddim", 5), ("dpm++", 5), ("unipc", 5)])
def test_every_method_samples_finite_images(token_sampler: DDPMSampler, method: str, steps: int) -> None:
    labels = [["red sphere"], ["cyan cube", "gray cylinder"]]
    token_sampler.config = SamplingConfig(method=method, num_inference_steps=steps)
    out = token_sampler.sample(labels, guidance_scale=2.0, seed=0, progress=False, return_trajectory=True, trajectory_frames=4)
    assert out.images.shape == (2, 3, 16, 16)
    assert torch.isfinite(out.images).all() and out.images.abs().max() <= 1
    assert out.trajectory is not None and torch.isfinite(out.trajectory).all()
    assert out.frame_steps[0] == 0 and out.frame_steps[-1] == steps
    assert out.images.std() > 0.05  # not collapsed to a constant


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpm++", "unipc"])
def test_every_method_starts_from_pure_noise_under_zero_snr(method: str) -> None:
    scheduler = build_scheduler(method, NoiseConfig(num_train_timesteps=100, **ZERO_SNR).scheduler_config())
    scheduler.set_timesteps(7)
    assert int(scheduler.timesteps[0]) == 99
    default = build_scheduler("ddpm", NoiseConfig(num_train_timesteps=100).scheduler_config())
    default.set_timesteps(7)
    assert int(default.timesteps[0]) < 99  # other schedules keep DDPM's own spacing


def test_trajectory_frames_with_a_zero_snr_first_step() -> None:
    noise = NoiseConfig(num_train_timesteps=100, **ZERO_SNR)
    scheduler = build_scheduler("ddim", noise.scheduler_config())
    scheduler.set_timesteps(10)
    assert int(scheduler.timesteps[0]) == 99  # trailing: the first step is at SNR 0
    steps = trajectory_steps(scheduler.timesteps, noise, 5)
    assert len(steps) == 4 and steps[-1] == 9 and steps == sorted(set(steps))


def test_sampler_folder_round_trip(tmp_path, token_sampler: DDPMSampler) -> None:  # type: ignore[no-untyped-def]
    token_sampler.save_pretrained(tmp_path)
    loaded = DDPMSampler.from_pretrained(tmp_path)
    assert loaded.noise_config == token_sampler.noise_config
    assert loaded.model.config == token_sampler.model.config
