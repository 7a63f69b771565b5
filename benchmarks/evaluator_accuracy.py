"""Accuracy and speed of an evaluator: held-out renders, Blender references, 32-image timing.

Prints, for the bundled evaluator (or ``--weights FILE`` from ``train-evaluator``, or
``--checkpoint checkpoint.pth`` for the official one), the label- and image-level accuracy on

* freshly rendered i-CLEVR-style images (1-3 large rubber objects, plain CLEVR lighting) from
  a seed no training used;
* freshly rendered full-CLEVR images (3-6 objects, large and small, rubber and metal), split
  by object size: 2,000-odd labels, a far steadier measure of the full-CLEVR case than the
  31 labels of the Blender set;
* the Blender renders of the original CLEVR assets in ``shared/reference/blender/png64``,
  split into their i-CLEVR-style and full-CLEVR images;

and the median CPU time to evaluate one batch of 32 images (the size of a condition file).

    python benchmarks/evaluator_accuracy.py [--weights FILE | --checkpoint PATH] [--heldout N] [--clevr N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clevr_diffusion import Vocabulary
from clevr_diffusion.evaluation import ClevrEvaluator, heldout_accuracy, label_accuracy
from clevr_diffusion.render import Scene, load_scenes, render
from clevr_diffusion.render.sampling import scene_at
from clevr_diffusion.utils.images import as_saved_png

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "blender"
CLEVR_SEED = 20_000  # no training run or other check draws scenes from this seed


def label_hits_by_size(scenes: list[Scene], probs: torch.Tensor, vocabulary: Vocabulary) -> dict[str, list[int]]:
    """[hits, labels] per object size under the top-k rule (k = distinct labels per image).

    A label held by objects of both sizes counts as large, the easier one to see.
    """
    counts = {"large": [0, 0], "small": [0, 0]}
    for scene, p in zip(scenes, probs, strict=True):
        sizes: dict[int, str] = {}
        for obj in scene.objects:
            index = vocabulary.index(f"{obj.color} {obj.shape}")
            sizes[index] = "large" if "large" in (obj.size, sizes.get(index)) else obj.size
        top = set(p.topk(len(sizes)).indices.tolist())
        for index, size in sizes.items():
            counts[size][0] += index in top
            counts[size][1] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--heldout", type=int, default=960, help="fresh renders to score (0: skip)")
    parser.add_argument("--clevr", type=int, default=512, help="fresh full-CLEVR renders to score (0: skip)")
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint is not None:
        evaluator = ClevrEvaluator.from_checkpoint(args.checkpoint)
    elif args.weights is not None:
        evaluator = ClevrEvaluator.from_file(args.weights)
    else:
        evaluator = ClevrEvaluator()
    layout = "official layout" if evaluator.uses_maxpool else "no stem max pool"
    print(f"evaluator: {evaluator.kind} ({layout})")

    if args.heldout > 0:
        result = heldout_accuracy(evaluator, num_images=args.heldout)
        print(f"held-out renders ({args.heldout} images, 1-3 objects): {result}")

    vocabulary = Vocabulary(Vocabulary.default().names, max_objects=None)
    if args.clevr > 0:
        fresh = [scene_at(i, seed=CLEVR_SEED, style="clevr") for i in range(args.clevr)]
        pixels = torch.cat([
            render(fresh[s : s + 64], 64, 64, "square", seed=CLEVR_SEED, scene_offset=s).images
            for s in range(0, len(fresh), 64)
        ])  # fmt: skip
        probs = evaluator.predict(as_saved_png(pixels * 2 - 1))
        labels = vocabulary.encode_batch([s.label_names for s in fresh])
        print(f"fresh full-CLEVR renders ({args.clevr} images, 3-6 objects): {label_accuracy(probs, labels)}")
        for size, (hits, total) in label_hits_by_size(fresh, probs, vocabulary).items():
            print(f"    {size} objects: {hits / total:.4f} ({hits}/{total} labels)")

    scenes = load_scenes(args.reference / "scenes.json")
    for kind in ("iclevr", "clevr"):
        picked = [s for s in scenes if s.extra.get("kind") == kind]
        images = torch.stack([
            torch.from_numpy(np.array(Image.open(args.reference / "png64" / Path(s.file).name).convert("RGB"))).permute(2, 0, 1)
            for s in picked
        ]).float() / 127.5 - 1  # fmt: skip
        labels = vocabulary.encode_batch([s.label_names for s in picked])
        result = label_accuracy(evaluator.predict(images), labels)
        print(f"Blender png64, {kind} ({len(picked)} images): {result}")
        for s, h, k in zip(picked, result.per_image_hits, result.per_image_total, strict=True):
            if h < k:
                print(f"    {Path(s.file).name}: {h}/{k}")

    batch = torch.rand(32, 3, 64, 64) * 2 - 1
    evaluator.predict(batch)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        evaluator.predict(batch)
        times.append(time.perf_counter() - start)
    print(f"CPU time to evaluate 32 images ({args.threads} threads): median {statistics.median(times) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
