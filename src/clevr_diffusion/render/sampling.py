"""Random CLEVR and i-CLEVR scenes, placed by the rules of CLEVR's generator.

The rules are those of ``shared/reference/blender/FORMAT.md`` ("How the scenes were sampled"):

- Camera jitter: uniform ±0.5 m per axis around `CLEVR_DEFAULT_CAMERA`; key, back and fill
  lamps: uniform ±1.0 m per axis around `CLEVR_DEFAULT_LIGHTS` (drawn in that order).
- Each object: x, y ~ U(-3, 3); rejected if for any earlier object
  ``distance(centres) - r - r' < 0.25`` (r the size scalar, cubes included) or if, along any of
  the left, right, front and behind ground directions of the jittered camera,
  ``0 < (new - old) · dir < 0.4``. After ``max_tries`` rejections of one object, all objects
  are placed again (one "restart").
- Visibility: at 320 x 240 with the backdrop hidden, every object must cover at least
  ``min_visible_pixels`` pixel centres, else all objects are placed again (one restart; the
  camera and lamps are kept).

Styles:
    ``'iclevr'``: 3 objects by default, all large rubber, uniform shape, colour and yaw, with
        distinct (colour, shape) labels. Frames 0..n-1 of an i-CLEVR sequence are the prefixes
        `scene_prefix(scene, k)`, k = 1..n: the visibility check on the full scene covers them.
    ``'clevr'``: 3-6 objects by default, uniform size, material, shape, colour and yaw.

Numbers are rounded as in ``scenes.json``: positions, camera and lamps to 6 decimals, yaw to 4,
``pixel_coords`` to ``(round(px), round(py), round(depth, 4))``. The rules are checked on the
rounded values, so a sampled scene satisfies them exactly as stored.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from ..labels import COLORS, SHAPES
from ..utils.parallel import parallel_map
from .camera import REFERENCE_HEIGHT, REFERENCE_WIDTH, Camera
from .geometry import object_id_map
from .scene import (
    CLEVR_DEFAULT_CAMERA,
    CLEVR_DEFAULT_LIGHTS,
    MATERIALS,
    SIZE_SCALE,
    SIZES,
    Lights,
    Scene,
    SceneObject,
)

__all__ = [
    "CAMERA_JITTER",
    "DIRECTION_MARGIN",
    "LIGHT_JITTER",
    "MIN_GAP",
    "PLACEMENT_RANGE",
    "Style",
    "ground_directions",
    "object_counts",
    "sample_scene",
    "sample_scenes",
    "scene_at",
    "scene_prefix",
    "visible_pixel_counts",
]

Style = Literal["iclevr", "clevr"]

CAMERA_JITTER = 0.5
"""Camera jitter, metres: uniform in ±this on each axis."""
LIGHT_JITTER = 1.0
"""Lamp jitter, metres: uniform in ±this on each axis of each lamp."""
PLACEMENT_RANGE = 3.0
"""Object centres x, y ~ U(-PLACEMENT_RANGE, PLACEMENT_RANGE), metres."""
MIN_GAP = 0.25
"""Minimum ``distance - r - r'`` between two objects, metres."""
DIRECTION_MARGIN = 0.4
"""Forbidden band ``0 < Δ·dir < DIRECTION_MARGIN`` along each camera ground direction, metres."""

_DEFAULT_COUNTS: dict[str, tuple[int, int]] = {"iclevr": (3, 3), "clevr": (3, 6)}
_LABELS: tuple[tuple[str, str], ...] = tuple((c, s) for s in SHAPES for c in COLORS)
_MAX_PIXELS = REFERENCE_WIDTH * REFERENCE_HEIGHT


def ground_directions(camera: Sequence[float]) -> dict[str, tuple[float, float]]:
    """CLEVR's four ground directions of a camera looking at the origin with +Z up.

    ``behind`` is the view direction projected onto the ground (away from the camera), ``front``
    its opposite; ``right`` is the camera's right axis (already horizontal), ``left`` its
    opposite. Each is a unit ``(x, y)`` vector.

    Raises:
        ValueError: The camera is on the Z axis (no defined view direction on the ground).
    """
    x, y = float(camera[0]), float(camera[1])
    norm = math.hypot(x, y)
    if norm < 1e-9:
        raise ValueError(f"camera {tuple(camera)!r} is on the Z axis; move it off (x, y) = (0, 0)")
    behind = (-x / norm, -y / norm)
    right = (-y / norm, x / norm)  # forward x up, restricted to the ground
    return {
        "left": (-right[0], -right[1]),
        "right": right,
        "front": (-behind[0], -behind[1]),
        "behind": behind,
    }


