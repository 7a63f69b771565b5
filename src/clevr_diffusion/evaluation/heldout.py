"""The evaluator's accuracy on freshly rendered i-CLEVR-style images it never saw in training."""

from __future__ import annotations

import functools

import torch
from tqdm.auto import tqdm

from ..labels import Vocabulary
from ..render.renderer import render
from ..render.sampling import scene_at
from ..utils.images import as_saved_png
from ..utils.parallel import parallel_map
from .metrics import AccuracyResult, label_accuracy

__all__ = ["heldout_accuracy"]


def heldout_accuracy(
    evaluator: torch.nn.Module, num_images: int = 960, seed: int = 10_000, progress: bool = False, workers: int = 1
) -> AccuracyResult:
    """Accuracy on freshly rendered i-CLEVR-style images (1 to 3 large rubber objects, plain
    CLEVR lighting, 64 x 64) drawn from a seed the training never used.

    The images are rendered on the evaluator's device; ``workers`` processes draw the scenes.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    device = next(evaluator.parameters()).device
    draw = functools.partial(scene_at, seed=seed, style="iclevr", num_objects=(1, 3))
    all_scenes = parallel_map(draw, range(num_images), workers)
    vocabulary = Vocabulary(Vocabulary.default().names, max_objects=None)
    probs, labels = [], []
    for start in tqdm(range(0, num_images, 64), desc="held-out images", disable=not progress):
        ids = list(range(start, min(start + 64, num_images)))
        scenes = all_scenes[start : start + 64]
        pixels = render(scenes, 64, 64, "square", device=device, seed=seed, scene_offset=ids).images
        images = as_saved_png(pixels * 2 - 1)  # scored as PNGs of them would be
        probs.append(evaluator.predict(images).cpu())  # type: ignore[operator]
        labels.append(vocabulary.encode_batch([s.label_names for s in scenes]))
    return label_accuracy(torch.cat(probs), torch.cat(labels))
