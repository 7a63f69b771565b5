"""Drawing images from a trained model: DDPM, DDIM or DPM-Solver++ with classifier-free guidance."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..hub import PushToHubMixin
from ..labels import Vocabulary
from ..models.unet import ConditionalUNet
from ..utils.config import JsonConfig
from ..utils.images import save_grid, save_images, to_pil
from ..utils.io import atomic_write_json
from .noise import SCHEDULER_CONFIG_NAME, NoiseConfig
from .schedulers import DEFAULT_STEPS, SAMPLING_METHODS, build_scheduler

__all__ = ["DDPMSampler", "SampleOutput", "SamplingConfig"]

logger = logging.getLogger(__name__)

SAMPLER_CONFIG_NAME = "sampler_config.json"

Labels = Sequence[Sequence[str]] | torch.Tensor


@dataclass
class SamplingConfig(JsonConfig):
    """Default sampling settings stored with a model (``sampler_config.json``).

    Attributes:
        method: ``"ddpm"``, ``"ddim"`` or ``"dpm++"``.
        num_inference_steps: Denoising steps (``None``: 1000 for DDPM, 50 for DDIM, 20 for
            DPM-Solver++).
        guidance_scale: Classifier-free guidance scale; 1 is plain conditional sampling, larger
            values follow the labels more closely.
        image_size: Side of the square images drawn (``None``: the model's ``sample_size``).
        batch_size: Images per forward pass (larger requests are split).
    """

    method: str = "ddpm"
    num_inference_steps: int | None = None
    guidance_scale: float = 1.0
    image_size: int | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.method not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling method {self.method!r}; choose one of {SAMPLING_METHODS}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class SampleOutput:
    """Images drawn by `DDPMSampler.sample`.

    Attributes:
        images: (B, 3, H, W) float32 on the CPU, in [-1, 1].
        labels: The B label lists the images were drawn for.
        trajectory: With ``return_trajectory``: (F, B, 3, H, W) frames in [-1, 1] from pure
            noise (frame 0) to the final image (frame F - 1); otherwise ``None``.
        frame_steps: For each trajectory frame, how many denoising steps had been taken.
    """

    images: torch.Tensor
    labels: list[list[str]]
    trajectory: torch.Tensor | None = None
    frame_steps: list[int] = field(default_factory=list)

    def to_pil(self) -> list[Image.Image]:
        """The images as RGB PIL images."""
        return to_pil(self.images)

    def save(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Save each image as ``folder/0.png, 1.png, ...`` in order."""
        return save_images(self.images, folder)

    def save_grid(self, path: str | os.PathLike[str], nrow: int = 8, upscale: int = 1) -> Path:
        """Save all images as one PNG grid, ``nrow`` a row."""
        return save_grid(self.images, path, nrow=nrow, upscale=upscale)

    def save_trajectory(self, path: str | os.PathLike[str], index: int = 0, upscale: int = 1) -> Path:
        """Save the denoising frames of image ``index`` as one PNG row (noise left, image right)."""
        if self.trajectory is None:
            raise ValueError("no trajectory was captured: sample with return_trajectory=True")
        frames = self.trajectory[:, index]
        return save_grid(frames, path, nrow=len(frames), upscale=upscale)


class DDPMSampler(PushToHubMixin):
    """Draws label-conditioned images from a trained `ConditionalUNet`.

    Needs no data set and no trainer: a model, the noise schedule it was trained with, and
    optionally default sampling settings.

    Args:
        model: The trained network (EMA weights recommended).
        noise_config: The schedule the model was trained with.
        config: Default sampling settings; per-call arguments of `sample` override them.
        vocabulary: Label vocabulary (default: i-CLEVR's 24 objects).
        device: Where to run (default: the model's device).
    """

    def __init__(
        self,
        model: ConditionalUNet,
        noise_config: NoiseConfig | None = None,
        config: SamplingConfig | None = None,
        vocabulary: Vocabulary | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.model = model.eval()
        self.noise_config = noise_config or NoiseConfig()
        self.config = config or SamplingConfig()
        self.vocabulary = vocabulary or Vocabulary.default()
        if len(self.vocabulary) != model.config.num_labels:
            raise ValueError(
                f"the vocabulary has {len(self.vocabulary)} names but the model takes "
                f"{model.config.num_labels} labels"
            )
        if device is not None:
            self.model.to(device)

    @property
    def device(self) -> torch.device:
        """The device the model runs on."""
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------- saving
    def save_pretrained(self, folder: str | os.PathLike[str], ema_state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the whole sampler to ``folder``.

        Files: the model's ``config.json`` and ``model.safetensors`` (plus
        ``model_ema.safetensors`` when given), ``scheduler_config.json`` (loadable by
        ``diffusers.DDPMScheduler.from_pretrained``), ``sampler_config.json`` (default
        settings and the label vocabulary) and a model card, ``README.md`` (a hand-written
        one is kept).
        """
        from ..hub import write_model_card

        folder = Path(folder)
        self.model.save_pretrained(folder, ema_state_dict=ema_state_dict)
        self.noise_config.save_scheduler_config(folder)
        sampler = {"sampling": self.config.to_dict(), "vocabulary": list(self.vocabulary.names)}
        atomic_write_json(folder / SAMPLER_CONFIG_NAME, sampler)
        write_model_card(folder)
        return folder

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        use_ema: bool = True,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
    ) -> DDPMSampler:
        """Load a sampler saved by `save_pretrained` (or by the trainer), from a folder or the Hub.

        Example:
            ``DDPMSampler.from_pretrained("user/clevr-ddpm")`` downloads the repo once into
            the Hugging Face cache; later calls, offline ones included, read the cache.

        Args:
            name_or_path: The saved folder, or a Hub repo id such as ``"user/clevr-ddpm"``
                (an existing local folder of that name wins).
            device: Where to run.
            use_ema: Use the EMA weights when there are some.
            revision: Branch, tag or commit id of a repo (default: main).
            token: Hub token for a private repo (default: ``HF_TOKEN`` or the saved login).
            cache_dir: Download cache (default: the Hub cache under ``HF_HOME``).
            local_files_only: Load from the cache only, never the network.
            force_download: Download again even if cached.

        Raises:
            FileNotFoundError: If the folder or repo is missing (or not cached while
                offline), or lacks ``config.json`` or the weights.
            ValueError: If a repo has no such revision, or a weights file is damaged.
            CheckpointMismatchError: If the weights belong to another configuration.
        """
        from ..hub import resolve_model_folder

        source = resolve_model_folder(
            name_or_path,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        folder = source.folder
        model = ConditionalUNet._from_source(source, use_ema, device)
        noise = NoiseConfig()
        if (folder / SCHEDULER_CONFIG_NAME).is_file():
            scheduler = json.loads((folder / SCHEDULER_CONFIG_NAME).read_text(encoding="utf-8"))
            noise = NoiseConfig.from_scheduler_config(scheduler)
        else:
            logger.warning("%s has no %s; assuming the default noise schedule", source.describe(), SCHEDULER_CONFIG_NAME)
        config, vocabulary = SamplingConfig(), None
        if (folder / SAMPLER_CONFIG_NAME).is_file():
            saved = json.loads((folder / SAMPLER_CONFIG_NAME).read_text(encoding="utf-8"))
            config = SamplingConfig.from_dict(saved.get("sampling", {}))
            if "vocabulary" in saved:
                vocabulary = Vocabulary(saved["vocabulary"])
        return cls(model, noise, config, vocabulary, device)

    # ---------------------------------------------------------------------------- sampling
    def encode(self, labels: Labels) -> tuple[torch.Tensor, list[list[str]]]:
        """Turn label lists (or a (B, 24) multi-hot tensor) into (B, 24) float32 and name lists."""
        if isinstance(labels, torch.Tensor):
            if labels.ndim != 2 or labels.shape[1] != len(self.vocabulary):
                raise ValueError(f"label tensor must be (B, {len(self.vocabulary)}), got {tuple(labels.shape)}")
            vectors = labels.float()
            return vectors, [list(names) for names in self.vocabulary.decode(vectors)]
        if isinstance(labels, str):
            raise ValueError(f"labels must be a list of label lists, e.g. [[{labels!r}]], not a string")
        lists = [list(item) for item in labels]
        return self.vocabulary.encode_batch(lists), [[self.vocabulary.normalize(n) for n in item] for item in lists]

    @torch.inference_mode()
    def _denoise(
        self,
        labels: torch.Tensor,
        scheduler: Any,
        guidance: float,
        size: int,
        generator: torch.Generator | None,
        capture: list[int] | None,
        progress: bool,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        device = self.device
        dtype = next(self.model.parameters()).dtype
        batch = labels.shape[0]
        shape = (batch, self.model.config.in_channels, size, size)
        # Initial noise comes from a CPU generator so a seed gives the same images everywhere.
        x = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
        x = x * scheduler.init_noise_sigma
        labels = labels.to(device)
        guided = guidance != 1.0
        model_labels = torch.cat([labels, torch.zeros_like(labels)]) if guided else labels
        frames = [x.float().cpu()] if capture is not None else []
        # DDPM's step draws fresh noise and takes our generator; deterministic solvers do not.
        takes_generator = "generator" in inspect.signature(scheduler.step).parameters
        step_kwargs = {"generator": generator} if takes_generator else {}
        for i, t in enumerate(tqdm(scheduler.timesteps, desc="sampling", leave=False, disable=not progress)):
            model_in = scheduler.scale_model_input(x, t)
            model_in = torch.cat([model_in, model_in]) if guided else model_in
            out = self.model(model_in.to(dtype), t.to(device).expand(model_in.shape[0]), model_labels).float()
            if guided:
                cond, uncond = out.chunk(2)
                out = uncond + guidance * (cond - uncond)
            x = scheduler.step(out, t, x, **step_kwargs).prev_sample
            if capture is not None and i in capture:
                frames.append(x.float().cpu())
        return x.float().clamp(-1, 1).cpu(), frames

    def resolve_settings(
        self,
        method: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> tuple[str, int, float]:
        """The method, step count and guidance scale `sample` uses for these arguments.

        ``None`` falls back to `config`, then to the method's default step count (never more
        than the model's T).

        Raises:
            ValueError: For an unknown method or more steps than the model was trained with.
        """
        cfg = self.config
        method = method or cfg.method
        if method not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling method {method!r}; choose one of {', '.join(SAMPLING_METHODS)}")
        steps = num_inference_steps or (cfg.num_inference_steps if method == cfg.method else None)
        steps = steps or min(DEFAULT_STEPS[method], self.noise_config.num_train_timesteps)
        if steps > self.noise_config.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps={steps} exceeds the {self.noise_config.num_train_timesteps} "
                "diffusion steps the model was trained with; use at most that many"
            )
        guidance = cfg.guidance_scale if guidance_scale is None else float(guidance_scale)
        return method, steps, guidance

    def sample(
        self,
        labels: Labels,
        *,
        method: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        image_size: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        return_trajectory: bool = False,
        trajectory_frames: int = 10,
        progress: bool = True,
    ) -> SampleOutput:
        """Draw one image for each label set.

        Args:
            labels: B label lists such as ``[["red sphere", "cyan cube"], ["gray cylinder"]]``,
                or a (B, 24) multi-hot tensor.
            method: ``"ddpm"``, ``"ddim"`` or ``"dpm++"`` (default from `config`).
            num_inference_steps: Denoising steps (default from `config`, then per method).
            guidance_scale: Classifier-free guidance scale (1: none).
            image_size: Side of the square images (default: the model's ``sample_size``).
            generator: A CPU ``torch.Generator`` for reproducible draws.
            seed: Shortcut for ``generator=torch.Generator().manual_seed(seed)``.
            return_trajectory: Also keep ``trajectory_frames`` frames from noise to image.
            trajectory_frames: Frames to keep, first (pure noise) and last (the image) included.
            progress: Show a progress bar.

        Returns:
            A `SampleOutput` whose ``images`` are (B, 3, H, W) in [-1, 1].
        """
        cfg = self.config
        method, steps, guidance = self.resolve_settings(method, num_inference_steps, guidance_scale)
        size = image_size or cfg.image_size or self.model.config.sample_size
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        if return_trajectory and trajectory_frames < 2:
            raise ValueError("trajectory_frames must be >= 2 (noise and image)")

        vectors, names = self.encode(labels)
        scheduler = build_scheduler(method, self.noise_config.scheduler_config())
        scheduler.set_timesteps(steps)
        actual_steps = len(scheduler.timesteps)
        capture = None
        if return_trajectory:
            # Indices of the steps after which a frame is kept, spread evenly, last step included.
            keep = torch.linspace(0, actual_steps - 1, trajectory_frames)[1:].round().long().tolist()
            capture = sorted(set(keep))
        images, trajectories = [], []
        for start in range(0, len(vectors), cfg.batch_size):
            chunk = vectors[start : start + cfg.batch_size]
            if start:
                scheduler = build_scheduler(method, self.noise_config.scheduler_config())
                scheduler.set_timesteps(steps)
            x, frames = self._denoise(chunk, scheduler, guidance, size, generator, capture, progress)
            images.append(x)
            if frames:
                trajectories.append(torch.stack(frames))
        output = SampleOutput(images=torch.cat(images), labels=names)
        if return_trajectory:
            output.trajectory = torch.cat(trajectories, dim=1).clamp(-1, 1)
            output.frame_steps = [0] + [i + 1 for i in capture]
        return output

