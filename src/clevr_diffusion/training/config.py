"""Configuration of `DDPMTrainer`."""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.config import JsonConfig

__all__ = ["TrainerConfig"]


@dataclass
class TrainerConfig(JsonConfig):
    """Every setting of a training run; stored as ``trainer_config.json`` in the run folder.

    Attributes:
        output_dir: Run folder (checkpoints, sample grids, metrics, the final model).
        max_steps: Optimiser steps to train for.
        batch_size: Images per process and micro-batch.
        gradient_accumulation_steps: Micro-batches per optimiser step.
        learning_rate: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        adam_betas: AdamW betas.
        warmup_steps: Linear learning-rate warm-up from 0, in optimiser steps.
        lr_schedule: ``"constant"`` after warm-up, or ``"cosine"`` decay to 0 at ``max_steps``.
        max_grad_norm: Gradient clipping threshold (0 disables clipping).
        ema_decay: Decay of the EMA weights used for sampling.
        label_dropout: Probability of replacing a label by the all-zero "unconditional" label,
            which classifier-free guidance needs.
        random_flip: Flip images left-right at random (CLEVR labels carry no left/right).
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` (autocast; weights stay float32).
        cpu: Train on the CPU even when a GPU is available (several processes launched on a
            machine without CUDA use the CPU anyway).
        num_workers: DataLoader worker processes (ignored for a data set whose ``device`` is a
            GPU: it is read in the main process).
        seed: Seed of the data order, the noise, label dropout, flips and dropout (seed the
            model's initial weights yourself with ``torch.manual_seed`` before building it).
        log_every: Steps between lines in ``metrics.jsonl``.
        checkpoint_every: Steps between checkpoints (0: only at the end).
        keep_checkpoints: How many recent checkpoints to keep (0: all).
        sample_every: Steps between sample grids (0: only at the end; -1: never).
        sample_method: Sampler of the periodic grids.
        sample_steps: Its steps.
        sample_guidance: Its classifier-free guidance scale.
        num_sample_images: Images in each grid (the first label sets of test.json).
        push_to_hub: Hugging Face Hub repo id (``"user/name"``) to upload the finished model
            to (``None``: no upload). The token comes from ``HF_TOKEN`` or ``hf auth login``;
            it is never stored in this file.
        push_every: Also upload every this many steps (0: only at the end).
        hub_private: Create the repo private.
    """

    output_dir: str = "runs/clevr-ddpm"
    max_steps: int = 10_000
    batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500
    lr_schedule: str = "constant"
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    random_flip: bool = True
    mixed_precision: str = "no"
    cpu: bool = False
    num_workers: int = 0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    sample_every: int = 1000
    sample_method: str = "ddim"
    sample_steps: int = 50
    sample_guidance: float = 1.0
    num_sample_images: int = 16
    push_to_hub: str | None = None
    push_every: int = 0
    hub_private: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be 'constant' or 'cosine'"),
            (0.0 <= self.label_dropout < 1.0, "label_dropout must be in [0, 1)"),
            (self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision must be 'no', 'fp16' or 'bf16'"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (0 <= self.num_sample_images <= 32, "num_sample_images must be in [0, 32]"),
            (self.push_every >= 0, "push_every must be >= 0"),
            (self.push_every == 0 or bool(self.push_to_hub), "push_every needs push_to_hub (a repo id)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.push_to_hub:
            from ..hub import check_repo_id

            check_repo_id(self.push_to_hub)  # a typo fails now, not after hours of training

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): warm-up, then the schedule."""
        import math

        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            progress = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return self.learning_rate
