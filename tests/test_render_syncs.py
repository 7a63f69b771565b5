"""The renderer's host-device syncs per chunk, and the bit-exactness of the code paths that avoid them.

On a GPU every read of device data by the host (``.item()``, ``.tolist()``, ``if tensor``,
``nonzero``, boolean-mask indexing, ``bincount``...) stalls the host until the device catches
up. These tests count such calls during `render` on the CPU, where they are cheap but made
in the same places, and check that a chunk makes a fixed number of them whatever its scenes.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from clevr_diffusion.render import Scene, SceneObject
from clevr_diffusion.render import renderer as renderer_module
from clevr_diffusion.render.geometry import cast_rays, intersect_primitives, occluded, per_slot, primitive_table
from clevr_diffusion.render.randomization import DomainRandomization
from clevr_diffusion.render.renderer import render

SYNCS_PER_CHUNK = 27
"""Most host syncs one chunk may make, whatever its number of scenes and objects.

Per chunk: 2 ray casts (first hits; object ids at pixel centres together with the outline
pixels' extra coverage rays) of 2 each (one compaction of all slots' candidate rays and one read
of the slot boundaries), the compaction of the shaded samples, the host's copy of one mask of
the shaded samples, their rubber ones and the outline pixels, and on the host its per-scene
counts and positions, the rubber samples' and the outline pixels' positions (10; the last two
work on the copy, so they are no device syncs on a GPU); diffuse shading: its compaction, the
shadow test, the bounce rays' compaction and their secondary hits (compaction, cast 2, shadow
test) (7); metal, all reflection samples together: its compaction, the reflections' secondary
hits (4), the bounce from those (4) and one shadow test for all lights (10). The code before
this bound made 72 per chunk of 3-object rubber scenes and about 500 with six-object metal
ones (one or more per object slot).
"""

# Host-side draws from the CPU generators: never device data, so not syncs.
_HOST_ONLY_FILES = {"randomization.py"}
_INHERITED = object()
_THIS_FILE = os.path.basename(__file__)


def _obj(shape: str, material: str, x: float, y: float, scale: float = 0.7, color: str = "red") -> SceneObject:
    return SceneObject(shape, color, "large" if scale >= 0.5 else "small", material, (x, y), scale, 20.0)


def _small_chunk() -> list[Scene]:
    """One scene with one metal and one rubber object."""
    return [Scene(objects=(_obj("sphere", "metal", -1.0, 0.5), _obj("cube", "rubber", 1.2, -0.8, color="blue")))]


def _big_chunk() -> list[Scene]:
    """Twelve scenes of 1 to 10 objects, metal and rubber, large and small, every shape."""
    shapes, colors = ("sphere", "cube", "cylinder"), ("red", "cyan", "yellow", "gray", "green")
    scenes = []
    for i in range(12):
        count = 1 + (i * 7) % 10
        objects = tuple(
            _obj(
                shapes[(i + j) % 3],
                "metal" if (i + 2 * j) % 3 == 0 else "rubber",
                -2.5 + 1.6 * (j % 4),
                -2.0 + 1.5 * (j // 4),
                0.7 if (i + j) % 2 else 0.35,
                colors[(i + j) % 5],
            )
            for j in range(count)
        )
        scenes.append(Scene(objects=objects))
    return scenes


def _bool_index(index: Any) -> bool:
    """Whether ``tensor[index]`` selects by a boolean tensor (a hidden ``nonzero``)."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


_SYNC_METHODS = ("item", "tolist", "nonzero", "cpu", "numpy", "masked_select")
_SYNC_FUNCTIONS = ("nonzero", "argwhere", "bincount", "masked_select", "unique")
# Conversions and boolean-mask indexing are dunder methods: patching those on the class
# rewrites its C-level slots for the rest of the session, so a TorchFunctionMode sees them.
_SYNC_DUNDERS = ("__bool__", "__int__", "__float__", "__index__", "__getitem__", "__setitem__")


def _caller_file(depth: int) -> str:
    return os.path.basename(sys._getframe(depth + 1).f_code.co_filename)


