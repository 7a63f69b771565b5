"""The training loop: noise prediction with EMA, checkpoints and exact resume, on accelerate."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..diffusion.noise import NoiseConfig, NoiseProcess
from ..diffusion.sampler import DDPMSampler, SamplingConfig
from ..labels import load_conditions
from ..model_folder import MODEL_CARD_NAME, MODEL_DIR, TRAINER_CONFIG_NAME, push_folder, push_pretrained
from ..models.serialization import CheckpointMismatchError, load_safetensors, load_state_dict_strict, save_safetensors
from ..models.unet import ConditionalUNet
from ..utils.hardware import slow_bf16_warning
from ..utils.io import atomic_folder, atomic_write_text, remove_folder, remove_stale_temporaries
from ..utils.plotting import plot_curve
from . import checkpoint as ckpt
from .config import TrainerConfig
from .data_order import EpochBatchSampler
from .ema import EMA

__all__ = ["DDPMTrainer", "DivergenceError", "ResumeMismatchError", "RunFolderError"]

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
CONFIG_CHANGES_NAME = "config_changes.jsonl"
"""Where a resumed run records the optimisation settings it changed, one JSON line a resume."""
_RUN_FILES = (TRAINER_CONFIG_NAME, METRICS_NAME, "checkpoints", MODEL_DIR)
"""What marks a folder as holding a run."""

# Settings a run may change when it resumes (its course changes from then on): logged and
# recorded in CONFIG_CHANGES_NAME. Every other trainer setting (steps, time limit, outputs,
# speed options) changes freely; noise and model settings may not change at all.
_RECORDED_ON_RESUME = (
    "batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay", "adam_betas", "warmup_steps",
    "lr_schedule", "max_grad_norm", "ema_decay", "label_dropout", "random_flip", "mixed_precision", "snr_gamma",
    "seed",
)  # fmt: skip
# UNetConfig fields that describe rather than build the network: a resume may differ in them.
_INFORMATIVE_MODEL_FIELDS = ("sample_size",)


class RunFolderError(ValueError):
    """The run folder holds another run, or a run that the trainer's settings do not match."""


class ResumeMismatchError(RunFolderError, CheckpointMismatchError):
    """The run folder's checkpoint has other noise or model settings than the trainer."""


class DivergenceError(FloatingPointError, ValueError):
    """Training diverged: the loss or the weights stopped being finite. Nothing non-finite was saved."""


