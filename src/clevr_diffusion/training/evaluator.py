"""Train the built-in evaluator: a ResNet-18 on rendered, domain-randomised CLEVR images.

It follows the learning-rate schedule of every trainer here (`clevr_diffusion.training.schedule`:
a warm-up over the first 2 % of the steps, then a cosine decay) and writes its optimiser state
as the DDPM trainer's checkpoints do (`clevr_diffusion.training.checkpoint`: safetensors, no pickle).

A classifier that only ever saw one renderer's pixels learns that renderer's quirks, and the
images it must judge (generated ones, Blender's) differ from any renderer. So the training set
is rendered with `clevr_diffusion.render.DomainRandomization`, mixes i-CLEVR-style scenes
(large rubber objects) with full-CLEVR ones (small and metal objects too), holds 1 to 5
objects like the official evaluator's, and every batch is further augmented with changes that
keep the labels true: shifts, blur, resolution loss, gamma, colour gains, brightness and noise.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..labels import Vocabulary
from ..models.resnet import ResNet18
from ..models.serialization import load_safetensors, load_state_dict_strict, save_safetensors
from ..render.renderer import render
from ..render.sampling import sample_scene
from ..render.scene import Scene
from ..utils.hardware import slow_bf16_warning
from ..utils.io import atomic_write_json
from ..utils.parallel import parallel_map
from . import checkpoint as ckpt
from .evaluator_config import EvaluatorTrainingConfig
from .schedule import learning_rate_at

__all__ = ["EvaluatorTrainingConfig", "augment", "render_training_set", "train_evaluator"]

SETTINGS_NAME = "config.json"
"""The run's `EvaluatorTrainingConfig`, in its output folder (a run folder, not a model folder)."""
OPTIMIZER_NAME = "optimizer.safetensors"
_LEGACY_OPTIMIZER_NAME = "optimizer.pt"
"""Where older runs kept the optimiser state (a torch.save pickle): still read, to resume them."""

logger = logging.getLogger(__name__)


def _scene(index: int, seed: int, clevr_fraction: float, num_objects: tuple[int, int]) -> Scene:
    rng = np.random.default_rng([seed, 7, index])
    style = "clevr" if rng.random() < clevr_fraction else "iclevr"
    return sample_scene(rng, style=style, num_objects=num_objects)


