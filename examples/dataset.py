"""Write a small toy i-CLEVR folder to a temporary directory and read it with ClevrDataset.

Run from the repository root:

    python examples/dataset.py

With the real data, point ClevrDataset at the folder holding train.json, objects.json and
the PNG images instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch.utils.data import DataLoader

from clevr_diffusion.data import ClevrDataset, make_toy_dataset
from clevr_diffusion.labels import decode_labels


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_dataset(Path(tmp) / "toy", num_scenes=50, width=128, height=96, seed=0)
        dataset = ClevrDataset(root, image_size=64)
        print(dataset)

        image, label = dataset[2]
        print(f"{dataset.files[2]}: image {tuple(image.shape)} in "
              f"[{image.min():.2f}, {image.max():.2f}], objects {decode_labels(label)}")

        loader = DataLoader(dataset, batch_size=16, shuffle=True)
        images, labels = next(iter(loader))
        print(f"one batch: images {tuple(images.shape)}, labels {tuple(labels.shape)}")


if __name__ == "__main__":
    main()
