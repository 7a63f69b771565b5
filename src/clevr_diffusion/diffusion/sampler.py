"""Drawing images from a trained model: DDPM, DDIM, DPM-Solver++ or UniPC with classifier-free guidance."""

from __future__ import annotations

import inspect
import logging
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..labels import LabelError, Vocabulary, validate_label_tensor
from ..model_folder import (
    SAMPLER_CONFIG_NAME,
    SCHEDULER_CONFIG_NAME,
    ModelSource,
    PushToHubMixin,
    resolve_model_folder,
    write_model_card,
)
from ..models.unet import ConditionalUNet
from ..utils.config import JsonConfig, read_json_file
from ..utils.images import save_grid, save_images, to_pil
from ..utils.io import atomic_write_json
from .guidance import GuidanceBatch, GuidanceMode, plan_guidance, validate_guidance
from .noise import NoiseConfig, NoiseProcess
from .schedulers import DEFAULT_STEPS, SAMPLING_METHODS, build_scheduler, parse_preset
from .settings import SamplingSettings

__all__ = ["DDPMSampler", "SampleOutput", "SamplingConfig", "SamplingSettings"]

logger = logging.getLogger(__name__)

Labels = Sequence[Sequence[str]] | torch.Tensor

_DAMAGED_FOLDER_HINT = (
    "the model folder is damaged: download it again (force_download=True) or write it again with save_pretrained"
)


@dataclass
class SamplingConfig(JsonConfig):
    """Default sampling settings stored with a model (``sampler_config.json``).

    Attributes:
        method: ``"ddpm"``, ``"ddim"``, ``"dpm++"`` or ``"unipc"``.
        num_inference_steps: Denoising steps (``None``: the preset's, else 1000 for DDPM, 50
            for DDIM, 20 for DPM-Solver++, 10 for UniPC).
        guidance_scale: Classifier-free guidance scale; 1 is plain conditional sampling, larger
            values follow the labels more closely.
        image_size: Side of the square images drawn (``None``: the model's ``sample_size``).
        batch_size: Images per sampling batch (larger requests are split). The model sees
            twice as many rows with joint guidance, and objects + images with composable.
        preset: A name from `SAMPLING_PRESETS` such as ``"dpm++-20"``, or ``None``. It sets
            `method` (a different, explicitly given method is an error) and, when
            `num_inference_steps` is ``None``, the step count.
        guidance_rescale: Guidance rescale phi in [0, 1] (Lin et al. 2023); 0 is off.
        guidance_mode: ``"joint"`` (one conditional pass with the whole label set) or
            ``"composable"`` (one pass per object, Liu et al. 2022).
        output_size: Side the finished images are resized to (bilinear), or ``None`` to keep
            the drawn size. A model trained at 32 x 32 saves 64 here, so that its images come
            out at i-CLEVR's (and the evaluator's) 64 x 64.
    """

    method: str = "ddpm"
    num_inference_steps: int | None = None
    guidance_scale: float = 1.0
    image_size: int | None = None
    batch_size: int = 64
    preset: str | None = None
    guidance_rescale: float = 0.0
    guidance_mode: GuidanceMode = "joint"
    output_size: int | None = None

    def __post_init__(self) -> None:
        if self.preset is not None:
            self._apply_preset()
        if self.method not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling method {self.method!r}; choose one of {SAMPLING_METHODS}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        validate_guidance(self.guidance_scale, self.guidance_rescale, self.guidance_mode)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.output_size is not None and self.output_size < 1:
            raise ValueError(f"output_size must be >= 1 (or None), got {self.output_size}")

    def _apply_preset(self) -> None:
        """Normalise `preset` and make `method` agree with it."""
        assert self.preset is not None
        preset_method, _ = parse_preset(self.preset)
        self.preset = self.preset.strip().lower()
        default_method = next(f.default for f in fields(self) if f.name == "method")
        if self.method not in (preset_method, default_method):
            raise ValueError(
                f"preset {self.preset!r} samples with {preset_method!r}, but method={self.method!r}; "
                "give one or the other"
            )
        self.method = preset_method

    def replace(self, **changes: Any) -> SamplingConfig:
        """A copy with some fields changed; a new preset brings its method, a new method drops the preset."""
        if changes.get("preset") is not None and "method" not in changes:
            changes["method"] = parse_preset(changes["preset"])[0]
        elif "method" in changes and "preset" not in changes:
            changes["preset"] = None
        return super().replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields; the guidance and preset settings only when not default.

        Leaving the newer settings out at their defaults keeps ``sampler_config.json`` files
        readable by clevr-diffusion versions that predate them; `from_dict` restores them.
        """
        data = super().to_dict()
        for name, default in _OPTIONAL_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data


_OPTIONAL_DEFAULTS: dict[str, Any] = {"preset": None, "guidance_rescale": 0.0, "guidance_mode": "joint", "output_size": None}
"""`SamplingConfig` fields added after the first release, with the values that are left out of files."""


def _seeded_generator(seed: Any) -> torch.Generator:
    """A CPU generator seeded with ``seed``, a Python or NumPy integer.

    Raises:
        ValueError: For a bool, a float or anything else that is not an integer, or an
            integer outside torch's 64-bit seed range.
    """
    # NumPy integers are numbers.Integral but torch's manual_seed rejects them; bools are
    # Integral too, and a float seed would have to be rounded: both are mistakes.
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {type(seed).__name__} {seed!r}; e.g. seed=0")
    value = int(seed)
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"seed {value} is outside the 64-bit range torch seeds take; use 0 <= seed < 2**64")
    return torch.Generator().manual_seed(value)


def _resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """(N, 3, h, w) in [-1, 1] resized to (N, 3, size, size), bilinearly (antialiased when
    shrinking); unchanged when ``size`` is ``None`` or already the size."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    shrink = size < images.shape[-1]
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=shrink).clamp(-1, 1)


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