def visible_pixel_counts(scene: Scene, width: int = REFERENCE_WIDTH, height: int = REFERENCE_HEIGHT) -> list[int]:
    """Pixel centres at which each object is the first surface hit, backdrop hidden.

    This is CLEVR's visibility check (its object-only render); object i's count is entry i.
    """
    ids = object_id_map(scene, width, height, backdrop=False)
    counts = torch.bincount(ids[ids >= 0].flatten(), minlength=len(scene.objects))
    return [int(c) for c in counts.tolist()]


def _count_range(num_objects: int | tuple[int, int] | None, style: str) -> tuple[int, int]:
    if num_objects is None:
        return _DEFAULT_COUNTS[style]
    if isinstance(num_objects, tuple) and len(num_objects) == 2:
        lo, hi = num_objects
    elif isinstance(num_objects, (int, np.integer)) and not isinstance(num_objects, bool):
        lo = hi = num_objects
    else:
        raise ValueError(f"num_objects must be an int, a (min, max) tuple or None, got {num_objects!r}")
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"num_objects must be whole numbers >= 1, got {num_objects!r}")
    if lo > hi:
        raise ValueError(f"num_objects range {num_objects!r} has min > max; swap them")
    return int(lo), int(hi)


def _check_feasible(style: str, hi: int, min_visible_pixels: int) -> None:
    """Reject requests that no placement can satisfy, before any sampling."""
    if style == "iclevr" and hi > len(_LABELS):
        raise ValueError(
            f"i-CLEVR scenes have distinct (colour, shape) labels, so at most {len(_LABELS)} objects; "
            f"got num_objects up to {hi}: ask for fewer objects or use style='clevr'"
        )
    # Centres must be pairwise >= DIRECTION_MARGIN apart when projected on a ground direction; the
    # square [-R, R]^2 projects onto at most 2 R sqrt(2) of any line.
    span = 2 * PLACEMENT_RANGE * math.sqrt(2)
    most = int(span / DIRECTION_MARGIN) + 1
    if hi > most:
        raise ValueError(
            f"at most {most} objects fit the placement rules (centres in ±{PLACEMENT_RANGE} m, "
            f"{DIRECTION_MARGIN} m apart along the camera's ground directions); got num_objects up to {hi}: "
            "ask for fewer objects"
        )
    if min_visible_pixels > _MAX_PIXELS:
        raise ValueError(
            f"min_visible_pixels={min_visible_pixels} exceeds the {REFERENCE_WIDTH} x {REFERENCE_HEIGHT} frame "
            f"({_MAX_PIXELS} pixels); use a smaller value (CLEVR uses 200)"
        )


def _placement_ok(
    x: float, y: float, r: float, placed: list[tuple[float, float, float]], directions: list[tuple[float, float]]
) -> bool:
    for px, py, pr in placed:
        dx, dy = x - px, y - py
        if math.hypot(dx, dy) - r - pr < MIN_GAP:
            return False
        for ux, uy in directions:
            margin = dx * ux + dy * uy
            if 0 < margin < DIRECTION_MARGIN:
                return False
    return True


def _place_objects(
    rng: np.random.Generator, style: str, count: int, directions: list[tuple[float, float]], max_tries: int
) -> list[SceneObject] | None:
    """One placement pass; ``None`` when an object was rejected ``max_tries`` times."""
    placed: list[tuple[float, float, float]] = []
    objects: list[SceneObject] = []
    used: set[tuple[str, str]] = set()
    for _ in range(count):
        size = "large" if style == "iclevr" else SIZES[int(rng.integers(len(SIZES)))]
        r = SIZE_SCALE[size]
        for _ in range(max_tries):
            x = round(float(rng.uniform(-PLACEMENT_RANGE, PLACEMENT_RANGE)), 6)
            y = round(float(rng.uniform(-PLACEMENT_RANGE, PLACEMENT_RANGE)), 6)
            if _placement_ok(x, y, r, placed, directions):
                break
        else:
            return None
        placed.append((x, y, r))
        if style == "iclevr":
            free = [label for label in _LABELS if label not in used]
            color, shape = free[int(rng.integers(len(free)))]
            used.add((color, shape))
            material = "rubber"
        else:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            color = COLORS[int(rng.integers(len(COLORS)))]
            material = MATERIALS[int(rng.integers(len(MATERIALS)))]
        yaw = round(float(rng.uniform(0.0, 360.0)), 4) % 360.0
        objects.append(
            SceneObject(
                shape=shape, color=color, size=size, material=material, position=(x, y), scale=r, rotation=yaw
            )
        )
    return objects