def render_training_set(config: EvaluatorTrainingConfig, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Render (or reload) the training set: uint8 images (N, 3, 64, 64) and labels (N, 24).

    The set is saved as ``train_set.safetensors`` in ``output_dir`` once complete, so a
    resumed run does not render it again.
    """
    out = Path(config.output_dir)
    cached = out / "train_set.safetensors"
    if cached.is_file():
        data = load_safetensors(cached)
        if data["images"].shape[0] == config.num_images:
            return data["images"], data["labels"]
    vocabulary = Vocabulary(Vocabulary.default().names, max_objects=None)
    images, labels = [], []
    chunk = 64 if torch.device(config.device).type == "cpu" else 1024
    # Worker processes draw a block of scenes at a time: their start-up (importing torch) is
    # paid once per block, not once per rendered chunk.
    block = chunk if config.workers == 1 else max(chunk, 8192)
    draw = functools.partial(
        _scene, seed=config.seed, clevr_fraction=config.clevr_fraction, num_objects=(config.min_objects, config.max_objects)
    )
    bar = tqdm(total=config.num_images, desc="rendering evaluator data", disable=not progress)
    for first in range(0, config.num_images, block):
        block_ids = list(range(first, min(first + block, config.num_images)))
        block_scenes = parallel_map(draw, block_ids, config.workers)
        for start in range(0, len(block_ids), chunk):
            ids, scenes = block_ids[start : start + chunk], block_scenes[start : start + chunk]
            pixels = render(scenes, 64, 64, "square", config.supersample, config.device, seed=config.seed,
                            scene_offset=ids, randomization=config.randomization, chunk=chunk,
                            shaded_per_pixel=config.shaded_per_pixel).images  # fmt: skip
            images.append((pixels * 255).round().to(torch.uint8).cpu())
            labels.append(vocabulary.encode_batch([s.label_names for s in scenes]))
            bar.update(len(ids))
    bar.close()
    data = {"images": torch.cat(images), "labels": torch.cat(labels)}
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors(data, cached)
    return data["images"], data["labels"]


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Label-preserving augmentation of (B, 3, H, W) images in [0, 1], returned in [0, 1].

    Per image: a shift of up to 4 px (edges replicated), with probability 1/2 a Gaussian blur
    (sigma up to 1.2 px), with probability 1/3 a loss of resolution (down to 50-90 % and back,
    bilinear), gamma 0.75-1.33, channel gains of +-8 %, brightness +-0.06 and Gaussian noise
    of up to 0.04.
    """
    b, _, h, w = images.shape
    device = images.device

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    shift = (u(b, 2) * 9).long() - 4
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4), mode="replicate")
    rows = (torch.arange(h, device=device)[None, :] + 4 + shift[:, :1]).clamp(0, h + 7)
    cols = (torch.arange(w, device=device)[None, :] + 4 + shift[:, 1:]).clamp(0, w + 7)
    x = padded[torch.arange(b, device=device)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    blur = u(b) < 0.5
    if blur.any():
        sigma = 0.3 + 0.9 * u(int(blur.sum()))
        r = torch.arange(-3, 4, dtype=torch.float32, device=device)
        k = torch.exp(-0.5 * (r[None, :] / sigma[:, None]) ** 2)
        k = k / k.sum(1, keepdim=True)  # (n, 7)
        sel = x[blur]
        n = sel.shape[0]
        flat = sel.reshape(1, n * 3, h, w)
        kx = k.repeat_interleave(3, 0)[:, None, None, :]
        flat = torch.nn.functional.conv2d(torch.nn.functional.pad(flat, (3, 3, 0, 0), mode="replicate"), kx, groups=n * 3)
        flat = torch.nn.functional.conv2d(torch.nn.functional.pad(flat, (0, 0, 3, 3), mode="replicate"), kx.transpose(2, 3), groups=n * 3)
        x[blur] = flat.reshape(n, 3, h, w)

    low = u(b) < 1 / 3
    for i in low.nonzero().squeeze(-1).tolist():
        size = int(h * (0.5 + 0.4 * u(1).item()))
        small = torch.nn.functional.interpolate(x[i : i + 1], size=(size, size), mode="bilinear", antialias=True)
        x[i : i + 1] = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear")

    x = x.clamp(0, 1) ** torch.exp((u(b, 1, 1, 1) * 2 - 1) * math.log(1.33))
    x = x * (1 + (u(b, 3, 1, 1) * 2 - 1) * 0.08) + (u(b, 1, 1, 1) * 2 - 1) * 0.06
    x = x + torch.randn(x.shape, generator=generator, device=device) * (u(b, 1, 1, 1) * 0.04)
    return x.clamp(0, 1)


def train_evaluator(config: EvaluatorTrainingConfig, progress: bool = True, time_limit_s: float | None = None) -> Path:
    """Train the evaluator; returns the path of ``evaluator.safetensors`` (float32 weights).

    Resumes from ``output_dir/checkpoint.safetensors`` when present. With ``time_limit_s`` it
    stops early (after a checkpoint) once that much wall time has passed.
    """
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SETTINGS_NAME, config.to_dict())
    started = time.monotonic()
    images, labels = render_training_set(config, progress)
    device = torch.device(config.device)
    warning = slow_bf16_warning(device, config.mixed_precision)
    if warning:
        logger.warning(warning)
    images, labels = images.to(device), labels.to(device)
    torch.manual_seed(config.seed)
    model = ResNet18(maxpool=config.maxpool)
    if config.init_from is not None:
        load_state_dict_strict(model, load_safetensors(config.init_from), config.init_from)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(1, config.max_steps // 50)

    def lr_at(step: int) -> float:
        return learning_rate_at(step, config.learning_rate, warmup, config.max_steps, "cosine")

    generator = torch.Generator(device).manual_seed(config.seed)
    step = 0
    checkpoint = out / "checkpoint.safetensors"
    if checkpoint.is_file():
        state = load_safetensors(checkpoint)
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        optimizer.load_state_dict(_load_optimizer(out, device))
        generator.set_state(state["rng"])
        step = int(state["step"].item())
        logger.info("resumed at step %d", step)
    metrics = (out / "metrics.jsonl").open("a", encoding="utf-8")
    bar = tqdm(total=config.max_steps, initial=step, desc="training evaluator", disable=not progress)
    model.train()
    while step < config.max_steps:
        index = torch.randint(images.shape[0], (config.batch_size,), generator=generator, device=device)
        x = augment(images[index].float() / 255, generator) * 2 - 1
        y = labels[index]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.mixed_precision == "bf16"):
            logits = model.logits(x.contiguous(memory_format=torch.channels_last))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        bar.update(1)
        if step % 25 == 0:
            metrics.write(json.dumps({"step": step, "loss": round(loss.item(), 5), "lr": lr_at(step)}) + "\n")
            metrics.flush()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step >= config.max_steps or (time_limit_s is not None and time.monotonic() - started > time_limit_s)
        if step % config.checkpoint_every == 0 or done:
            state = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
            state["step"] = torch.tensor(step)
            state["rng"] = generator.get_state()  # a CPU byte tensor for any device's generator
            ckpt.save_optimizer(optimizer.state_dict(), out / OPTIMIZER_NAME)  # before the step it belongs to
            save_safetensors(state, checkpoint)
            weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            save_safetensors(weights, out / "evaluator.safetensors", model.weights_metadata())
        if done:
            break
    bar.close()
    metrics.close()
    return out / "evaluator.safetensors"



def _load_optimizer(out: Path, device: torch.device) -> dict:
    """The optimiser state of the run in ``out``: `OPTIMIZER_NAME`, or a run's from before it."""
    if (out / OPTIMIZER_NAME).is_file():
        return ckpt.load_optimizer(out / OPTIMIZER_NAME, device)
    return torch.load(out / _LEGACY_OPTIMIZER_NAME, weights_only=True, map_location=device)
