"""Draw an 8 x 4 grid of toy training images: ``docs/images/toy_dataset.png``.

The images come from :func:`clevr_diffusion.make_toy_dataset` (32 scenes, one image each, in
a temporary folder) and are read back through :class:`clevr_diffusion.ClevrDataset` at
64 x 64 pixels, so the grid shows exactly what a model trained at 64 px sees. Run:

    python docs/scripts/draw_toy_grid.py            # writes docs/images/toy_dataset.png
    python docs/scripts/draw_toy_grid.py out.png    # or another path

It prints the label list of every image, row by row.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from clevr_diffusion import ClevrDataset, make_toy_dataset
from clevr_diffusion.utils.images import save_grid


def main() -> None:
    default = Path(__file__).resolve().parents[1] / "images" / "toy_dataset.png"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_dataset(Path(tmp) / "toy", num_scenes=32, seed=0, nested=False, progress=False)
        dataset = ClevrDataset(root, image_size=64)
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        labels = dataset.label_lists
    save_grid(images, out, nrow=8, upscale=2)
    for row in range(0, len(labels), 8):
        print(f"row {row // 8 + 1}:", " | ".join(", ".join(names) for names in labels[row : row + 8]))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
