"""The scene renderer: sample scenes, save and load them, render them, train without files.

Run from the repository root (a few seconds on a 2-core CPU):

    python examples/render.py

It draws 4 random i-CLEVR-style scenes, round-trips them through a scenes JSON file, renders
them at 64 x 64 into a PNG grid, counts each object's visible pixels, re-renders one scene
with an object recoloured by hand, and reads an item of a RenderedClevrDataset (the data set
that renders while a model trains). Everything is written to a temporary folder that is
deleted at the end.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from clevr_diffusion import RenderedClevrDataset, decode_labels
from clevr_diffusion.render import load_scenes, render, sample_scenes, save_scenes
from clevr_diffusion.utils.images import save_grid


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        # Scene i depends only on (seed, i): the same seed always gives the same scenes.
        scenes = sample_scenes(4, seed=0, style="iclevr")
        path = save_scenes(scenes, tmp / "scenes.json")  # CLEVR's scene JSON format
        scenes = load_scenes(path)
        print(f"{len(scenes)} scenes saved to and loaded from {path.name}")

        # "square" squashes the 4:3 camera view onto 64 x 64, as i-CLEVR's 64 px images are.
        out = render(scenes, width=64, height=64, frame="square", supersample=2, seed=0)
        grid = save_grid(out.images * 2 - 1, tmp / "scenes.png", nrow=4)  # save_grid takes [-1, 1]
        print(f"images {tuple(out.images.shape)} in [{out.images.min():.2f}, {out.images.max():.2f}] "
              f"-> {grid.name}, object ids {tuple(out.object_ids.shape)}")

        # object_ids holds, per pixel, the index of the object seen there (-1 backdrop), so a
        # mask of one object is `ids == i`; its sum is the object's visible pixel count.
        for n, (scene, ids) in enumerate(zip(scenes, out.object_ids, strict=True)):
            counts = ", ".join(
                f"{o.color} {o.shape} {int((ids == i).sum())} px" for i, o in enumerate(scene.objects)
            )
            print(f"scene {n}: {counts}")

        # Scenes are frozen dataclasses: edit a copy to render a scene of your own.
        first = scenes[0].objects[0]
        new_color = "purple" if first.color != "purple" else "yellow"
        edited = dataclasses.replace(
            scenes[0], objects=(dataclasses.replace(first, color=new_color), *scenes[0].objects[1:])
        )
        recoloured = render(edited, width=64, height=64, frame="square", supersample=2, seed=0)
        changed = (recoloured.images[0] != out.images[0]).any(dim=0)
        print(f"scene 0 with its {first.color} {first.shape} made {new_color}: {int(changed.sum())} pixels "
              f"changed (the object covers {int((out.object_ids[0] == 0).sum())}; the rest is light it bounces)")

        # The data set renders items when they are read (on device="cuda" for a GPU run), so a
        # training run needs no image files; same seed, same scenes as make_dataset.
        dataset = RenderedClevrDataset(num_scenes=4, image_size=64, seed=0, supersample=2)
        image, label = dataset[2]
        print(dataset)
        print(f"item 2 ({dataset.files[2]}): image {tuple(image.shape)} {image.dtype} in "
              f"[{image.min():.2f}, {image.max():.2f}], labels {decode_labels(label)}")


if __name__ == "__main__":
    main()
