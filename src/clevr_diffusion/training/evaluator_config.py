"""Settings of `train_evaluator`, apart from it so the command's options read them without torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..render.randomization import DomainRandomization
from ..utils.config import JsonConfig

__all__ = ["EvaluatorTrainingConfig"]


@dataclass
class EvaluatorTrainingConfig(JsonConfig):
    """What `train_evaluator` renders and how it trains.

    Attributes:
        output_dir: Folder for the rendered set, checkpoints, metrics and the weights.
        num_images: Training images to render (64 x 64).
        clevr_fraction: Share of full-CLEVR scenes (any size and material); the rest are
            i-CLEVR style (large rubber, distinct labels).
        min_objects: Fewest objects per image.
        max_objects: Most objects per image (the official evaluator saw up to 5).
        randomization: Domain randomisation of the rendering.
        supersample: Renderer supersampling (k x k samples a pixel).
        shaded_per_pixel: How many of those samples are shaded on diffuse surfaces (see
            `clevr_diffusion.render.render`); ``None`` keeps the renderer's default (every
            sample). Fewer renders faster and noisier.
        batch_size: Images per step.
        max_steps: Optimiser steps.
        learning_rate: Peak AdamW learning rate (cosine decay after a short warm-up).
        weight_decay: AdamW weight decay.
        seed: Seed of the scenes, the rendering and the training.
        checkpoint_every: Steps between checkpoints (resume restarts from the last one).
        init_from: Optional weights (safetensors) to start from instead of random ones, e.g.
            to fine-tune a trained evaluator with a new, lower learning-rate schedule.
        device: Where to render and train (``"cpu"``, ``"cuda"``, ...). The rendered images
            and the augmentation's random draws differ between devices by rounding only.
        mixed_precision: ``"no"`` or ``"bf16"`` (autocast of the forward pass; weights and
            loss stay float32). bf16 trains 1.4-1.7x faster on CPUs with bf16 instructions
            and is the usual choice on GPUs.
        workers: Processes that draw the scenes (their visibility check costs milliseconds
            a scene, the bulk of the time when rendering on a GPU).
        maxpool: Keep the ResNet's stem max pool (the official layout). ``False`` trains the
            finer variant (see `clevr_diffusion.models.resnet.ResNet18`), which sees small
            objects better for about 3x the compute; the saved weights record the choice.
    """

    output_dir: str = "runs/evaluator"
    num_images: int = 40_000
    clevr_fraction: float = 0.4
    min_objects: int = 1
    max_objects: int = 5
    randomization: DomainRandomization = field(default_factory=DomainRandomization)
    supersample: int = 2
    shaded_per_pixel: int | None = None
    batch_size: int = 64
    max_steps: int = 8_000
    learning_rate: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0
    checkpoint_every: int = 250
    init_from: str | None = None
    device: str = "cpu"
    mixed_precision: str = "no"
    workers: int = 1
    maxpool: bool = True

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")
        if self.shaded_per_pixel is not None and not 1 <= self.shaded_per_pixel <= self.supersample**2:
            raise ValueError(
                f"shaded_per_pixel must be between 1 and supersample**2 = {self.supersample**2}, "
                f"got {self.shaded_per_pixel}; raise supersample or shade fewer samples"
            )
