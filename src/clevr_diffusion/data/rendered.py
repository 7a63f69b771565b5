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
from tqdm.auto import tqdm

from ..labels import Vocabulary
from ..render.camera import Frame, frame_for
from ..render.randomization import DomainRandomization
from ..render.renderer import render
from ..render.sampling import Style, object_counts, scene_at, scene_prefix
from ..render.scene import Scene
from ..utils.parallel import available_cores, parallel_map
from .dataset import _image_size

__all__ = ["PARALLEL_MIN_SCENES", "RenderedClevrDataset"]

PARALLEL_MIN_SCENES = 256
"""Scenes to draw from which `RenderedClevrDataset.draw_scenes` starts worker processes by
default (each takes a second or two to start and import torch)."""

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
        self._camera_frame = frame_for(self._size[1], self._size[0])
        self._scenes: dict[int, Scene] = {}
        # The i-CLEVR names without i-CLEVR's 3-object cap: "clevr" scenes hold up to 6 or more.
        self._vocabulary = Vocabulary(Vocabulary.default().names, max_objects=None)
        self._cache = bool(cache)
        # Filled lazily (see _cache_tensors), and how many items are in.
        self._cached: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._num_cached = 0

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

    def draw_scenes(self, workers: int | None = None) -> None:
        """Draw every scene now, in ``workers`` processes, instead of on first use.

        Drawing checks each object's visibility (5-30 ms a scene on one core), which would
        otherwise stall the first pass over the data; the scenes are the same either way.

        Args:
            workers: Processes to draw in (default: one per available core; fewer than
                `PARALLEL_MIN_SCENES` scenes to draw are drawn here, where starting processes
                would cost more than it saves).
        """
        todo = [i for i in range(self.num_scenes) if i not in self._scenes]
        if workers is None:
            workers = available_cores() if len(todo) >= PARALLEL_MIN_SCENES else 1
        draw = functools.partial(scene_at, seed=self._seed, style=self._style, num_objects=self._num_objects)
        for index, drawn in zip(todo, parallel_map(draw, todo, workers), strict=True):
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
            images, labels = self.gather(torch.tensor([int(i) % len(self) for i in indices]))
        else:
            pixels, labels = self._render_located(located)
            images = pixels.float() / 127.5 - 1.0
        return [(images[j], labels[j]) for j in range(len(located))]

    # -- whole batches on the device (with ``cache=True``) ------------------------------

    @property
    def can_gather(self) -> bool:
        """Whether `gather` can read batches: the data set keeps its items (``cache=True``)."""
        return self._cache

    @property
    def num_cached(self) -> int:
        """How many items are rendered and kept so far."""
        return self._num_cached

    def gather(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch by one index gather from the cache, on the cache's device.

        Items not yet rendered are rendered first (each once, however often it is asked for):
        that needs the indices on the host. Once every item is in (`make_resident`), a batch
        is two gathers on the device and nothing else, with no host-device synchronisation.

        Args:
            indices: (B,) int64 item indices in [0, len), on any device.

        Returns:
            ``(images, labels)``: (B, 3, H, W) float32 in [-1, 1] and (B, 24) float32,
            the items `__getitem__` returns, stacked.

        Raises:
            RuntimeError: If the data set was made without ``cache=True``.
        """
        if not self._cache:
            raise RuntimeError("gather needs the rendered items kept: make the data set with cache=True")
        if self._num_cached < len(self):
            self._fill(sorted(set(indices.tolist())))
        pixels, labels, _ = self._cache_tensors()
        indices = indices.to(pixels.device, non_blocking=True)
        return pixels[indices].float() / 127.5 - 1.0, labels[indices]

    def make_resident(self, device: str | torch.device | None = None, progress: bool = False, chunk: int | None = None) -> None:
        """Render every item not yet kept (the first pass over the data), then keep them on ``device``.

        Scenes are drawn first in worker processes (`draw_scenes`); items are rendered on the
        data set's ``device`` in chunks of ``chunk`` (default: 4096 on a GPU, 256 on the CPU)
        and then moved, if ``device`` is another one, so `gather` reads them there.

        Args:
            device: Where to keep the items (default: the data set's ``device``).
            progress: Show a progress bar.
            chunk: Items per `render` call.

        Raises:
            RuntimeError: If the data set was made without ``cache=True``.
        """
        if not self._cache:
            raise RuntimeError("make_resident needs the rendered items kept: make the data set with cache=True")
        if self._num_cached < len(self):
            self.draw_scenes()
            done = self._cache_tensors()[2]
            missing = (~done).nonzero().squeeze(1).tolist()
            chunk = chunk or (4096 if self._device.type != "cpu" else 256)
            bar = tqdm(total=len(missing), desc="rendering training images", unit="img", disable=not progress)
            for start in range(0, len(missing), chunk):
                part = missing[start : start + chunk]
                self._fill(part)
                bar.update(len(part))
            bar.close()
        if device is not None and torch.device(device) != self._cache_tensors()[0].device:
            pixels, labels, done = self._cache_tensors()
            self._cached = (pixels.to(device), labels.to(device), done)

    def _cache_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cache, made on first use: (N, 3, H, W) uint8 pixels and (N, 24) labels on the
        device, and which items are in, (N,) bool on the CPU (host-side bookkeeping)."""
        if self._cached is None:
            height, width = self._size
            self._cached = (
                torch.zeros(len(self), 3, height, width, dtype=torch.uint8, device=self._device),
                torch.zeros(len(self), len(self._vocabulary), device=self._device),
                torch.zeros(len(self), dtype=torch.bool),
            )
        return self._cached

    def _fill(self, indices: list[int]) -> None:
        """Render and keep items ``indices`` (in [0, len)) that are not kept yet."""
        pixels, labels, done = self._cache_tensors()
        missing = [i for i, kept in zip(indices, done[indices].tolist(), strict=True) if not kept]
        if not missing:
            return
        new_pixels, new_labels = self._render_located([self.locate(i) for i in missing])
        rows = torch.tensor(missing)
        pixels[rows.to(pixels.device)] = new_pixels.to(pixels.device)
        labels[rows.to(labels.device)] = new_labels.to(labels.device)
        done[rows] = True
        self._num_cached += len(missing)

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
