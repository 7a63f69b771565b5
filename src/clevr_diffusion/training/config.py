"""Configuration of `DDPMTrainer`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..constants import MIXED_PRECISIONS
from ..utils.config import JsonConfig
from .schedule import LR_SCHEDULES, learning_rate_at

if TYPE_CHECKING:
    from ..diffusion.sampler import SamplingConfig

__all__ = ["MIXED_PRECISIONS", "TrainerConfig"]


@dataclass
class TrainerConfig(JsonConfig):
    """Every setting of a training run; stored as ``trainer_config.json`` in the run folder.

    Attributes:
        output_dir: Run folder (checkpoints, sample grids, metrics, the final model).
        max_steps: Optimiser steps to train for.
        time_limit_s: Also stop once this many seconds of wall time have passed in one call of
            `DDPMTrainer.train` (checked on the host after each step, in a run of several
            processes at each log step, where they agree; the run then ends as at
            ``max_steps``: checkpoint, samples, model), for training on a time budget. A run
            started again resumes from that checkpoint towards ``max_steps``. ``None``: no limit.
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
        mixed_precision: ``"auto"`` (``"bf16"`` on a CUDA device that supports it, else
            ``"no"``), ``"no"``, ``"fp16"`` or ``"bf16"``. Autocast only: the weights, the EMA
            weights, the optimiser state and the loss stay float32.
        tf32: Let float32 matmuls and convolutions use TF32 tensor cores on CUDA (Ampere or
            newer); no effect on the CPU.
        fused_optimizer: Use AdamW's fused kernel (``None``: on for CUDA, off otherwise; on the
            CPU it needs torch >= 2.4). Checkpoints resume with either setting.
        cudnn_benchmark: Let cuDNN time its convolution algorithms on the first steps and keep
            the fastest (the shapes never change during a run); no effect on the CPU.
        channels_last: Keep the model's weights (and its EMA copy's) and inputs in
            channels-last (NHWC) memory layout during training, the layout tensor-core
            convolutions and the fused attention kernels read directly. ``None``: on for CUDA,
            off otherwise (it halves the speed of CPU convolutions). Saved weights are ordinary
            contiguous tensors either way.
        compile: Train through ``torch.compile(model)`` (a slow first step while it compiles;
            needs a C++ compiler on the CPU). Checkpoints, EMA and the saved model keep plain
            `ConditionalUNet` state-dict keys.
        snr_gamma: Min-SNR-gamma loss weighting (Hang et al. 2023; 5 is the paper's value):
            see `NoiseProcess.loss_weights`. ``None``: the plain MSE.
        cpu: Train on the CPU even when a GPU is available (several processes launched on a
            machine without CUDA use the CPU anyway).
        num_workers: DataLoader worker processes (ignored for a data set whose ``device`` is a
            GPU, read in the main process, and for one read by index gathers, ``can_gather``).
        seed: Seed of the data order, the noise, label dropout, flips and dropout (seed the
            model's initial weights yourself with ``torch.manual_seed`` before building it).
        log_every: Steps between lines in ``metrics.jsonl``; the loss is read back from the
            device (a synchronisation) only at these steps.
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
    time_limit_s: float | None = None
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
    mixed_precision: str = "auto"
    tf32: bool = True
    cudnn_benchmark: bool = True
    fused_optimizer: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    snr_gamma: float | None = None
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
            (self.time_limit_s is None or self.time_limit_s > 0, "time_limit_s must be > 0 (or None)"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.lr_schedule in LR_SCHEDULES, "lr_schedule must be 'constant' or 'cosine'"),
            (0.0 <= self.label_dropout < 1.0, "label_dropout must be in [0, 1)"),
            (
                self.mixed_precision in MIXED_PRECISIONS,
                "mixed_precision must be 'auto', 'no', 'fp16' or 'bf16'",
            ),
            (self.snr_gamma is None or self.snr_gamma > 0, "snr_gamma must be > 0 (or None)"),
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
            from ..model_folder import check_repo_id

            check_repo_id(self.push_to_hub)  # a typo fails now, not after hours of training

    def resolve_mixed_precision(self, device_type: str, bf16_supported: bool) -> str:
        """The autocast precision for a device: ``"auto"`` made concrete.

        Args:
            device_type: ``"cuda"``, ``"cpu"``, ... (the training device's type).
            bf16_supported: Whether that device runs bfloat16 well
                (``torch.cuda.is_bf16_supported()`` for CUDA).

        Returns:
            ``"no"``, ``"fp16"`` or ``"bf16"``.
        """
        if self.mixed_precision != "auto":
            return self.mixed_precision
        # bf16 keeps float32's exponent range, so it needs no loss scaling. CPUs are left at
        # float32: bf16 there only pays on chips with bf16 instructions, which torch cannot
        # be asked about portably, so it is an explicit choice.
        return "bf16" if device_type == "cuda" and bf16_supported else "no"

    def use_fused_optimizer(self, device_type: str) -> bool:
        """Whether AdamW uses its fused kernel on a device of type ``device_type``."""
        if self.fused_optimizer is not None:
            return self.fused_optimizer
        return device_type == "cuda"

    def use_channels_last(self, device_type: str) -> bool:
        """Whether training on a device of type ``device_type`` uses the channels-last layout."""
        if self.channels_last is not None:
            return self.channels_last
        return device_type == "cuda"

    def sampling_config(self) -> SamplingConfig:
        """The sampling settings of the grids (``sample_method``, ``sample_steps``,
        ``sample_guidance``), which a finished model also saves as its default."""
        from ..diffusion.sampler import SamplingConfig

        return SamplingConfig(method=self.sample_method, num_inference_steps=self.sample_steps, guidance_scale=self.sample_guidance)

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): warm-up, then the schedule
        (`clevr_diffusion.training.schedule.learning_rate_at`)."""
        return learning_rate_at(step, self.learning_rate, self.warmup_steps, self.max_steps, self.lr_schedule)