def _counting(original: Callable[..., Any], name: str, counts: Counter[str]) -> Callable[..., Any]:
    """``original`` wrapped to count its calls in ``counts`` by ``file:name``."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        where = _caller_file(1)
        # A call from this file is the TorchFunctionMode handing the patched method back.
        if where not in _HOST_ONLY_FILES and where != _THIS_FILE:
            counts[f"{where}:{name}"] += 1
        return original(*args, **kwargs)

    return counted


class _DunderSyncs(TorchFunctionMode):
    """Counts ``if t``, ``int(t)``, ``float(t)`` and indexing by a boolean tensor (a hidden ``nonzero``)."""

    def __init__(self, counts: Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in _SYNC_DUNDERS and (not name.endswith("item__") or _bool_index(args[1])):
            where = _caller_file(1)
            if where not in _HOST_ONLY_FILES:
                self.counts[f"{where}:{name}"] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def _count_syncs() -> Iterator[Counter[str]]:
    """Count the host-sync-like calls made inside the block, by ``file:call``.

    The patched methods and functions are restored exactly (deleted again where `torch.Tensor`
    inherits them from ``torch._C.TensorBase``).
    """
    counts: Counter[str] = Counter()
    targets = [(torch.Tensor, name) for name in _SYNC_METHODS] + [(torch, name) for name in _SYNC_FUNCTIONS]
    saved = [(owner, name, owner.__dict__.get(name, _INHERITED)) for owner, name in targets]
    try:
        for owner, name in targets:
            setattr(owner, name, _counting(getattr(owner, name), name, counts))
        with _DunderSyncs(counts):
            yield counts
    finally:
        for owner, name, original in saved:
            if original is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def _syncs(scenes: list[Scene], **kwargs: Any) -> int:
    with _count_syncs() as counts:
        render(scenes, width=16, height=16, supersample=2, **kwargs)
    return sum(counts.values())


@pytest.mark.slow
def test_syncs_per_chunk_do_not_grow_with_scenes_or_objects() -> None:
    small = _syncs(_small_chunk())
    big = _syncs(_big_chunk(), randomization=DomainRandomization())
    assert big == small, f"{big} syncs for 12 scenes of up to 10 objects, {small} for one of 2"
    assert small <= SYNCS_PER_CHUNK


@pytest.mark.slow
def test_syncs_scale_with_chunks_not_scenes() -> None:
    scenes = _small_chunk() * 4
    one_chunk = _syncs(scenes)
    four_chunks = _syncs(scenes, chunk=1)
    assert four_chunks == 4 * one_chunk <= 4 * SYNCS_PER_CHUNK


@pytest.mark.slow
def test_chunking_and_batching_keep_images_bit_identical() -> None:
    scenes = _big_chunk()
    randomization = DomainRandomization()
    whole = render(scenes, width=16, height=12, seed=4, randomization=randomization, chunk=None)
    chunked = render(scenes, width=16, height=12, seed=4, randomization=randomization, chunk=1)
    assert torch.equal(whole.images, chunked.images) and torch.equal(whole.object_ids, chunked.object_ids)
    pairs = render(scenes, width=16, height=12, seed=4, randomization=randomization, chunk=5)
    assert torch.equal(whole.images, pairs.images)
    for i in (0, 3, 11):  # alone, with its own stream; slot counts differ from the batch's
        alone = render(scenes[i], width=16, height=12, seed=4, scene_offset=i, randomization=randomization)
        assert torch.equal(alone.images[0], whole.images[i]) and torch.equal(alone.object_ids[0], whole.object_ids[i])
    assert (whole.object_ids >= 5).any()  # the many-object scenes' later slots are seen


def test_default_chunk_depends_on_device() -> None:
    samples = 64 * 64 * 2 * 2
    assert renderer_module._chunk_size(None, torch.device("cpu"), samples) == 64
    assert renderer_module._chunk_size(None, torch.device("cuda"), samples) == 1024
    assert renderer_module._chunk_size(100, torch.device("cuda"), samples) == 100
    assert renderer_module._chunk_size(None, torch.device("cpu"), 320 * 240 * 9) == 1
    with pytest.raises(ValueError, match="chunk"):
        render(_small_chunk(), width=8, height=8, chunk=0)


def _rays(scenes: list[Scene], count: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random rays from above the floor through the objects' region, spread over the scenes."""
    g = torch.Generator().manual_seed(seed)
    sid = torch.randint(len(scenes), (count,), generator=g)
    o = torch.rand(count, 3, generator=g) * torch.tensor([8.0, 8.0, 3.0]) - torch.tensor([4.0, 4.0, -0.05])
    target = torch.rand(count, 3, generator=g) * torch.tensor([6.0, 6.0, 1.0]) - torch.tensor([3.0, 3.0, 0.0])
    return sid, o, torch.nn.functional.normalize(target - o, dim=-1)


def test_cast_rays_matches_a_sequential_scan_with_two_syncs() -> None:
    scenes = _big_chunk()
    prims = primitive_table(scenes)
    sid, o, d = _rays(scenes, 4000)
    with _count_syncs() as counts:
        t, n, ids = cast_rays(prims, sid, o, d)
    assert sum(counts.values()) == 2, counts  # was one per object slot (10 here)
    # The scan it replaces: every slot in order, a strictly closer hit wins.
    t_ref, n_ref, ids_ref = cast_rays(prims[:, :0], sid, o, d)
    for k in range(prims.shape[1]):
        tk, nk = intersect_primitives(o, d, per_slot(prims[:, k], sid))
        closer = tk < t_ref
        t_ref, ids_ref = torch.where(closer, tk, t_ref), torch.where(closer, k, ids_ref)
        n_ref = torch.where(closer[:, None], nk, n_ref)
    assert torch.equal(t, t_ref) and torch.equal(n, n_ref) and torch.equal(ids, ids_ref)
    assert (ids >= 0).float().mean() > 0.2


def test_occluded_with_an_active_mask_matches_compaction() -> None:
    scenes = _big_chunk()
    prims = primitive_table(scenes)
    sid, o, d = _rays(scenes, 3000, seed=1)
    dist = torch.rand(3000, generator=torch.Generator().manual_seed(2)) * 8
    active = torch.rand(3000, generator=torch.Generator().manual_seed(3)) < 0.6
    masked = occluded(prims, sid, o, d, dist, active=active)
    index = active.nonzero().squeeze(-1)
    compacted = torch.zeros_like(masked)
    compacted[index] = occluded(prims, sid[index], o[index], d[index], dist[index])
    assert torch.equal(masked, compacted)
    assert masked.any() and not masked[~active].any()
    far = torch.full_like(dist, float("inf"))
    unmasked = occluded(prims, sid, o, d, far)[index]
    assert torch.equal(unmasked, occluded(prims, sid[index], o[index], d[index], far[index]))