def trains_on_cpu(config: TrainerConfig) -> bool:
    """Whether a run with ``config`` trains on the CPU: asked for (``config.cpu``), or launched
    as several processes on a machine without CUDA.

    accelerate forms a multi-process CPU group (gloo) only when told to use the CPU, and its
    process state is made once per process: whatever creates it first (`PartialState(cpu=...)`
    or the trainer's `Accelerator`) must pass this.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return config.cpu or (launched and not torch.cuda.is_available())


class DDPMTrainer:
    """Trains a `ConditionalUNet` to denoise images of a labelled data set.

    Each step draws timesteps uniformly, noises the batch with the noise process's
    ``add_noise``, drops labels with probability ``label_dropout`` (for classifier-free
    guidance) and regresses the network onto the noise (or velocity), optionally with
    min-SNR-gamma loss weights (``snr_gamma``). AdamW with warm-up and gradient clipping; an
    EMA copy of the weights for sampling. Throughput options (``mixed_precision``, ``tf32``,
    ``cudnn_benchmark``, ``fused_optimizer``, ``channels_last``, ``compile``) change speed,
    not the saved files: weights, EMA and checkpoints stay float32 with plain state-dict keys.
    Runs on `accelerate.Accelerator`, so ``accelerate launch`` spreads it over several
    processes, GPUs or machines without changes.

    A step never waits for the device: between log steps nothing is read back to the host, so
    the CPU queues work ahead of the GPU; the loss is read (and checked) every ``log_every``
    steps. A data set that holds its items in tensors (``can_gather``: a `ClevrDataset` with
    ``preload=True``, a `RenderedClevrDataset` with ``cache=True``) is moved to the training
    device when training starts (a rendered one is rendered in full first) and read there by
    one index gather a batch; any other data set goes through a `DataLoader`. The batches
    are the same either way.

    The run folder (``config.output_dir``) receives ``trainer_config.json``,
    ``metrics.jsonl`` and ``loss.png``, sample grids in ``samples/``, checkpoints in
    ``checkpoints/`` and, at the end, the finished model in ``model/`` (load it with
    `DDPMSampler.from_pretrained`).

    Args:
        model: The network to train (its current weights are the starting point).
        dataset: Items ``(image, label)``: image (3, H, W) float in [-1, 1], label (24,)
            multi-hot float. A data set with ``can_gather`` is moved to the training device.
        noise: The noise process or its config (default: linear betas, T = 1000, epsilon).
        config: Training settings; keyword arguments override its fields.
        sampling: Settings of the sample grids and the finished model's default sampling
            (``sampler_config.json``); default: ``config``'s ``sample_method``,
            ``sample_steps`` and ``sample_guidance``.
        **overrides: Fields of `TrainerConfig`.

    Attributes:
        mixed_precision: The autocast precision in use (``"no"``, ``"fp16"`` or ``"bf16"``):
            ``config.mixed_precision`` with ``"auto"`` decided for this device.
    """

    def __init__(
        self,
        model: ConditionalUNet,
        dataset: Dataset,
        noise: NoiseProcess | NoiseConfig | None = None,
        config: TrainerConfig | None = None,
        sampling: SamplingConfig | None = None,
        **overrides: Any,
    ) -> None:
        config = config or TrainerConfig()
        self.config = config.replace(**overrides) if overrides else config
        self.sampling = sampling or self.config.sampling_config()
        self.noise = noise if isinstance(noise, NoiseProcess) else NoiseProcess(noise)
        self.dataset = dataset
        self.output_dir = Path(self.config.output_dir)
        self._check_dataset(model)
        self.mixed_precision = self._resolve_mixed_precision()
        self.accelerator = self._make_accelerator()
        self.model = model
        self.ema = EMA(model, self.config.ema_decay)
        self.step = 0
        self._check_settings_agree()

    def _resolve_mixed_precision(self) -> str:
        """``config.mixed_precision`` with ``"auto"`` decided for the device training will use."""
        on_cuda = torch.cuda.is_available() and not self._use_cpu()
        return self.config.resolve_mixed_precision(
            "cuda" if on_cuda else "cpu", on_cuda and torch.cuda.is_bf16_supported()
        )

    def _make_accelerator(self) -> Accelerator:
        kwargs: dict[str, Any] = {"mixed_precision": self.mixed_precision, "cpu": self._use_cpu()}
        try:
            return Accelerator(**kwargs)
        except ValueError as error:
            if "already been initialized" not in str(error):
                raise
            # accelerate keeps one state per process and refuses a second Accelerator with
            # other precision settings; a notebook or test that trains twice needs a fresh one.
            # The process group (PartialState) is kept, so distributed runs are unaffected.
            AcceleratorState._reset_state(reset_partial_state=False)
            return Accelerator(**kwargs)

    def _use_cpu(self) -> bool:
        return trains_on_cpu(self.config)

    def _check_dataset(self, model: ConditionalUNet) -> None:
        if len(self.dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("the training data set is empty")
        image, label = self.dataset[0]
        factor = model.config.downsampling_factor
        if image.ndim != 3 or image.shape[0] != model.config.in_channels:
            raise ValueError(f"data set images must be ({model.config.in_channels}, H, W), got {tuple(image.shape)}")
        if image.shape[1] % factor or image.shape[2] % factor:
            raise ValueError(
                f"data set images are {image.shape[1]}x{image.shape[2]}, not multiples of the "
                f"UNet's downsampling factor {factor}; load the data with another image_size"
            )
        if label.shape != (model.config.num_labels,):
            raise ValueError(f"data set labels must be ({model.config.num_labels},) multi-hot, got {tuple(label.shape)}")
        self._record_image_size(model, image.shape[1], image.shape[2])

    @staticmethod
    def _record_image_size(model: ConditionalUNet, height: int, width: int) -> None:
        """Put the data's image size in the model's config (the size its sampler draws)."""
        if height != width:
            logger.warning(
                "training on %dx%d images: a sampler draws %dx%d squares unless given image_size",
                height, width, model.config.sample_size, model.config.sample_size,
            )  # fmt: skip
        elif model.config.sample_size != height:
            logger.info("the model's sample_size becomes %d, the data's image size (was %d)", height, model.config.sample_size)
            model.config = model.config.replace(sample_size=height)

    def _check_settings_agree(self) -> None:
        """Fail now, not after training, on settings that cannot work together."""
        cfg, acc = self.config, self.accelerator
        # The data must hold one global batch (raises with the numbers).
        EpochBatchSampler(len(self.dataset), cfg.batch_size, acc.num_processes, acc.process_index, cfg.seed)  # type: ignore[arg-type]
        # The sample grids and the saved model's sampler settings must fit the noise process.
        try:
            self._sampler(self.ema.model).resolve_settings()
        except ValueError as error:
            raise ValueError(
                f"the sampler settings do not fit the noise process ({error}): lower sample_steps "
                f"(--sample-steps) to at most {self.noise.num_train_timesteps} or raise num_train_timesteps"
            ) from error

    # ------------------------------------------------------------------------ properties
    @property
    def is_main_process(self) -> bool:
        """Whether this process writes files (the first of a multi-process run)."""
        return self.accelerator.is_main_process

    @property
    def checkpoint_dir(self) -> Path:
        """Folder of the training checkpoints."""
        return self.output_dir / "checkpoints"

    @property
    def model_dir(self) -> Path:
        """Folder of the finished model (a `DDPMSampler` folder)."""
        return self.output_dir / MODEL_DIR

    # ---------------------------------------------------------------------- randomness
    def _generator(self, micro_batch: int) -> torch.Generator:
        """A generator owned by one micro-batch of one process.

        Seeding from (seed, micro-batch, rank) rather than carrying one stream through the run
        makes the noise of every step independent of how often the run was resumed.
        """
        seed = int(
            np.random.SeedSequence([self.config.seed, micro_batch, self.accelerator.process_index]).generate_state(1)[0]
        )
        return torch.Generator(self.accelerator.device).manual_seed(seed)

    def _batches(self, sampler: EpochBatchSampler, micro_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless micro-batches from position ``micro_batch`` of the run onwards.

        A data set that holds its items in tensors (`_gathers`) is read by one index gather
        a batch, on the training device; any other through a `DataLoader`. Both give the
        same batches.
        """
        per_epoch = len(sampler)
        epoch, start = divmod(micro_batch, per_epoch)
        if self._gathers():
            device = self.accelerator.device
            while True:
                # One copy of the epoch's indices (pinned, so it does not block the host),
                # then a view of it per batch: no host-device round trip per step.
                order = sampler.epoch_batches(epoch)
                order = (order.pin_memory() if device.type == "cuda" else order).to(device, non_blocking=True)
                for b in range(start, per_epoch):
                    yield self.dataset.gather(order[b])  # type: ignore[attr-defined]
                epoch, start = epoch + 1, 0
        # A data set that makes its items on a GPU (RenderedClevrDataset(device="cuda")) is read
        # in this process: worker processes cannot share the device, and GPU tensors cannot be pinned.
        on_device = torch.device(getattr(self.dataset, "device", "cpu")).type != "cpu"
        while True:
            sampler.set_position(epoch, start)
            loader = DataLoader(
                self.dataset,
                batch_sampler=sampler,
                num_workers=0 if on_device else self.config.num_workers,
                pin_memory=not on_device and self.accelerator.device.type == "cuda",
                # Its own generator: a loader otherwise draws its workers' base seed from the
                # global RNG, which would shift dropout masks after a resume.
                generator=torch.Generator().manual_seed(self.config.seed + epoch),
            )
            yield from loader
            epoch, start = epoch + 1, 0

    def _gathers(self) -> bool:
        """Whether the data set hands out whole batches by an index gather (`can_gather`):
        a preloaded `ClevrDataset`, a `RenderedClevrDataset` with ``cache=True``."""
        return bool(getattr(self.dataset, "can_gather", False)) and callable(getattr(self.dataset, "gather", None))

    def _make_data_resident(self) -> None:
        """Move a gathering data set's items to the training device (rendering them first if
        they are rendered), so every batch is a gather there."""
        if self._gathers() and callable(getattr(self.dataset, "make_resident", None)):
            self.dataset.make_resident(self.accelerator.device, progress=self.is_main_process)  # type: ignore[attr-defined]

    # ---------------------------------------------------------------------------- train
    def train(self, resume: bool = True, overwrite: bool = False, stop_at: int | None = None) -> Path:
        """Train up to ``config.max_steps`` optimiser steps.

        Args:
            resume: Continue from the newest checkpoint in the run folder when there is one;
                the result is the same as a run that was never interrupted. The noise and
                model settings must be the checkpoint's (optimisation settings may change:
                they are logged and recorded in ``config_changes.jsonl``).
            overwrite: Start afresh even over a run already in the folder, which is deleted
                (as one step) before training starts. Without it, ``resume=False`` refuses a
                folder that holds a run.

        Returns:
            The folder of the finished model.

        Raises:
            RunFolderError: If the folder holds a run that ``resume=False`` would destroy
                without ``overwrite``, or one already past ``stop_at``; `ResumeMismatchError` (also a `CheckpointMismatchError`)
                if its checkpoint has other noise or model settings.
            DivergenceError: If the loss or the weights stop being finite (nothing
                non-finite is saved; the message names the last good checkpoint).
        """
        cfg, acc = self.config, self.accelerator
        if stop_at is not None and not 1 <= stop_at <= cfg.max_steps:
            raise ValueError(f"stop_at must be in [1, max_steps = {cfg.max_steps}], got {stop_at}")
        end = cfg.max_steps if stop_at is None else stop_at
        torch.manual_seed(cfg.seed)
        resume = resume and not overwrite
        self._prepare_run_folder(resume, overwrite)
        latest = ckpt.find_latest_checkpoint(self.checkpoint_dir) if resume else None
        if latest is not None:
            self._check_resume(latest)
        if self.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.output_dir / TRAINER_CONFIG_NAME)
            self.noise.config.save(self.output_dir / "noise_config.json")

        self._set_backend_flags()
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        # The EMA copy too: the EMA update's fused (foreach) kernels need both in one layout.
        self.model.to(memory_format=memory_format)
        self.ema.model.to(acc.device, memory_format=memory_format)
        optimizer = self._make_optimizer()
        model, optimizer = acc.prepare(self.model, optimizer)
        if cfg.compile:
            # Compiled after accelerate's wrapping (as accelerate does itself), so DDP's
            # gradient buckets are known to the compiler; `_unwrap` strips the wrapper again.
            model = torch.compile(model)
        self._log_settings()
        if latest is not None:
            self._load_checkpoint(latest, optimizer)
            logger.info("resumed from %s at step %d", latest, self.step)
            if self.step > end:
                raise RunFolderError(
                    f"{self.output_dir} is already at step {self.step}, past stop_at = {end}; "
                    "stop at a later step, or start the run again (another output_dir, or --no-resume --overwrite)"
                )
        if self.is_main_process:
            self._truncate_metrics(self.step)

        sampler = EpochBatchSampler(
            len(self.dataset), cfg.batch_size, acc.num_processes, acc.process_index, cfg.seed  # type: ignore[arg-type]
        )
        self._make_data_resident()
        batches = self._batches(sampler, self.step * cfg.gradient_accumulation_steps)
        model.train()
        window = _LossWindow()
        clock = _StepClock(cfg.batch_size * cfg.gradient_accumulation_steps * acc.num_processes)
        started = time.perf_counter()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="training", disable=not self.is_main_process)
        while self.step < end:
            window.add(self._train_step(model, optimizer, batches))
            self.step += 1
            bar.update(1)
            clock.tick()
            log_step = self.step % cfg.log_every == 0
            out_of_time = self._out_of_time(started, log_step)
            last = self.step == end or out_of_time

            if log_step or last:
                # The one host-device synchronisation of the loop: reading the mean loss.
                mean_loss = acc.reduce(window.mean(), "mean").item()
                if not math.isfinite(mean_loss):
                    raise self._divergence(f"the loss became {mean_loss}")
                rate, step_ms = clock.read()
                bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}")
                row = {"step": self.step, "loss": mean_loss, "lr": optimizer.param_groups[0]["lr"]}
                self._log({**row, "images_per_s": rate, "step_ms": step_ms})
            busy = False
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and not last:
                self.save_checkpoint(model, optimizer)
                busy = True
            if cfg.sample_every > 0 and self.step % cfg.sample_every == 0 and not last:
                self.save_samples()
                busy = True
            if cfg.push_every and self.step % cfg.push_every == 0 and not last:
                self.push_to_hub(self._unwrap(model))
                busy = True
            if busy:
                clock.restart()  # checkpoints and grids are not training speed
            if out_of_time:
                logger.info("time limit of %.0f s reached at step %d of %d", cfg.time_limit_s, self.step, cfg.max_steps)
                break
        bar.close()

        if not ckpt.checkpoint_path(self.checkpoint_dir, self.step).is_dir():
            self.save_checkpoint(model, optimizer)
        if cfg.sample_every >= 0:
            self.save_samples()
        if self.is_main_process:
            self._save_model(self._unwrap(model))
            self._plot_loss()
            if cfg.push_to_hub:
                self.push_to_hub()
        if self._channels_last:  # hand the models back as they came
            self.model.to(memory_format=torch.contiguous_format)
            self.ema.model.to(memory_format=torch.contiguous_format)
        acc.wait_for_everyone()
        return self.model_dir

    def _train_step(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """One optimiser step over ``gradient_accumulation_steps`` micro-batches.

        Never waits for the device: no value is read back to the host, so the CPU queues the
        next step while the GPU runs this one.

        Returns:
            (accum,) float32 losses of the micro-batches, on the device.
        """
        cfg, acc = self.config, self.accelerator
        accum = cfg.gradient_accumulation_steps
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate_at(self.step)
        losses = []
        for micro in range(accum):
            images, labels = next(batches)
            sync = micro == accum - 1
            with contextlib.nullcontext() if sync else acc.no_sync(model):
                loss = self._loss(model, images, labels, self._generator(self.step * accum + micro))
                acc.backward(loss / accum)
            losses.append(loss.detach())
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.ema.update(self._unwrap(model))
        return torch.stack(losses)

    def _out_of_time(self, started: float, log_step: bool) -> bool:
        """Whether ``config.time_limit_s`` has passed since ``started``.

        One process reads its own clock after every step. Several must stop at the same step,
        or the others would wait forever in the next gradient all-reduce: they agree on the
        main process's clock, which costs a synchronisation, so only at log steps.
        """
        limit = self.config.time_limit_s
        if limit is None:
            return False
        late = time.perf_counter() - started > limit
        if self.accelerator.num_processes == 1:
            return late
        if not log_step:
            return False
        flag = torch.tensor([float(late)], device=self.accelerator.device)
        return bool(self.accelerator.gather(flag)[0].item())

    # ------------------------------------------------------------------ speed settings
    @property
    def _channels_last(self) -> bool:
        """``config.channels_last`` decided for the training device."""
        return self.config.use_channels_last(self.accelerator.device.type)

    def _set_backend_flags(self) -> None:
        """Apply ``config.tf32`` and ``config.cudnn_benchmark`` on CUDA (process-wide switches)."""
        if self.accelerator.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.config.tf32
            torch.backends.cudnn.allow_tf32 = self.config.tf32
            torch.backends.cudnn.benchmark = self.config.cudnn_benchmark

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over the model's parameters, fused if ``config.fused_optimizer`` says so."""
        cfg = self.config
        fused = cfg.use_fused_optimizer(self.accelerator.device.type)
        return torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.learning_rate,
            betas=cfg.adam_betas,
            weight_decay=cfg.weight_decay,
            fused=True if fused else None,  # None: torch's default (foreach where it can)
        )

    def _log_settings(self) -> None:
        """Log the resolved speed settings once per run (``auto`` and ``None`` made concrete)."""
        cfg, device = self.config, self.accelerator.device
        logger.info(
            "training on %s x %d: mixed precision %s, TF32 %s, cuDNN benchmark %s, fused AdamW %s, "
            "channels_last %s, compile %s, min-SNR gamma %s, batches by %s",
            device, self.accelerator.num_processes, self.mixed_precision, cfg.tf32 and device.type == "cuda",
            cfg.cudnn_benchmark and device.type == "cuda", cfg.use_fused_optimizer(device.type), self._channels_last,
            cfg.compile, cfg.snr_gamma, "index gathers on the device" if self._gathers() else "a DataLoader",
        )
        warning = slow_bf16_warning(device, self.mixed_precision)
        if warning:
            logger.warning(warning)

    def _unwrap(self, model: torch.nn.Module) -> ConditionalUNet:
        """The bare network inside accelerate's and ``torch.compile``'s wrappers.

        Its state dict has the plain `ConditionalUNet` keys (no ``module.`` or ``_orig_mod.``
        prefixes), whichever accelerate version and launch options wrapped it.
        """
        unwrapped = self.accelerator.unwrap_model(model)
        return getattr(unwrapped, "_orig_mod", unwrapped)

    def _loss(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        device = self.accelerator.device
        x0 = images.to(device, non_blocking=True).float()
        labels = labels.to(device, non_blocking=True).float()
        batch = x0.shape[0]
        if self.config.random_flip:
            flip = torch.rand(batch, device=device, generator=gen) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        if self.config.label_dropout > 0:
            keep = torch.rand(batch, device=device, generator=gen) >= self.config.label_dropout
            labels = labels * keep[:, None]
        t = torch.randint(0, self.noise.num_train_timesteps, (batch,), device=device, generator=gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        x_t = self.noise.add_noise(x0, noise, t)
        if self._channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        prediction = model(x_t, t, labels)
        # Outside the model's autocast region and in float32 whatever the mixed precision.
        return self.noise.training_loss(prediction, x0, noise, t, snr_gamma=self.config.snr_gamma)

    # ----------------------------------------------------------------------- run folder
    def _prepare_run_folder(self, resume: bool, overwrite: bool) -> None:
        """Refuse to start afresh over an earlier run unless told to replace it; delete what
        interrupted writes left behind (main process, before any process writes)."""
        acc = self.accelerator
        held = [name for name in _RUN_FILES if (self.output_dir / name).exists()]
        if held and not resume:
            if not overwrite:
                latest = ckpt.find_latest_checkpoint(self.checkpoint_dir)
                at = f" (last checkpoint: step {int(ckpt.read_state(latest)['step'])})" if latest else ""
                raise RunFolderError(
                    f"{self.output_dir} holds an earlier run{at}; resume it (resume=True, or leave out --no-resume), "
                    "replace it (overwrite=True, --overwrite), or pick another output_dir"
                )
            if self.is_main_process:
                logger.warning("replacing the run in %s (%s)", self.output_dir, ", ".join(held))
                remove_folder(self.output_dir)
        if self.is_main_process:
            for folder in (self.output_dir.parent, self.output_dir, self.checkpoint_dir):
                for stale in remove_stale_temporaries(folder):
                    logger.info("removed %s, left by an interrupted write", stale)
        acc.wait_for_everyone()

    def _check_resume(self, checkpoint: Path) -> None:
        """Refuse a checkpoint of other noise or model settings; log and record changed
        optimisation settings (main process)."""
        state = ckpt.read_state(checkpoint)
        model_config = type(self.model.config)
        saved_model = _as_json(model_config.from_dict(state["model_config"]).to_dict())
        current_model = _as_json(self.model.config.to_dict())
        for field in _INFORMATIVE_MODEL_FIELDS:
            saved_model.pop(field, None)
            current_model.pop(field, None)
        noise_config = type(self.noise.config)
        differences = [
            *_differences("noise", _as_json(noise_config.from_dict(state["noise_config"]).to_dict()), _as_json(self.noise.config.to_dict())),
            *_differences("model", saved_model, current_model),
        ]  # fmt: skip
        if differences:
            raise ResumeMismatchError(
                f"cannot resume {checkpoint}: it belongs to another model configuration or noise process "
                f"({'; '.join(differences)}); "
                "train with the run's settings, or start a new run (another output_dir, or --no-resume --overwrite)"
            )
        saved_trainer = _as_json(type(self.config).from_dict(state["trainer_config"]).to_dict())
        current = _as_json(self.config.to_dict())
        changes = {k: [saved_trainer.get(k), current.get(k)] for k in _RECORDED_ON_RESUME if saved_trainer.get(k) != current.get(k)}
        if changes and self.is_main_process:
            logger.warning(
                "resuming %s with changed settings: %s", checkpoint,
                ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()),
            )  # fmt: skip
            row = {"step": int(state["step"]), "checkpoint": checkpoint.name, "changes": changes}
            with open(self.output_dir / CONFIG_CHANGES_NAME, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")

    def _divergence(self, what: str) -> DivergenceError:
        """The error that ends a diverged run, naming the checkpoint to go back to."""
        latest = ckpt.find_latest_checkpoint(self.checkpoint_dir)
        back = (
            f"the last good checkpoint is {latest}: run again with a lower learning rate to resume from it"
            if latest is not None
            else "no checkpoint was written yet: start again with a lower learning rate"
        )
        return DivergenceError(f"{what} at step {self.step}; nothing non-finite was saved, {back} (or use bf16 instead of fp16)")

    def _check_finite(self, model: ConditionalUNet) -> None:
        """Raise `DivergenceError` if the weights or the EMA weights hold a NaN or an infinity.

        Called before anything is saved: one host read of one flag, at checkpoint time only.
        """
        tensors = [*model.parameters(), *self.ema.model.parameters()]
        if not bool(torch.stack([t.isfinite().all() for t in tensors]).all()):
            raise self._divergence("the weights became NaN or infinite")

    # ---------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Path:
        """Write a checkpoint of the current step (all processes must call this)."""
        acc = self.accelerator
        # Every process holds the same weights, so every process stops here alike.
        self._check_finite(self._unwrap(model))
        final = ckpt.checkpoint_path(self.checkpoint_dir, self.step)
        tmp = ckpt.temporary_checkpoint_path(self.checkpoint_dir, self.step)
        if self.is_main_process:
            tmp.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        ckpt.save_rng(tmp, acc.process_index)
        if self.is_main_process:
            save_safetensors(self._unwrap(model).state_dict(), tmp / "model.safetensors")
            save_safetensors(self.ema.state_dict(), tmp / "ema.safetensors")
            self.noise.config.save_scheduler_config(tmp)
            tensors, meta = ckpt.optimizer_to_tensors(optimizer.state_dict())
            save_safetensors(tensors, tmp / "optimizer.safetensors")
            state = {
                "step": self.step,
                "ema_updates": self.ema.num_updates,
                "optimizer": meta,
                "num_processes": acc.num_processes,
                "trainer_config": self.config.to_dict(),
                "noise_config": self.noise.config.to_dict(),
                "model_config": self._unwrap(model).config.to_dict(),
            }
        acc.wait_for_everyone()
        if self.is_main_process:
            ckpt.write_state(tmp, state)
            ckpt.publish_checkpoint(tmp, final, self.config.keep_checkpoints)
            logger.info("saved checkpoint %s", final)
        acc.wait_for_everyone()
        return final

    def _load_checkpoint(self, folder: Path, optimizer: torch.optim.Optimizer) -> None:
        state = ckpt.read_state(folder)
        unwrapped = self.accelerator.unwrap_model(self.model)
        load_state_dict_strict(unwrapped, load_safetensors(folder / "model.safetensors"), str(folder))
        self.ema.load_state_dict(load_safetensors(folder / "ema.safetensors"), state["ema_updates"])
        tensors = load_safetensors(folder / "optimizer.safetensors")
        saved = ckpt.optimizer_from_tensors(tensors, state["optimizer"])
        optimizer.load_state_dict(_keep_kernel_choice(saved, optimizer))
        if not ckpt.load_rng(folder, self.accelerator.process_index):
            logger.warning("%s has no RNG state for process %d", folder, self.accelerator.process_index)
        if state["num_processes"] != self.accelerator.num_processes:
            logger.warning(
                "checkpoint was written by %d processes, resuming with %d: the data order changes",
                state["num_processes"],
                self.accelerator.num_processes,
            )
        self.step = int(state["step"])

    # --------------------------------------------------------------------------- outputs
    def _sampler(self, model: ConditionalUNet) -> DDPMSampler:
        return DDPMSampler(model, self.noise.config, self.sampling)

    def save_samples(self) -> Path | None:
        """Draw a grid for the first label sets of test.json with the EMA weights (main process)."""
        if not self.is_main_process or self.config.num_sample_images == 0:
            return None
        labels = load_conditions("test")[: self.config.num_sample_images]
        output = self._sampler(self.ema.model).sample(labels, seed=self.config.seed, progress=False)
        path = output.save_grid(self.output_dir / "samples" / f"step_{self.step:08d}.png", nrow=8)
        logger.info("saved sample grid %s", path)
        return path

    def _save_model(self, model: ConditionalUNet) -> None:
        """Write ``model/`` as a whole: a kill never leaves new weights beside old EMA weights."""
        self._check_finite(model)
        with atomic_folder(self.model_dir) as tmp:
            card = self.model_dir / MODEL_CARD_NAME
            if card.is_file():  # a hand-written card is kept (save_pretrained decides)
                shutil.copy2(card, tmp / MODEL_CARD_NAME)
            self._sampler(model).save_pretrained(tmp, ema_state_dict=self.ema.state_dict())
        model.train()

    def push_to_hub(self, model: ConditionalUNet | None = None) -> str | None:
        """Upload a model to ``config.push_to_hub`` (main process only).

        With ``model``, the current weights and EMA weights go up as a new commit ("step N");
        without, the finished ``model/`` folder does. A failed upload is logged, not raised:
        training goes on, and ``clevr-diffusion push RUN/model REPO`` uploads later.

        Returns:
            The commit URL, or ``None`` if nothing was uploaded.
        """
        cfg = self.config
        if not cfg.push_to_hub or not self.is_main_process:
            return None
        message = f"Training step {self.step}" + ("" if model is not None else " (finished)")
        options = dict(private=cfg.hub_private or None, commit_message=message, card_extras={"training": cfg.to_dict()})
        try:
            if model is None:
                url = push_folder(self.model_dir, cfg.push_to_hub, **options)  # type: ignore[arg-type]
            else:
                url = push_pretrained(self._sampler(model), cfg.push_to_hub, ema_state_dict=self.ema.state_dict(), **options)
        except Exception as error:  # noqa: BLE001 - an upload must not end a training run
            logger.error(
                "could not push to the Hugging Face Hub repo %s at step %d (%s); push later with "
                "`clevr-diffusion push %s %s`",
                cfg.push_to_hub, self.step, error, self.model_dir, cfg.push_to_hub,
            )
            return None
        finally:
            if model is not None:
                model.train()  # DDPMSampler put it in eval mode
        logger.info("pushed step %d to %s", self.step, url)
        return url

    def _log(self, row: dict[str, Any]) -> None:
        if self.is_main_process:
            with open(self.output_dir / METRICS_NAME, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")

    def _truncate_metrics(self, step: int) -> None:
        """Drop metrics after ``step`` (and any half-written line) from an interrupted run."""
        path = self.output_dir / METRICS_NAME
        if not path.is_file():
            return
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= step:
                rows.append(line)
        atomic_write_text(path, "".join(r + "\n" for r in rows))

    def metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl``: step, loss, lr, and the training speed over the steps
        since the previous row (``images_per_s`` over all processes, ``step_ms``; checkpoints,
        sample grids and uploads left out)."""
        path = self.output_dir / METRICS_NAME
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _plot_loss(self) -> None:
        rows = self.metrics()
        if rows:
            plot_curve([r["step"] for r in rows], [r["loss"] for r in rows], self.output_dir / "loss.png")


class _LossWindow:
    """The losses of the steps since the last log line, kept on the device until read."""

    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []

    def add(self, losses: torch.Tensor) -> None:
        """Add one step's (accum,) micro-batch losses."""
        self._losses.append(losses)

    def mean(self) -> torch.Tensor:
        """Mean over every micro-batch since the last call (a device scalar), and start over."""
        mean = torch.cat(self._losses).mean()
        self._losses.clear()
        return mean


class _StepClock:
    """Steady-state training speed over the steps since the last reading.

    Read at log steps, right after the loss is read back (so the device has finished those
    steps), and restarted after checkpoints, sample grids and uploads, whose time is not
    training speed. The first window includes the warm-up (compiling, cuDNN's autotuning).

    Args:
        images_per_step: Images of one optimiser step over all processes.
    """

    def __init__(self, images_per_step: int) -> None:
        self.images_per_step = images_per_step
        self.restart()

    def restart(self) -> None:
        """Start a new window now."""
        self._since, self._steps = time.perf_counter(), 0

    def tick(self) -> None:
        """Count one finished optimiser step."""
        self._steps += 1

    def read(self) -> tuple[float, float]:
        """``(images per second, milliseconds per step)`` over the window, then restart it."""
        elapsed = max(time.perf_counter() - self._since, 1e-9)
        steps = max(self._steps, 1)
        self.restart()
        return steps * self.images_per_step / elapsed, 1000.0 * elapsed / steps


def _as_json(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict as it reads back from JSON (tuples become lists), for comparing."""
    return json.loads(json.dumps(config))


def _differences(kind: str, saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"kind.field: checkpoint X, now Y"`` for each field that differs."""
    keys = sorted(set(saved) | set(current))
    return [f"{kind}.{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


_KERNEL_FLAGS = ("fused", "foreach", "capturable")


def _keep_kernel_choice(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``saved`` with this run's kernel flags (fused, foreach, capturable) in its param groups.

    ``Optimizer.load_state_dict`` takes every group entry from the file, flags included, and
    places the ``step`` counters by the file's ``fused`` flag; without this a run resumed with
    another ``fused_optimizer`` setting would silently keep the old kernel.
    """
    groups = []
    # Not strict: a different group count is left for load_state_dict to report.
    for saved_group, group in zip(saved["param_groups"], optimizer.param_groups, strict=False):
        flags = {k: group[k] for k in _KERNEL_FLAGS if k in group}
        groups.append({**saved_group, **flags})
    return {**saved, "param_groups": groups}
