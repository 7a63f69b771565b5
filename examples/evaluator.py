"""Judge images as the i-CLEVR benchmark does, with the bundled evaluator or the official one.

Renders a few i-CLEVR-style scenes, scores them with the library's own evaluator, shows the
metric on hand-made outputs, and loads a checkpoint saved the way the course saves the
official evaluator (here with random weights, since the real file is not bundled).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from clevr_diffusion import ClevrEvaluator, Vocabulary, label_accuracy
from clevr_diffusion.render import render, sample_scene

# Four rendered scenes with 1 to 3 objects, and their labels.
scenes = [sample_scene(np.random.default_rng([42, i]), num_objects=(1, 3)) for i in range(4)]
images = render(scenes, 64, 64).images * 2 - 1  # the evaluator takes [-1, 1]
names = [s.label_names for s in scenes]
labels = Vocabulary.default().encode_batch(names)

evaluator = ClevrEvaluator()  # the bundled weights: numbers for the built-in world
result = evaluator.accuracy(images, labels)
print(f"bundled evaluator on 4 renders: {result}")
probs = evaluator.predict(images)
for name, p in zip(names, probs, strict=True):
    top = [Vocabulary.default().names[int(i)] for i in p.topk(len(name)).indices]
    print(f"  asked {name}, sees {top}")

# The metric itself: per image, the k highest outputs against the k true labels.
outputs = torch.zeros(2, 24)
outputs[0, [0, 5]] = 1.0  # image 0: both right
outputs[1, [3, 9]] = 1.0  # image 1: one of two right
truth = torch.zeros(2, 24)
truth[0, [0, 5]] = 1
truth[1, [3, 4]] = 1
print(f"hand-made outputs: {label_accuracy(outputs, truth)}")

# The official evaluator: a dict with the state dict under "model" (random weights here).
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "checkpoint.pth"
    torch.save({"model": ClevrEvaluator(pretrained=False).state_dict()}, path)
    official = ClevrEvaluator.from_checkpoint(path, device="cpu")
    print(f"loaded {official.kind} evaluator from checkpoint.pth; its outputs: {tuple(official.predict(images).shape)}")
