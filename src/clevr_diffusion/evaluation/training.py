"""Train the built-in evaluator: a ResNet-18 on rendered, domain-randomised CLEVR images.

A classifier that only ever saw one renderer's pixels learns that renderer's quirks, and the
images it must judge (generated ones, Blender's) differ from any renderer. So the training set
is rendered with `clevr_diffusion.render.DomainRandomization`, mixes i-CLEVR-style scenes
(large rubber objects) with full-CLEVR ones (small and metal objects too), holds 1 to 5
objects like the official evaluator's, and every batch is further augmented with changes that
keep the labels true: shifts, blur, resolution loss, gamma, colour gains, brightness and noise.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..labels import Vocabulary
from ..models.serialization import load_safetensors, load_state_dict_strict, save_safetensors
from ..render.randomization import DomainRandomization
from ..render.renderer import render
from ..render.sampling import sample_scene
from ..utils.config import JsonConfig
from ..utils.io import atomic_write_json
from .metrics import AccuracyResult, label_accuracy
from .resnet import ResNet18

__all__ = ["EvaluatorTrainingConfig", "augment", "heldout_accuracy", "render_training_set", "train_evaluator"]

logger = logging.getLogger(__name__)


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
        supersample: Renderer supersampling.
        batch_size: Images per step.
        max_steps: Optimiser steps.
        learning_rate: Peak AdamW learning rate (cosine decay after a short warm-up).
        weight_decay: AdamW weight decay.
        seed: Seed of the scenes, the rendering and the training.
        checkpoint_every: Steps between checkpoints (resume restarts from the last one).
        init_from: Optional weights (safetensors) to start from instead of random ones, e.g.
            to fine-tune a trained evaluator with a new, lower learning-rate schedule.
    """

    output_dir: str = "runs/evaluator"
    num_images: int = 40_000
    clevr_fraction: float = 0.4
    min_objects: int = 1
    max_objects: int = 5
    randomization: DomainRandomization = field(default_factory=DomainRandomization)
    supersample: int = 2
    batch_size: int = 64
    max_steps: int = 8_000
    learning_rate: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0
    checkpoint_every: int = 250
    init_from: str | None = None


def _scene(index: int, config: EvaluatorTrainingConfig):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng([config.seed, 7, index])
    style = "clevr" if rng.random() < config.clevr_fraction else "iclevr"
    return sample_scene(rng, style=style, num_objects=(config.min_objects, config.max_objects))


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
    chunk = 64
    for start in tqdm(range(0, config.num_images, chunk), desc="rendering evaluator data", disable=not progress):
        ids = list(range(start, min(start + chunk, config.num_images)))
        scenes = [_scene(i, config) for i in ids]
        pixels = render(scenes, 64, 64, "square", config.supersample, seed=config.seed, scene_offset=ids,
                        randomization=config.randomization).images  # fmt: skip
        images.append((pixels * 255).round().to(torch.uint8))
        labels.append(vocabulary.encode_batch([s.label_names for s in scenes]))
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

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    shift = (u(b, 2) * 9).long() - 4
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4), mode="replicate")
    rows = (torch.arange(h)[None, :] + 4 + shift[:, :1]).clamp(0, h + 7)
    cols = (torch.arange(w)[None, :] + 4 + shift[:, 1:]).clamp(0, w + 7)
    x = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    blur = u(b) < 0.5
    if blur.any():
        sigma = 0.3 + 0.9 * u(int(blur.sum()))
        r = torch.arange(-3, 4, dtype=torch.float32)
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
    x = x + torch.randn(x.shape, generator=generator) * (u(b, 1, 1, 1) * 0.04)
    return x.clamp(0, 1)


def train_evaluator(config: EvaluatorTrainingConfig, progress: bool = True, time_limit_s: float | None = None) -> Path:
    """Train the evaluator; returns the path of ``evaluator.safetensors`` (float32 weights).

    Resumes from ``output_dir/checkpoint.safetensors`` when present. With ``time_limit_s`` it
    stops early (after a checkpoint) once that much wall time has passed.
    """
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", config.to_dict())
    started = time.monotonic()
    images, labels = render_training_set(config, progress)
    torch.manual_seed(config.seed)
    model = ResNet18()
    if config.init_from is not None:
        load_state_dict_strict(model, load_safetensors(config.init_from), config.init_from)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(1, config.max_steps // 50)

    def lr_at(step: int) -> float:
        if step < warmup:
            return config.learning_rate * (step + 1) / warmup
        return 0.5 * config.learning_rate * (1 + math.cos(math.pi * (step - warmup) / max(1, config.max_steps - warmup)))

    generator = torch.Generator().manual_seed(config.seed)
    step = 0
    checkpoint = out / "checkpoint.safetensors"
    if checkpoint.is_file():
        state = load_safetensors(checkpoint)
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        opt_state = torch.load(out / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(opt_state)
        generator.set_state(state["rng"])
        step = int(state["step"].item())
        logger.info("resumed at step %d", step)
    metrics = (out / "metrics.jsonl").open("a", encoding="utf-8")
    bar = tqdm(total=config.max_steps, initial=step, desc="training evaluator", disable=not progress)
    model.train()
    while step < config.max_steps:
        index = torch.randint(images.shape[0], (config.batch_size,), generator=generator)
        x = augment(images[index].float() / 255, generator) * 2 - 1
        y = labels[index]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(x.contiguous(memory_format=torch.channels_last)), y)
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
            state["rng"] = generator.get_state()
            torch.save(optimizer.state_dict(), out / "optimizer.pt.tmp")
            (out / "optimizer.pt.tmp").replace(out / "optimizer.pt")
            save_safetensors(state, checkpoint)
            save_safetensors({k: v.detach().contiguous() for k, v in model.state_dict().items()}, out / "evaluator.safetensors")
        if done:
            break
    bar.close()
    metrics.close()
    return out / "evaluator.safetensors"


def heldout_accuracy(
    evaluator: torch.nn.Module, num_images: int = 960, seed: int = 10_000, progress: bool = False
) -> AccuracyResult:
    """Accuracy on freshly rendered i-CLEVR-style images (1 to 3 large rubber objects, plain
    CLEVR lighting, 64 x 64) drawn from a seed the training never used."""
    vocabulary = Vocabulary(Vocabulary.default().names, max_objects=None)
    probs, labels = [], []
    for start in tqdm(range(0, num_images, 64), desc="held-out images", disable=not progress):
        ids = list(range(start, min(start + 64, num_images)))
        scenes = [sample_scene(np.random.default_rng([seed, i]), style="iclevr", num_objects=(1, 3)) for i in ids]
        pixels = render(scenes, 64, 64, "square", seed=seed, scene_offset=ids).images
        # Rounded to 8 bits, as images written to PNG are.
        images = (pixels * 255).round() / 127.5 - 1
        probs.append(evaluator.predict(images))  # type: ignore[operator]
        labels.append(vocabulary.encode_batch([s.label_names for s in scenes]))
    return label_accuracy(torch.cat(probs), torch.cat(labels))
