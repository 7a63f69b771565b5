"""The noise process against formulas computed independently in float64."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clevr_diffusion import NoiseConfig, NoiseProcess


def reference_betas(schedule: str, steps: int, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """The three beta schedules written from their definitions, in float64."""
    if schedule == "linear":
        return torch.linspace(start, end, steps, dtype=torch.float64)
    if schedule == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2

    def alpha_bar(t: float) -> float:  # improved DDPM's cosine schedule, s = 0.008
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor(
        [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)], dtype=torch.float64
    )


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("steps", [1000, 250])
def test_add_noise_matches_closed_form(schedule: str, steps: int) -> None:
    process = NoiseProcess(num_train_timesteps=steps, beta_schedule=schedule)
    abar = torch.cumprod(1 - reference_betas(schedule, steps), dim=0)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 1, steps // 2, steps - 1])
    expected = abar[t].sqrt()[:, None, None, None] * x0 + (1 - abar[t]).sqrt()[:, None, None, None] * eps
    got = process.add_noise(x0.float(), eps.float(), t)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_alphas_cumprod_match_reference(schedule: str) -> None:
    process = NoiseProcess(beta_schedule=schedule)
    expected = torch.cumprod(1 - reference_betas(schedule, 1000), dim=0)
    torch.testing.assert_close(process.alphas_cumprod.double(), expected, atol=1e-6, rtol=1e-4)


def test_v_prediction_target() -> None:
    process = NoiseProcess(prediction_type="v_prediction")
    abar = torch.cumprod(1 - reference_betas("linear", 1000), dim=0)
    x0, eps, t = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4), torch.tensor([0, 400, 999])
    a = abar[t].sqrt().float()[:, None, None, None]
    s = (1 - abar[t]).sqrt().float()[:, None, None, None]
    torch.testing.assert_close(process.target(x0, eps, t), a * eps - s * x0, atol=1e-5, rtol=1e-4)
    assert torch.equal(NoiseProcess().target(x0, eps, t), eps)


def test_training_loss_is_mse_in_float32() -> None:
    process = NoiseProcess()
    x0, eps, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([3, 4])
    prediction = (eps + 0.5).half()
    loss = process.training_loss(prediction, x0, eps, t)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.25, rel=1e-3)


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 64), steps=st.integers(2, 2000), seed=st.integers(0, 2**31 - 1))
def test_sampled_timesteps_are_in_range(batch: int, steps: int, seed: int) -> None:
    process = NoiseProcess(num_train_timesteps=steps)
    t = process.sample_timesteps(batch, generator=torch.Generator().manual_seed(seed))
    assert t.shape == (batch,) and t.dtype == torch.int64
    assert int(t.min()) >= 0 and int(t.max()) < steps


def test_config_validation_and_scheduler_config() -> None:
    with pytest.raises(ValueError, match="beta_schedule"):
        NoiseConfig(beta_schedule="cosine")
    with pytest.raises(ValueError, match="prediction_type"):
        NoiseConfig(prediction_type="sample")
    config = NoiseConfig(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    scheduler = config.scheduler_config()
    assert scheduler["num_train_timesteps"] == 500
    assert scheduler["beta_schedule"] == "squaredcos_cap_v2"
    assert scheduler["prediction_type"] == "v_prediction"
    assert NoiseConfig.from_json(config.to_json()) == config


def reference_snr(t: torch.Tensor) -> torch.Tensor:
    """SNR = abar / (1 - abar) of the default linear schedule, from its definition in float64."""
    abar = torch.cumprod(1 - reference_betas("linear", 1000), dim=0)[t]
    return abar / (1 - abar)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_match_a_hand_computation(prediction_type: str) -> None:
    process = NoiseProcess(prediction_type=prediction_type)
    t, gamma = torch.tensor([0, 50, 200, 500, 999]), 5.0
    snr = reference_snr(t)
    clipped = torch.clamp(snr, max=gamma)
    expected = clipped / snr if prediction_type == "epsilon" else clipped / (snr + 1)
    weights = process.loss_weights(t, gamma)
    assert weights.dtype == torch.float32 and weights.shape == (5,)
    torch.testing.assert_close(weights.double(), expected, rtol=2e-3, atol=1e-6)
    # Spot values: at t = 0 the SNR is about 1e4, so epsilon's weight is gamma / SNR.
    if prediction_type == "epsilon":
        assert weights[0].item() == pytest.approx(gamma / snr[0].item(), rel=2e-3)
        assert weights[-1].item() == 1.0  # SNR(999) = 4e-5 < gamma
    else:
        assert weights[-1].item() == pytest.approx(snr[-1].item() / (snr[-1].item() + 1), rel=2e-3)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_weighted_loss_is_the_weighted_mean_of_per_sample_mses(prediction_type: str) -> None:
    process = NoiseProcess(prediction_type=prediction_type)
    gen = torch.Generator().manual_seed(1)
    x0, eps, pred = (torch.randn(4, 3, 4, 4, generator=gen) for _ in range(3))
    t = torch.tensor([0, 10, 300, 900])
    per_sample = ((pred - process.target(x0, eps, t)) ** 2).mean(dim=(1, 2, 3))
    expected = (per_sample * process.loss_weights(t, 2.0)).mean()
    torch.testing.assert_close(process.training_loss(pred, x0, eps, t, snr_gamma=2.0), expected)
    # A bf16 prediction (autocast) still gives a float32 loss.
    loss = process.training_loss(pred.bfloat16(), x0, eps, t, snr_gamma=2.0)
    assert loss.dtype == torch.float32 and loss.ndim == 0


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_no_gamma_is_exactly_the_plain_mse(prediction_type: str) -> None:
    process = NoiseProcess(prediction_type=prediction_type)
    x0, eps, pred = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    t = torch.tensor([1, 500, 998])
    plain = torch.nn.functional.mse_loss(pred, process.target(x0, eps, t))
    assert torch.equal(process.training_loss(pred, x0, eps, t), plain)
    assert torch.equal(process.training_loss(pred, x0, eps, t, snr_gamma=None), plain)
    assert torch.equal(process.loss_weights(t), torch.ones(3))


def test_large_gamma_leaves_epsilon_weights_at_one_below_it() -> None:
    process = NoiseProcess()
    t = torch.arange(1000)
    gamma = 1000.0
    snr = reference_snr(t)
    weights = process.loss_weights(t, gamma)
    below = snr < gamma * 0.99  # clear of the float32 rounding right at gamma
    assert below.sum() > 900 and torch.all(weights[below] == 1.0)
    assert torch.all(weights[snr > gamma * 1.01] < 1.0)
    with pytest.raises(ValueError, match="snr_gamma"):
        process.loss_weights(t, 0.0)
