"""NoiseProcess: beta schedules, noising clean images and the regression targets.

Run from the repository root (takes a few seconds on a CPU, no model involved):

    python examples/noise.py

It prints how much signal (sqrt of alpha-bar) each beta schedule keeps at a few timesteps,
checks ``add_noise`` against the closed form ``sqrt(abar) x0 + sqrt(1 - abar) noise``,
shows the epsilon and velocity targets and the training loss, and saves nothing.
"""

from __future__ import annotations

import torch

from clevr_diffusion import NoiseConfig, NoiseProcess


def main() -> None:
    # The three beta schedules: how much of the clean image survives at step t.
    steps = [0, 250, 500, 750, 999]
    print("signal kept, sqrt(alpha-bar_t), at t =", steps)
    for schedule in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        noise = NoiseProcess(beta_schedule=schedule)  # keyword arguments override NoiseConfig fields
        kept = noise.alphas_cumprod[steps].sqrt()
        print(f"  {schedule:<18}", " ".join(f"{v:.3f}" for v in kept.tolist()))

    # Noising a batch: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, all through diffusers.
    generator = torch.Generator().manual_seed(0)
    process = NoiseProcess(NoiseConfig(num_train_timesteps=1000, beta_schedule="linear"))
    x0 = torch.rand(4, 3, 16, 16, generator=generator) * 2 - 1  # "images" in [-1, 1]
    eps = torch.randn(x0.shape, generator=generator)
    t = process.sample_timesteps(4, generator=generator)
    x_t = process.add_noise(x0, eps, t)
    abar = process.alphas_cumprod[t].view(-1, 1, 1, 1)
    closed_form = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    print("timesteps drawn:", t.tolist())
    print("add_noise matches the closed form:", torch.allclose(x_t, closed_form, atol=1e-6))
    print("std of x_t per image:", [round(v, 2) for v in x_t.std(dim=(1, 2, 3)).tolist()])

    # What the network learns to predict: the noise (epsilon) or the velocity v.
    print("epsilon target is the noise itself:", torch.equal(process.target(x0, eps, t), eps))
    v_process = NoiseProcess(prediction_type="v_prediction")
    v = v_process.target(x0, eps, t)
    print("v target = sqrt(abar) noise - sqrt(1 - abar) x0:",
          torch.allclose(v, abar.sqrt() * eps - (1 - abar).sqrt() * x0, atol=1e-6))

    # The training loss is the MSE between a prediction and the target (in float32).
    perfect = process.training_loss(eps, x0, eps, t)
    guess_zero = process.training_loss(torch.zeros_like(eps), x0, eps, t)
    print(f"loss of a perfect prediction: {perfect.item():.4f}; of predicting zeros: {guess_zero.item():.4f}")

    # The config is what samplers need to run the reverse process on the same schedule.
    print("scheduler config for diffusers:", {k: process.config.scheduler_config()[k]
                                              for k in ("num_train_timesteps", "beta_schedule", "prediction_type")})


if __name__ == "__main__":
    main()