def _jitter(rng: np.random.Generator, centre: Sequence[float], amount: float) -> tuple[float, float, float]:
    offset = rng.uniform(-amount, amount, size=3)
    return tuple(round(float(c) + float(o), 6) for c, o in zip(centre, offset, strict=True))  # type: ignore[return-value]


def _with_pixel_coords(scene: Scene) -> tuple[SceneObject, ...]:
    if not scene.objects:
        return ()
    camera = Camera.from_scene(scene)
    proj = camera.project([o.center for o in scene.objects]).tolist()
    return tuple(
        dataclasses.replace(o, pixel_coords=(int(round(px)), int(round(py)), round(depth, 4)))
        for o, (px, py, depth) in zip(scene.objects, proj, strict=True)
    )


def _check_n_and_seed(n: int, seed: int) -> None:
    for name, value in (("n", n), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def _draw_count(rng: np.random.Generator, lo: int, hi: int) -> int:
    # The first draw of `sample_scene`, so `object_counts` can repeat it without placing objects.
    return int(rng.integers(lo, hi + 1))


def object_counts(
    n: int, seed: int, style: Style = "iclevr", num_objects: int | tuple[int, int] | None = None
) -> list[int]:
    """Object count of each scene of ``sample_scenes(n, seed, style, num_objects)``, cheaply.

    The count is the first thing `sample_scene` draws, so this places no objects and renders
    nothing (about 13 µs a scene for a range, nothing for a fixed count): a data set can lay
    out its nested frames without drawing its scenes.

    Raises:
        ValueError: As `sample_scenes` for ``n``, ``seed``, ``style`` and ``num_objects``.
    """
    _check_n_and_seed(n, seed)
    if style not in _DEFAULT_COUNTS:
        raise ValueError(f"unknown style {style!r}; use 'iclevr' or 'clevr'")
    lo, hi = _count_range(num_objects, style)
    _check_feasible(style, hi, 0)
    if lo == hi:
        return [lo] * int(n)
    return [_draw_count(np.random.default_rng([int(seed), i]), lo, hi) for i in range(int(n))]


def sample_scene(
    rng: np.random.Generator,
    style: Style = "iclevr",
    num_objects: int | tuple[int, int] | None = None,
    min_visible_pixels: int = 200,
    max_tries: int = 50,
    max_restarts: int = 100,
) -> Scene:
    """Draw one scene by CLEVR's placement rules (see the module docstring).

    Args:
        rng: Source of all randomness; the result depends only on its state.
        style: ``'iclevr'`` (large rubber, distinct labels; 3 objects by default) or ``'clevr'``
            (uniform size and material; 3-6 objects by default).
        num_objects: An exact count, an inclusive ``(min, max)`` range drawn uniformly, or
            ``None`` for the style's default.
        min_visible_pixels: Pixels each object must show at 320 x 240 (backdrop hidden).
        max_tries: Positions tried per object before all objects are placed again.
        max_restarts: How many times all objects may be placed again (after a failed
            placement or visibility check) before giving up.

    Returns:
        The scene, with ``pixel_coords`` at 320 x 240 on every object and
        ``extra = {"kind": style, "visible_pixels": [...]}`` (pixel counts per object).

    Raises:
        ValueError: A bad argument, a request no placement can satisfy (e.g. more objects than
            fit), or no valid scene within ``max_restarts`` restarts; the message names the fix.
    """
    if style not in _DEFAULT_COUNTS:
        raise ValueError(f"unknown style {style!r}; use 'iclevr' or 'clevr'")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), got {rng!r}")
    for name, value, low in (
        ("min_visible_pixels", min_visible_pixels, 0),
        ("max_tries", max_tries, 1),
        ("max_restarts", max_restarts, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    lo, hi = _count_range(num_objects, style)
    _check_feasible(style, hi, min_visible_pixels)

    count = _draw_count(rng, lo, hi)
    camera = _jitter(rng, CLEVR_DEFAULT_CAMERA, CAMERA_JITTER)
    key = _jitter(rng, CLEVR_DEFAULT_LIGHTS["key"], LIGHT_JITTER)
    back = _jitter(rng, CLEVR_DEFAULT_LIGHTS["back"], LIGHT_JITTER)
    fill = _jitter(rng, CLEVR_DEFAULT_LIGHTS["fill"], LIGHT_JITTER)
    lights = Lights(key=key, fill=fill, back=back)
    directions = list(ground_directions(camera).values())

    for _ in range(max_restarts + 1):
        objects = _place_objects(rng, style, count, directions, max_tries)
        if objects is None:
            continue
        scene = Scene(camera=camera, lights=lights, objects=tuple(objects))
        visible = visible_pixel_counts(scene)
        if all(v >= min_visible_pixels for v in visible):
            return dataclasses.replace(
                scene, objects=_with_pixel_coords(scene), extra={"kind": style, "visible_pixels": visible}
            )
    raise ValueError(
        f"no {style} scene of {count} objects with every object >= {min_visible_pixels} px visible "
        f"after {max_restarts} restarts; ask for fewer objects (num_objects), lower min_visible_pixels, "
        "or raise max_tries / max_restarts"
    )


def sample_scenes(
    n: int,
    seed: int,
    style: Style = "iclevr",
    num_objects: int | tuple[int, int] | None = None,
    min_visible_pixels: int = 200,
    max_tries: int = 50,
    max_restarts: int = 100,
    workers: int = 1,
) -> list[Scene]:
    """Draw ``n`` scenes; scene i comes from ``numpy.random.default_rng([seed, i])``.

    So scene i is the same whatever ``n`` is (the first k of ``sample_scenes(n, seed)`` are
    ``sample_scenes(k, seed)``), and whatever ``workers`` is. ``workers > 1`` draws them in
    that many processes: the visibility check costs several milliseconds a scene, which adds
    up for tens of thousands of scenes. Other arguments as in `sample_scene`.

    Raises:
        ValueError: ``n`` or ``seed`` is negative or not an int, ``workers < 1``, or as
            `sample_scene`.
    """
    _check_n_and_seed(n, seed)
    draw = functools.partial(
        scene_at, seed=int(seed), style=style, num_objects=num_objects, min_visible_pixels=min_visible_pixels,
        max_tries=max_tries, max_restarts=max_restarts,
    )  # fmt: skip
    return parallel_map(draw, range(n), workers)


def scene_at(index: int, seed: int, style: Style = "iclevr", num_objects: int | tuple[int, int] | None = None, **kwargs: int) -> Scene:
    """Scene ``index`` of the stream ``seed``: `sample_scene` with ``numpy.random.default_rng([seed, index])``.

    Keyword arguments are `sample_scene`'s ``min_visible_pixels``, ``max_tries`` and ``max_restarts``.
    """
    return sample_scene(np.random.default_rng([int(seed), int(index)]), style=style, num_objects=num_objects, **kwargs)


def scene_prefix(scene: Scene, k: int, recount: bool = True) -> Scene:
    """The scene with only its first ``k`` objects: frame ``k - 1`` of an i-CLEVR sequence.

    Camera, lamps and ``file`` are kept; ``extra`` is kept with ``step = k - 1`` set (as in
    ``scenes.json``). If ``extra`` has ``visible_pixels``, it is recomputed for the prefix
    (``recount=True``) or truncated to the first ``k`` entries (``recount=False``; removing
    objects only uncovers pixels, so those are lower bounds).

    Raises:
        ValueError: ``k`` is not in ``0..len(scene.objects)``.
    """
    n = len(scene.objects)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise ValueError(f"k must be an int in 0..{n} (the scene has {n} objects), got {k!r}")
    k = int(k)
    extra = dict(scene.extra)
    if k >= 1:
        extra["step"] = k - 1
    prefix = dataclasses.replace(scene, objects=scene.objects[:k], extra=extra)
    if "visible_pixels" in extra:
        extra["visible_pixels"] = (
            visible_pixel_counts(prefix) if recount else list(scene.extra["visible_pixels"])[:k]
        )
    return prefix
