"""An i-CLEVR-style data set rendered on the fly, so training needs no image files.

Items are rendered with the built-in renderer (`clevr_diffusion.render.render`) when they are
read, on the data set's ``device``, from the same scenes and the same noise streams that
`clevr_diffusion.render.make_dataset` uses: at the same size, seed and supersampling an item is
exactly the image `ClevrDataset` would read from a ``make_dataset`` folder (on the CPU; other
devices differ by floating-point rounding only).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..labels import Vocabulary
from ..render.camera import Frame
from ..render.dataset_writer import _frame_for
from ..render.randomization import DomainRandomization
from ..render.renderer import render
from ..render.sampling import Style, object_counts, scene_at, scene_prefix
from ..render.scene import Scene
from ..utils.parallel import parallel_map
from .dataset import _image_size

__all__ = ["RenderedClevrDataset"]

# make_dataset renders frame k of scene i with the noise stream i * 32 + k (a scene has at most
# 22 objects, so streams never collide).
_STREAMS_PER_SCENE = 32


def _render_items(
    scenes: Sequence[Scene],
    streams: Sequence[int],
    width: int,
    height: int,
    frame: Frame,
    supersample: int,
    device: torch.device,
    seed: int,
    randomization: DomainRandomization | None = None,
) -> torch.Tensor:
    """Render ``scenes[j]`` with the noise stream ``streams[j]``, all in one call: (B, 3, H, W) in [0, 1]."""
    out = render(
        list(scenes), width, height, frame, supersample, device, seed, scene_offset=list(streams), randomization=randomization
    )
    return out.images


class RenderedClevrDataset(Dataset):
    """Random CLEVR scenes rendered when their items are read: no data on disk.

    Scene ``i`` is ``sample_scene(numpy.random.default_rng([seed, i]), style, num_objects)``,
    as in `clevr_diffusion.render.make_dataset`, drawn the first time one of its items is read
    and then kept. With ``nested`` (the i-CLEVR way) scene ``i`` gives one item per object,
    frame ``k`` showing its first ``k + 1`` objects; otherwise one item with all its objects.
    Items follow ``make_dataset``'s file order (scene by scene, frame by frame), and each is
    rendered with its own noise stream, so an item is the same image whichever batch it is
    read in. Images are rounded to 8 bits like the PNG files of a written data set.

    Reading a batch through a `torch.utils.data.DataLoader` calls `__getitems__`, which
    renders the whole batch on ``device``: pass ``device="cuda"`` to render on the training
    GPU (`DDPMTrainer` then reads the data in the main process, without pinned memory).

    Args:
        num_scenes: Number of scenes (i-CLEVR: 6003, giving 18009 nested items).
        image_size: Output size: an int for square images or ``(height, width)``. A 4:3 size
            renders the camera's own view; any other size squashes it onto the grid, as
            i-CLEVR's 64 x 64 images are.
        style: ``"iclevr"`` (large rubber objects, distinct labels) or ``"clevr"``.
        num_objects: Objects per scene, or an inclusive ``(min, max)`` range (default: 3 for
            ``"iclevr"``, 3-6 for ``"clevr"``).
        nested: One item per prefix of each scene instead of one item per scene.
        seed: Seed of the scenes and of the rendering noise (as ``make_dataset``'s).
        supersample: k x k samples per pixel.
        device: Torch device to render on; items are returned on it.
        randomization: Optional `clevr_diffusion.render.DomainRandomization`: per-item jitter
            of lights, floor, materials and field of view (labels stay true), for training
            classifiers that must not learn one renderer's look.
        cache: Keep each item after its first rendering (8-bit, on ``device``: 12 KiB per
            64 x 64 image), so later epochs read instead of render. The items are the same
            either way.

    Items are ``(image, label)``, like `ClevrDataset`'s: image (3, H, W) float32 in [-1, 1],
    label (24,) float32 multi-hot of the frame's objects (each name once; a ``"clevr"`` frame
    may name more than i-CLEVR's 3). An index out of range raises `IndexError`.

    Raises:
        ValueError: On a bad argument (``num_scenes < 1``, a bad ``image_size``, an unknown
            ``style``, an impossible ``num_objects``, a negative ``seed``, ``supersample < 1``).
    """

    def __init__(
        self,
        num_scenes: int = 6003,
        image_size: int | tuple[int, int] = 64,
        style: Style = "iclevr",
        num_objects: int | tuple[int, int] | None = None,
        nested: bool = True,
        seed: int = 0,
        supersample: int = 2,
        device: str | torch.device = "cpu",
        randomization: DomainRandomization | None = None,
        cache: bool = False,
    ) -> None:
        if isinstance(num_scenes, bool) or not isinstance(num_scenes, (int, np.integer)) or num_scenes < 1:
            raise ValueError(f"num_scenes must be an int >= 1, got {num_scenes!r}")
        if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
            raise ValueError(f"supersample must be an int >= 1, got {supersample!r}")
        self._size = _image_size(image_size)
        # Only the count of each scene is drawn now (cheap); it fixes the item layout.
        self._counts = object_counts(int(num_scenes), seed, style, num_objects)
        frames = self._counts if nested else [1] * len(self._counts)
        # Item index of each scene's first frame, and the total at the end.
        self._starts = np.concatenate([[0], np.cumsum(frames)]).astype(np.int64)
        self._style = style
        self._num_objects = num_objects
        self._nested = bool(nested)
        self._seed = int(seed)
        self._supersample = supersample
        self._device = torch.device(device)
        self._randomization = randomization
        self._camera_frame = _frame_for(self._size[1], self._size[0])
        self._scenes: dict[int, Scene] = {}
        # The i-CLEVR names without i-CLEVR's 3-object cap: "clevr" scenes hold up to 6 or more.
        self._vocabulary = Vocabulary(Vocabulary.default().names, max_objects=None)
        self._cache = bool(cache)
        # Filled lazily: (N, 3, H, W) uint8 pixels, (N, 24) labels, and which items are in.
        self._cached: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # -- items --------------------------------------------------------------------------

    def locate(self, index: int) -> tuple[int, int]:
        """Return ``(scene, frame)`` of item ``index`` (negative indices count from the end).

        Raises:
            IndexError: ``index`` is out of range.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        index = int(index) % len(self)
        scene = int(np.searchsorted(self._starts, index, side="right")) - 1
        return scene, index - int(self._starts[scene])

    def scene(self, scene: int) -> Scene:
        """The full scene number ``scene`` (drawn on first use, then kept)."""
        if not 0 <= scene < self.num_scenes:
            raise IndexError(f"scene {scene} out of range for {self.num_scenes} scenes")
        drawn = self._scenes.get(scene)
        if drawn is None:
            drawn = scene_at(scene, self._seed, style=self._style, num_objects=self._num_objects)
            self._keep(scene, drawn)
        return drawn

    def _keep(self, scene: int, drawn: Scene) -> None:
        if len(drawn.objects) != self._counts[scene]:
            raise RuntimeError(
                f"scene {scene} has {len(drawn.objects)} objects, object_counts said "
                f"{self._counts[scene]}: sample_scene and object_counts disagree"
            )
        self._scenes[scene] = drawn

    def draw_scenes(self, workers: int = 1) -> None:
        """Draw every scene now, in ``workers`` processes, instead of on first use.

        Drawing checks each object's visibility (several milliseconds a scene on one core),
        which would otherwise stall the first epoch of a GPU run; the scenes are the same.
        """
        todo = [i for i in range(self.num_scenes) if i not in self._scenes]
        draw = functools.partial(scene_at, seed=self._seed, style=self._style, num_objects=self._num_objects)
        for index, drawn in zip(todo, parallel_map(draw, todo, workers)):
            self._keep(index, drawn)

    def item_scene(self, index: int) -> Scene:
        """The scene item ``index`` shows, as ``make_dataset`` stores it in ``scenes.json``.

        A nested frame ``k`` keeps the first ``k + 1`` objects; ``file`` is the image name
        ``make_dataset`` would write (``CLEVR_train_{scene:06d}_{k}.png``).
        """
        return self._frame_scene(*self.locate(index))

    def _frame_scene(self, scene: int, frame: int) -> Scene:
        full = self.scene(scene)
        count = frame + 1 if self._nested else len(full.objects)
        return dataclasses.replace(scene_prefix(full, count, recount=False), file=self._file(scene, frame))

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(image, label)``: (3, H, W) float32 in [-1, 1] and (24,) float32."""
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Render items ``indices`` together; a `DataLoader` calls this with a whole batch.

        Returns:
            One ``(image, label)`` per index, as `__getitem__`, on ``device``.
        """
        located = [self.locate(i) for i in indices]
        if not located:
            return []
        if self._cache:
            return self._read_cached([int(i) % len(self) for i in indices], located)
        pixels, labels = self._render_located(located)
        images = pixels.float() / 127.5 - 1.0
        return [(images[j], labels[j]) for j in range(len(located))]

    def _read_cached(self, indices: list[int], located: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Items ``indices`` from the cache, rendering (and storing) those not there yet."""
        if self._cached is None:
            height, width = self._size
            self._cached = (
                torch.zeros(len(self), 3, height, width, dtype=torch.uint8, device=self._device),
                torch.zeros(len(self), len(self._vocabulary), device=self._device),
                torch.zeros(len(self), dtype=torch.bool),
            )
        pixels, labels, done = self._cached
        missing = [j for j, i in enumerate(indices) if not done[i]]
        if missing:
            new_pixels, new_labels = self._render_located([located[j] for j in missing])
            rows = torch.tensor([indices[j] for j in missing])
            pixels[rows.to(self._device)] = new_pixels
            labels[rows.to(self._device)] = new_labels
            done[rows] = True
        rows = torch.tensor(indices, device=self._device)
        images = pixels[rows].float() / 127.5 - 1.0
        found = labels[rows]
        return [(images[j], found[j]) for j in range(len(indices))]

    def _render_located(self, located: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Render ``(scene, frame)`` items: (B, 3, H, W) uint8 pixels and (B, 24) labels, on ``device``."""
        scenes = [self._frame_scene(scene, frame) for scene, frame in located]
        height, width = self._size
        streams = [scene * _STREAMS_PER_SCENE + frame for scene, frame in located]
        pixels = _render_items(
            scenes, streams, width, height, self._camera_frame, self._supersample, self._device, self._seed,
            self._randomization,
        )  # fmt: skip
        # Rounded to 8 bits as make_dataset's PNGs are; items scale them as ClevrDataset does.
        pixels = (((pixels * 2 - 1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        names = [s.label_names for s in scenes]
        return pixels, self._vocabulary.encode_batch(names).to(self._device)

    def __repr__(self) -> str:
        height, width = self._size
        return (
            f"RenderedClevrDataset(scenes={self.num_scenes}, images={len(self)}, size={height}x{width}, "
            f"style={self._style!r}, num_objects={self._num_objects!r}, nested={self._nested}, "
            f"seed={self._seed}, supersample={self._supersample}, device={str(self._device)!r}, "
            f"randomized={self._randomization is not None}, cache={self._cache})"
        )

    @staticmethod
    def _file(scene: int, frame: int) -> str:
        return f"CLEVR_train_{scene:06d}_{frame}.png"

    # -- read-only views ----------------------------------------------------------------

    @property
    def num_scenes(self) -> int:
        """Number of scenes."""
        return len(self._counts)

    @property
    def image_size(self) -> tuple[int, int]:
        """Output ``(height, width)`` in pixels."""
        return self._size

    @property
    def device(self) -> torch.device:
        """The device items are rendered on and returned on."""
        return self._device

    @property
    def seed(self) -> int:
        """Seed of the scenes and the rendering noise."""
        return self._seed

    @property
    def files(self) -> list[str]:
        """The image names ``make_dataset`` would write, in item order (nothing is drawn)."""
        starts = self._starts.tolist()
        return [self._file(s, k) for s in range(self.num_scenes) for k in range(starts[s + 1] - starts[s])]