_VISIBLE_LOG_SNR = (-3.0, 5.0)
"""Log signal-to-noise ratios outside which a trajectory frame changes little to the eye: below,
the signal is under a quarter of the noise and a 64 x 64 frame looks like plain noise; above,
the noise is under a twelfth of the signal and the frame looks finished."""


def trajectory_steps(timesteps: torch.Tensor, noise_config: NoiseConfig, frames: int) -> list[int]:
    """Indices of the denoising steps after which a trajectory keeps a frame (the last included).

    The frames between the initial noise and the finished image are spread evenly in log
    signal-to-noise ratio, ``log(abar / (1 - abar))``, over the range where the picture
    changes (`_VISIBLE_LOG_SNR`), not evenly in steps: with evenly spaced steps most frames
    of a fast sampler are still plain noise, and the scene appears only in the last few.

    Args:
        timesteps: (S,) the sampler's timesteps, from the noisiest down.
        noise_config: The noise process the model was trained with.
        frames: Frames wanted, the initial noise included (>= 2).

    Returns:
        ``min(frames - 1, S)`` increasing step indices in [0, S), ``S - 1`` last: for each
        target level, the nearest step not taken yet that leaves room for the later targets.
    """
    abar = NoiseProcess(noise_config).alphas_cumprod.double()
    log_snr = (abar / (1 - abar)).log()
    # The level reached after each step: the next step's timestep (the clean image after the last).
    after = log_snr[torch.cat([timesteps[1:].long().cpu(), torch.zeros(1, dtype=torch.long)])]
    steps = len(after)
    low = max(float(log_snr[int(timesteps[0])]), _VISIBLE_LOG_SNR[0])
    high = min(float(after[-1]), _VISIBLE_LOG_SNR[1])
    middle = torch.linspace(low, high, frames)[1:-1].tolist()[max(0, frames - 1 - steps) :]
    picks: list[int] = []
    for j, target in enumerate(middle):
        first = picks[-1] + 1 if picks else 0
        last = steps - 1 - (len(middle) - j)  # inclusive: a step left for each later target and the image
        picks.append(first + int((after[first : last + 1] - target).abs().argmin()))
    return [*picks, steps - 1]


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
        compile: Run the network through ``torch.compile`` while sampling (mode
            ``"reduce-overhead"``, i.e. CUDA graphs, on CUDA; the default mode elsewhere). The
            first call compiles (seconds to minutes); later calls with the same batch shapes
            reuse the compiled module, which is cached on the sampler. Off by default. May be
            switched later through the ``compile`` attribute.
    """

    def __init__(
        self,
        model: ConditionalUNet,
        noise_config: NoiseConfig | None = None,
        config: SamplingConfig | None = None,
        vocabulary: Vocabulary | None = None,
        device: str | torch.device | None = None,
        compile: bool = False,  # noqa: A002 - mirrors torch.compile
    ) -> None:
        self.compile = compile
        # (compiled module, the model and device type it was compiled for)
        self._compiled: tuple[torch.nn.Module, ConditionalUNet, str] | None = None
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

    def network(self) -> torch.nn.Module:
        """The module the sampling loop calls: `model`, or its cached compiled version.

        The compiled module is rebuilt only when `model` is replaced or moves to another kind
        of device (CUDA graphs are CUDA-only).
        """
        if not self.compile:
            return self.model
        device_type = self.device.type
        cached = self._compiled
        if cached is None or cached[1] is not self.model or cached[2] != device_type:
            mode = "reduce-overhead" if device_type == "cuda" else None
            cached = (torch.compile(self.model, mode=mode), self.model, device_type)
            self._compiled = cached
        return cached[0]

    # ----------------------------------------------------------------------------- saving
    def save_pretrained(self, folder: str | os.PathLike[str], ema_state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the whole sampler to ``folder``.

        Files: the model's ``config.json`` and ``model.safetensors`` (plus
        ``model_ema.safetensors`` when given), ``scheduler_config.json`` (loadable by
        ``diffusers.DDPMScheduler.from_pretrained``), ``sampler_config.json`` (default
        settings and the label vocabulary) and a model card, ``README.md`` (a hand-written
        one is kept).
        """
        folder = Path(folder)
        self.model.save_pretrained(folder, ema_state_dict=ema_state_dict)
        self.noise_config.save_scheduler_config(folder)
        atomic_write_json(folder / SAMPLER_CONFIG_NAME, self.sampler_config())
        write_model_card(folder)
        return folder

    def sampler_config(self, config: SamplingConfig | None = None) -> dict[str, Any]:
        """The content of ``sampler_config.json``: the default settings (`config`'s unless
        given) and the label vocabulary."""
        return {"sampling": (config or self.config).to_dict(), "vocabulary": list(self.vocabulary.names)}

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        use_ema: bool = True,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        compile: bool = False,  # noqa: A002 - mirrors torch.compile
    ) -> DDPMSampler:
        """Load a bundled model, or a sampler saved by `save_pretrained` (or the trainer).

        ``name_or_path`` is read in this order: ``None`` is the bundled default model
        (`clevr_diffusion.pretrained.DEFAULT_MODEL`); an existing local folder is loaded as it
        is; a bundled model's name (a key of ``PRETRAINED_MODELS``, such as
        ``"clevr-ddpm-small"``) is that model, shipped inside the package; anything else is a
        Hugging Face Hub repo id. Bundled models load offline.

        Example:
            ``DDPMSampler.from_pretrained()`` loads the bundled default model.
            ``DDPMSampler.from_pretrained("user/clevr-ddpm")`` downloads the repo once into
            the Hugging Face cache; later calls, offline ones included, read the cache.

        Args:
            name_or_path: ``None`` (the default bundled model), a bundled model's name, the
                saved folder, or a Hub repo id such as ``"user/clevr-ddpm"``.
            device: Where to run.
            use_ema: Use the EMA weights when there are some.
            revision: Branch, tag or commit id of a repo (default: main).
            token: Hub token for a private repo (default: ``HF_TOKEN`` or the saved login).
            cache_dir: Download cache (default: the Hub cache under ``HF_HOME``).
            local_files_only: Load from the cache only, never the network.
            force_download: Download again even if cached.
            compile: Compile the network for sampling (see `DDPMSampler`).

        Raises:
            FileNotFoundError: If the folder or repo is missing (or not cached while
                offline), or lacks ``config.json`` or the weights (or some of their shards),
                or the bundled model is not in this installation (the message lists those
                that are).
            ValueError: If a repo has no such revision, a weights file is damaged, or a config file
                (``scheduler_config.json``, ``sampler_config.json``, ``config.json``) is not valid JSON.
            CheckpointMismatchError: If the weights belong to another configuration.
        """
        source = resolve_model_folder(
            name_or_path,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        return cls.from_source(source, device, use_ema, compile=compile)

    @classmethod
    def from_source(
        cls,
        source: ModelSource,
        device: str | torch.device = "cpu",
        use_ema: bool = True,
        *,
        compile: bool = False,  # noqa: A002 - mirrors torch.compile
    ) -> DDPMSampler:
        """Load the sampler in a folder `resolve_model_folder` found (see `from_pretrained`).

        Raises:
            FileNotFoundError: If the folder lacks ``config.json`` or the weights.
            ValueError: If a weights or config file is damaged.
            CheckpointMismatchError: If the weights belong to another configuration.
        """
        folder = source.folder
        model = ConditionalUNet.from_source(source, use_ema, device)
        noise = NoiseConfig()
        if (folder / SCHEDULER_CONFIG_NAME).is_file():
            scheduler = read_json_file(folder / SCHEDULER_CONFIG_NAME, _DAMAGED_FOLDER_HINT)
            noise = NoiseConfig.from_scheduler_config(scheduler)
        else:
            logger.warning("%s has no %s; assuming the default noise schedule", source.describe(), SCHEDULER_CONFIG_NAME)
        config, vocabulary = SamplingConfig(), None
        if (folder / SAMPLER_CONFIG_NAME).is_file():
            saved = read_json_file(folder / SAMPLER_CONFIG_NAME, _DAMAGED_FOLDER_HINT)
            config = SamplingConfig.from_dict(saved.get("sampling", {}))
            if "vocabulary" in saved:
                vocabulary = Vocabulary(saved["vocabulary"])
        return cls(model, noise, config, vocabulary, device, compile=compile)

    # ---------------------------------------------------------------------------- sampling
    def encode(self, labels: Labels) -> tuple[torch.Tensor, list[list[str]]]:
        """Turn label lists (or a (B, 24) multi-hot tensor) into (B, 24) float32 and name lists.

        Raises:
            LabelError: For no label sets, a flat list of names, unknown names, or a tensor
                that is not 0/1 with at most ``vocabulary.max_objects`` ones per row (all-zero
                rows, unconditional images, are valid).
        """
        vocab = self.vocabulary
        if isinstance(labels, torch.Tensor):
            validate_label_tensor(labels, len(vocab), vocab.max_objects, allow_unconditional=True)
            vectors = labels.float()
            names = [list(item) for item in vocab.decode(vectors)]
        elif isinstance(labels, str):
            raise LabelError(f"labels must be a list of label lists, e.g. [[{labels!r}]], not a string")
        else:
            rows = list(labels)
            vectors = vocab.encode_batch(rows)  # checks the rows first: a flat list of names, unknown names
            names = [[vocab.normalize(n) for n in item] for item in rows]
        if not names:
            raise LabelError("no label sets given: pass one label list per image, e.g. [['red cube'], ['blue sphere']]")
        return vectors, names

    def _predict(self, network: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, plan: GuidanceBatch) -> torch.Tensor:
        """One batched forward of every row of ``plan``, reduced to (B, C, H, W) float32 predictions."""
        model_in = plan.expand(x)
        dtype = next(self.model.parameters()).dtype
        graphs = self.compile and model_in.device.type == "cuda"
        if graphs:
            # Each call replays the CUDA graph into the same output buffer: mark the new step
            # and copy the output before anything keeps it (multistep solvers do).
            torch.compiler.cudagraph_mark_step_begin()
        out = network(model_in.to(dtype), t.to(model_in.device).expand(model_in.shape[0]), plan.labels)
        out = out.clone() if graphs else out
        return plan.combine(out.float())

    @torch.inference_mode()
    def _denoise(
        self,
        plan: GuidanceBatch,
        scheduler: Any,
        size: int,
        generator: torch.Generator | None,
        capture: list[int] | None,
        progress: bool,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        device = self.device
        shape = (plan.num_images, self.model.config.in_channels, size, size)
        # Initial noise comes from a CPU generator so a seed gives the same images everywhere.
        x = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
        x = x * scheduler.init_noise_sigma
        plan = plan.to(device)
        network = self.network()
        frames = [x.float().cpu()] if capture is not None else []
        # DDPM's step draws fresh noise and takes our generator; deterministic solvers do not.
        takes_generator = "generator" in inspect.signature(scheduler.step).parameters
        step_kwargs = {"generator": generator} if takes_generator else {}
        for i, t in enumerate(tqdm(scheduler.timesteps, desc="sampling", leave=False, disable=not progress)):
            out = self._predict(network, scheduler.scale_model_input(x, t), t, plan)
            x = scheduler.step(out, t, x, **step_kwargs).prev_sample
            if capture is not None and i in capture:
                frames.append(x.float().cpu())
        return x.float().clamp(-1, 1).cpu(), frames

    def resolve_settings(
        self,
        method: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        preset: str | None = None,
    ) -> tuple[str, int, float]:
        """The method, step count and guidance scale `sample` uses for these arguments.

        Precedence, first given wins: the explicit ``method`` / ``num_inference_steps``; the
        ``preset``'s; `config`'s (its own ``preset`` included); the method's default step count.
        A preset's or default step count never exceeds the model's T (``"ddpm-1000"`` on a
        model trained with T = 50 takes 50 steps); a preset's step count only goes with its
        own method (``preset="dpm++-20", method="ddim"`` takes DDIM's 50).

        Raises:
            ValueError: For an unknown method or preset, or more explicit steps than the model
                was trained with.
        """
        cfg = self.config
        limit = self.noise_config.num_train_timesteps
        if preset is not None:
            base_method, base_steps = parse_preset(preset)
        else:
            base_method = cfg.method
            base_steps = cfg.num_inference_steps or (
                min(parse_preset(cfg.preset)[1], limit) if cfg.preset is not None else None
            )
        method = method or base_method
        if method not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling method {method!r}; choose one of {', '.join(SAMPLING_METHODS)}")
        if num_inference_steps is not None:
            steps = num_inference_steps
        elif method == base_method and base_steps is not None:
            steps = base_steps if preset is None else min(base_steps, limit)
        else:
            steps = min(DEFAULT_STEPS[method], limit)
        if steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {steps}")
        if steps > limit:
            raise ValueError(
                f"num_inference_steps={steps} exceeds the {limit} "
                "diffusion steps the model was trained with; use at most that many"
            )
        guidance = cfg.guidance_scale if guidance_scale is None else float(guidance_scale)
        return method, steps, guidance

    def resolve_guidance(
        self, guidance_rescale: float | None = None, guidance_mode: str | None = None
    ) -> tuple[float, str]:
        """The guidance rescale and mode `sample` uses: the arguments, else `config`'s.

        Raises:
            ValueError: For a rescale outside [0, 1] or an unknown mode.
        """
        cfg = self.config
        rescale = cfg.guidance_rescale if guidance_rescale is None else float(guidance_rescale)
        mode = guidance_mode or cfg.guidance_mode
        validate_guidance(0.0, rescale, mode)
        return rescale, mode

    def resolve(self, settings: SamplingSettings | None = None, **given: Any) -> SamplingSettings:
        """The settings `sample` uses for a request, every field decided.

        Each field comes from the first that gives it: ``given`` (keyword arguments, ``None``
        meaning not given), ``settings``, `config` (the model's saved settings), the defaults
        (see `clevr_diffusion.diffusion.settings`); method and steps as `resolve_settings`
        decides them. ``output_size`` stays ``None`` when nothing asks for a resize.

        Raises:
            ValueError: For an unknown method, preset or guidance mode, or out-of-range values.
            TypeError: For a keyword that is no field of `SamplingSettings`.
        """
        asked = (settings or SamplingSettings()).override(**given)
        method, steps, guidance = self.resolve_settings(
            asked.method, asked.num_inference_steps, asked.guidance_scale, asked.preset
        )
        rescale, mode = self.resolve_guidance(asked.guidance_rescale, asked.guidance_mode)
        validate_guidance(guidance, rescale, mode)
        cfg = self.config
        return SamplingSettings(
            preset=asked.preset.strip().lower() if asked.preset else None,
            method=method,
            num_inference_steps=steps,
            guidance_scale=guidance,
            guidance_rescale=rescale,
            guidance_mode=mode,
            image_size=asked.image_size or cfg.image_size or self.model.config.sample_size,
            output_size=asked.output_size or cfg.output_size,
        )

    def sample(
        self,
        labels: Labels,
        settings: SamplingSettings | None = None,
        *,
        preset: str | None = None,
        method: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float | None = None,
        guidance_mode: str | None = None,
        image_size: int | None = None,
        output_size: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        return_trajectory: bool = False,
        trajectory_frames: int = 10,
        progress: bool = True,
    ) -> SampleOutput:
        """Draw one image for each label set.

        Each denoising step makes exactly one batched call of the network, whatever the
        guidance: B rows without guidance, 2B with joint guidance, (objects + B) with
        composable guidance.

        Args:
            labels: B label lists such as ``[["red sphere", "cyan cube"], ["gray cylinder"]]``
                (one list per image, even for one image: ``[["red cube"]]``), or a (B, 24)
                multi-hot tensor of 0/1 with at most 3 ones a row; an all-zero row draws an
                unconditional image.
            settings: The request's sampling settings in one object; the keyword arguments
                below win over its fields, and both over `config` (see `resolve`).
            preset: A name from `SAMPLING_PRESETS` (``"ddpm-1000"``, ``"ddim-50"``,
                ``"dpm++-20"``, ``"unipc-10"``) setting method and steps; explicit ``method``
                and ``num_inference_steps`` win over it (see `resolve_settings`).
            method: ``"ddpm"``, ``"ddim"``, ``"dpm++"`` or ``"unipc"`` (default: the preset's,
                then `config`'s).
            num_inference_steps: Denoising steps (default: the preset's, then `config`'s, then
                per method).
            guidance_scale: Classifier-free guidance scale w >= 0, finite (1: none).
            guidance_rescale: Guidance rescale phi in [0, 1] (Lin et al. 2023): pulls each
                image's guided prediction back to the conditional prediction's standard
                deviation, against over-saturation at large w; applied to the model output
                (noise or velocity). 0 (default from `config`) is off.
            guidance_mode: ``"joint"`` (the whole label set in one conditional pass) or
                ``"composable"`` (one pass per object; ``uncond + w * sum_i (cond_i -
                uncond)``, Liu et al. 2022). Composable always runs the unconditional pass,
                also at w = 1.
            image_size: Side of the square images drawn (default: `config`'s, then the
                model's ``sample_size``).
            output_size: Side the finished images (and trajectory frames) are resized to,
                bilinearly (default: `config`'s; ``None`` there keeps the drawn size).
            generator: A CPU ``torch.Generator`` for reproducible draws.
            seed: Shortcut for ``generator=torch.Generator().manual_seed(seed)``: a Python or
                NumPy integer.
            return_trajectory: Also keep ``trajectory_frames`` frames from noise to image.
            trajectory_frames: Frames to keep, first (pure noise) and last (the image) included,
                spread evenly in log signal-to-noise ratio (see `trajectory_steps`), so the row
                shows the scene emerging step by step (fewer if the sampler has fewer steps).
            progress: Show a progress bar.

        Returns:
            A `SampleOutput` whose ``images`` are (B, 3, H, W) in [-1, 1].

        Raises:
            ValueError: For unknown methods, presets, modes or labels, no labels, invalid label
                tensors, a non-integer seed, or out-of-range (NaN, infinite) settings.
        """
        cfg = self.config
        chosen = self.resolve(
            settings,
            preset=preset,
            method=method,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            guidance_rescale=guidance_rescale,
            guidance_mode=guidance_mode,
            image_size=image_size,
            output_size=output_size,
        )
        method, steps, size = chosen.method, chosen.num_inference_steps, chosen.image_size
        assert method is not None and steps is not None and size is not None  # resolve decides them all
        if seed is not None:
            seeded = _seeded_generator(seed)  # checked even beside a generator, which wins
            generator = seeded if generator is None else generator
        if return_trajectory and trajectory_frames < 2:
            raise ValueError("trajectory_frames must be >= 2 (noise and image)")

        vectors, names = self.encode(labels)
        scheduler = build_scheduler(method, self.noise_config.scheduler_config())
        scheduler.set_timesteps(steps)
        capture = None
        if return_trajectory:
            capture = trajectory_steps(scheduler.timesteps, self.noise_config, trajectory_frames)
        images, trajectories = [], []
        for start in range(0, len(vectors), cfg.batch_size):
            chunk = vectors[start : start + cfg.batch_size]
            if start:
                scheduler = build_scheduler(method, self.noise_config.scheduler_config())
                scheduler.set_timesteps(steps)
            plan = plan_guidance(chunk, chosen.guidance_scale, chosen.guidance_mode, chosen.guidance_rescale)
            x, frames = self._denoise(plan, scheduler, size, generator, capture, progress)
            images.append(x)
            if frames:
                trajectories.append(torch.stack(frames))
        out_size = chosen.output_size
        output = SampleOutput(images=_resize(torch.cat(images), out_size), labels=names)
        if return_trajectory:
            frames = torch.cat(trajectories, dim=1)
            output.trajectory = _resize(frames.flatten(0, 1), out_size).unflatten(0, frames.shape[:2]).clamp(-1, 1)
            output.frame_steps = [0] + [i + 1 for i in capture]
        return output
