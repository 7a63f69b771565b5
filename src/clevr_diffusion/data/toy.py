"""A small i-CLEVR look-alike drawn in 2-D, for tests and demos without the real data.

A stand-in until the 3-D renderer lands: shaded spheres, oblique cubes and cylinders in the
8 CLEVR colours on a gray gradient floor, each with a soft shadow. The output folder has the
i-CLEVR layout (``train.json``, ``objects.json``, 4:3 RGBA PNGs), so `ClevrDataset`
reads it like the real thing. Like i-CLEVR, a scene is built one object at a time and every
step is saved as a frame: ``CLEVR_train_{scene:06d}_{k}.png`` shows the first k + 1 objects.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..labels import NUM_OBJECTS, OBJECT_NAMES
from ..render.scene import CLEVR_RGB
from ..utils.io import atomic_path, atomic_write_bytes, atomic_write_text
from .dataset import DatasetError

__all__ = ["make_toy_dataset"]

_PARAMS_FILE = "toy_dataset.json"
_FORMAT = 1  # bump when the drawing changes, so a resumed run never mixes two styles
_SUPERSAMPLE = 4  # objects are drawn at 4x and averaged down: anti-aliased edges
# Light from the upper left and in front (x right, y down, z towards the viewer).
_LIGHT = np.array([-0.45, -0.75, 0.5]) / np.linalg.norm([-0.45, -0.75, 0.5])
_HALF = (_LIGHT + np.array([0.0, 0.0, 1.0])) / np.linalg.norm(_LIGHT + np.array([0.0, 0.0, 1.0]))
_AMBIENT, _DIFFUSE, _SPECULAR = 0.45, 0.75, 0.18
_FLOOR_TOP, _FLOOR_BOTTOM = 0.41, 0.58  # gray level at the top and bottom edges, in [0, 1]


@dataclass(frozen=True)
class _Object:
    index: int  # position in OBJECT_NAMES
    x: float  # centre of the footprint, output pixels
    y: float  # where the object meets the floor, output pixels
    size: float  # front width, output pixels

    @property
    def shape(self) -> str:
        return OBJECT_NAMES[self.index].split(" ")[1]

    @property
    def rgb(self) -> np.ndarray:
        return np.array(CLEVR_RGB[OBJECT_NAMES[self.index].split(" ")[0]]) / 255.0

    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) covering the object and its shadow, output pixels."""
        s = self.size
        return (self.x - 0.55 * s, self.y - 1.35 * s, self.x + 0.95 * s, self.y + 0.2 * s)


def _shade(normals: np.ndarray, rgb: np.ndarray, specular: bool) -> np.ndarray:
    """Lambert (+ optional Blinn) shading: (..., 3) unit normals -> (..., 3) colours."""
    diffuse = np.clip(normals @ _LIGHT, 0.0, None)[..., None]
    colour = rgb * (_AMBIENT + _DIFFUSE * diffuse)
    if specular:
        colour = colour + _SPECULAR * np.clip(normals @ _HALF, 0.0, None)[..., None] ** 24
    return colour


class _Canvas:
    """A float RGB image in [0, 1], (H, W, 3), addressed in output-pixel coordinates.

    Objects are drawn on a supersampled grid over their own box only and averaged down
    when composited: anti-aliased edges without supersampling the whole image.
    """

    def __init__(self, background: np.ndarray) -> None:
        self.pixels = background.copy()

    def grid(
        self, x0: float, y0: float, x1: float, y1: float, scale: int = _SUPERSAMPLE
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        """Output pixels covering a box, and ``scale`` x finer sample coordinates over them."""
        height, width = self.pixels.shape[:2]
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), width)
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), height)
        xs = c0 + (np.arange((c1 - c0) * scale) + 0.5) / scale
        ys = r0 + (np.arange((r1 - r0) * scale) + 0.5) / scale
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        return (slice(r0, r1), slice(c0, c1)), xx, yy

    def composite(self, where: tuple[slice, slice], mask: np.ndarray, colour: np.ndarray) -> None:
        """Blend a supersampled layer (mask (h*s, w*s), colour (h*s, w*s, 3)) over the image."""
        view = self.pixels[where]
        h, w = view.shape[:2]
        s = mask.shape[0] // max(h, 1)
        coverage = mask.reshape(h, s, w, s).mean(axis=(1, 3))[..., None]
        premultiplied = (colour * mask[..., None]).reshape(h, s, w, s, 3).mean(axis=(1, 3))
        self.pixels[where] = view * (1.0 - coverage) + premultiplied

    def to_rgba(self) -> np.ndarray:
        """The image as (H, W, 4) uint8 RGBA with alpha 255, like i-CLEVR's PNGs."""
        out = np.full((*self.pixels.shape[:2], 4), 255, dtype=np.uint8)
        out[..., :3] = np.round(np.clip(self.pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
        return out


def _background(width: int, height: int, brightness: float) -> np.ndarray:
    """Gray floor, darker far away (top) and lighter near the camera, slightly vignetted."""
    ys = (np.arange(height) + 0.5) / height
    xs = (np.arange(width) + 0.5) / width
    rows = _FLOOR_TOP + (_FLOOR_BOTTOM - _FLOOR_TOP) * ys**0.8
    cols = 1.0 - 0.06 * (2.0 * xs - 1.0) ** 2
    gray = brightness * rows[:, None] * cols[None, :]
    return np.repeat(gray[..., None], 3, axis=2)


def _draw_shadow(canvas: _Canvas, obj: _Object) -> None:
    s = obj.size
    cx, cy, ax, ay = obj.x + 0.3 * s, obj.y - 0.05 * s, 0.7 * s, 0.2 * s
    # A shadow is smooth, so one sample per output pixel is enough.
    where, xx, yy = canvas.grid(cx - ax, cy - ay, cx + ax, cy + ay, scale=1)
    dist = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    # Soft edge: full strength in the middle, fading to nothing at the rim.
    strength = 0.35 * np.clip((1.0 - dist) / 0.6, 0.0, 1.0)
    canvas.pixels[where] *= (1.0 - strength)[..., None]


def _draw_sphere(canvas: _Canvas, obj: _Object) -> None:
    r = 0.55 * obj.size  # a disc looks smaller than a box of the same width
    cx, cy = obj.x, obj.y - r
    where, xx, yy = canvas.grid(cx - r, cy - r, cx + r, cy + r)
    dx, dy = (xx - cx) / r, (yy - cy) / r
    inside = dx**2 + dy**2 <= 1.0
    dz = np.sqrt(np.clip(1.0 - dx**2 - dy**2, 0.0, None))
    colour = _shade(np.stack([dx, dy, dz], axis=-1), obj.rgb, specular=True)
    canvas.composite(where, inside, colour)


def _draw_cube(canvas: _Canvas, obj: _Object) -> None:
    a = 0.8 * obj.size  # the top face adds depth, so a smaller front keeps sizes similar
    d = 0.35 * a  # oblique depth offset, up and to the right
    x0, x1, y1 = obj.x - a / 2, obj.x + a / 2, obj.y
    y0 = y1 - a
    where, xx, yy = canvas.grid(x0, y0 - d, x1 + d, y1)
    front = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    rise = y0 - yy  # how far above the front face's top edge
    top = (rise >= 0) & (rise <= d) & (xx >= x0 + rise) & (xx <= x1 + rise)
    run = xx - x1  # how far right of the front face
    side = (run >= 0) & (run <= d) & (yy >= y0 - run) & (yy <= y1 - run)
    colour = np.zeros((*xx.shape, 3))
    for mask, normal in ((front, (0, 0, 1)), (top, (0, -1, 0)), (side, (1, 0, 0))):
        colour[mask] = _shade(np.array(normal, dtype=float), obj.rgb, specular=False)
    canvas.composite(where, front | top | side, colour)


def _draw_cylinder(canvas: _Canvas, obj: _Object) -> None:
    r = obj.size / 2
    e = 0.3 * r  # the circular faces seen from above are flat ellipses
    h = 0.9 * obj.size
    yb = obj.y - e
    yt = yb - h
    where, xx, yy = canvas.grid(obj.x - r, yt - e, obj.x + r, obj.y)
    dx = (xx - obj.x) / r
    body = (np.abs(dx) <= 1.0) & (((yy >= yt) & (yy <= yb)) | (dx**2 + ((yy - yb) / e) ** 2 <= 1.0))
    top = dx**2 + ((yy - yt) / e) ** 2 <= 1.0
    normals = np.stack([dx, np.zeros_like(dx), np.sqrt(np.clip(1.0 - dx**2, 0.0, None))], axis=-1)
    colour = _shade(normals, obj.rgb, specular=True)
    colour[top] = _shade(np.array([0.0, -1.0, 0.0]), obj.rgb, specular=False)
    canvas.composite(where, body | top, colour)


_DRAW = {"sphere": _draw_sphere, "cube": _draw_cube, "cylinder": _draw_cylinder}


def _render(objects: list[_Object], background: np.ndarray) -> np.ndarray:
    canvas = _Canvas(background)
    ordered = sorted(objects, key=lambda o: o.y)  # far (high up) first
    for obj in ordered:
        _draw_shadow(canvas, obj)
    for obj in ordered:
        _DRAW[obj.shape](canvas, obj)
    return canvas.to_rgba()


def _overlaps(a: tuple[float, ...], b: tuple[float, ...], pad: float) -> bool:
    apart_x = a[2] + pad <= b[0] or b[2] + pad <= a[0]
    apart_y = a[3] + pad <= b[1] or b[3] + pad <= a[1]
    return not (apart_x or apart_y)


def _place(
    rng: np.random.Generator, indices: list[int], width: int, height: int
) -> list[_Object]:
    """Put the objects on the floor without overlapping bounding boxes (shadows included)."""
    near, far = 0.92 * height, 0.5 * height
    for _ in range(50):
        placed: list[_Object] = []
        for index in indices:
            for _ in range(200):
                y = rng.uniform(far, near)
                # Mild perspective: nearer objects (lower in the image) are a bit larger.
                size = 0.2 * height * (0.8 + 0.4 * (y - far) / (near - far))
                x = rng.uniform(0.6 * size, width - 1.0 * size)
                candidate = _Object(index, x, y, size)
                if not any(_overlaps(candidate.bbox(), o.bbox(), 1.0) for o in placed):
                    placed.append(candidate)
                    break
            else:
                break  # start the scene over: earlier objects block this one
        if len(placed) == len(indices):
            return placed
    raise DatasetError(
        f"could not place {len(indices)} objects without overlap in a {width}x{height} image; "
        "use fewer objects (max_objects) or larger images (width, height)"
    )


def _check_params(root: Path, params: dict[str, object]) -> None:
    """Refuse to mix this run's files with another data set in ``root``."""
    path = root / _PARAMS_FILE
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != params:
            keys = set(previous) | set(params)
            changed = sorted(k for k in keys if previous.get(k) != params.get(k))
            raise DatasetError(
                f"{root} holds a toy data set made with other settings (differing: "
                f"{', '.join(changed)}); write to a new folder or delete this one"
            )
    elif (root / "train.json").exists():
        raise DatasetError(
            f"{root} already holds a data set (train.json) not made by make_toy_dataset; "
            "refusing to overwrite it: choose an empty folder"
        )


def make_toy_dataset(
    root: str | os.PathLike[str],
    num_scenes: int = 200,
    width: int = 128,
    height: int = 96,
    seed: int = 0,
    min_objects: int = 1,
    max_objects: int = 3,
    nested: bool = True,
    progress: bool = True,
) -> Path:
    """Draw a toy i-CLEVR folder: RGBA PNGs, ``train.json`` and ``objects.json``.

    Deterministic for a seed. Resumable: images already present (written atomically, so
    complete) are kept, and ``train.json`` is written last.

    Args:
        root: Output folder (created if missing).
        num_scenes: Number of scenes.
        width: Image width in pixels, at least 16 (i-CLEVR's images are 4:3).
        height: Image height in pixels, at least 16.
        seed: Non-negative seed; scene i draws from ``numpy.random.default_rng([seed, i])``.
        min_objects: Fewest objects per scene.
        max_objects: Most objects per scene (the default vocabulary accepts at most 3).
        nested: Save one frame per added object, as i-CLEVR does; ``False``: one image per
            scene with all its objects.
        progress: Show a progress bar.

    Returns:
        ``root`` as a `Path`.

    Raises:
        DatasetError: On invalid arguments, or if ``root`` holds another data set.
    """
    ints = {
        "num_scenes": num_scenes,
        "seed": seed,
        "min_objects": min_objects,
        "max_objects": max_objects,
        "width": width,
        "height": height,
    }
    for key, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise DatasetError(f"{key} must be an integer, got {value!r}")
    if num_scenes < 1 or seed < 0:
        raise DatasetError(f"need num_scenes >= 1 and seed >= 0, got {num_scenes} and {seed}")
    if not 1 <= min_objects <= max_objects <= NUM_OBJECTS:
        raise DatasetError(
            f"need 1 <= min_objects <= max_objects <= {NUM_OBJECTS}, "
            f"got {min_objects} and {max_objects}"
        )
    if width < 16 or height < 16:
        raise DatasetError(f"width and height must be at least 16 pixels, got {width} x {height}")
    root = Path(root)
    params: dict[str, object] = {
        "generator": "clevr_diffusion.data.toy",
        "format": _FORMAT,
        "num_scenes": num_scenes,
        "image_size": [width, height],
        "seed": seed,
        "min_objects": min_objects,
        "max_objects": max_objects,
        "nested": nested,
    }
    root.mkdir(parents=True, exist_ok=True)
    _check_params(root, params)
    atomic_write_text(root / _PARAMS_FILE, json.dumps(params, indent=2) + "\n")
    bundled = importlib.resources.files("clevr_diffusion") / "resources" / "iclevr"
    objects = (bundled / "objects.json").read_bytes()
    if not (root / "objects.json").exists() or (root / "objects.json").read_bytes() != objects:
        atomic_write_bytes(root / "objects.json", objects)

    labels: dict[str, list[str]] = {}
    scenes = tqdm(range(num_scenes), desc="drawing toy scenes", unit="scene", disable=not progress)
    for scene in scenes:
        rng = np.random.default_rng([seed, scene])
        count = int(rng.integers(min_objects, max_objects + 1))
        indices = [int(i) for i in rng.choice(NUM_OBJECTS, size=count, replace=False)]
        placed = _place(rng, indices, width, height)
        background = None  # built lazily: a fully resumed scene needs no drawing
        brightness = float(rng.uniform(0.96, 1.04))
        frames = range(count) if nested else [count - 1]
        for frame, k in enumerate(frames):
            name = f"CLEVR_train_{scene:06d}_{frame}.png"
            labels[name] = [OBJECT_NAMES[i] for i in indices[: k + 1]]
            path = root / name
            if path.exists():
                continue
            if background is None:
                background = _background(width, height, brightness)
            pixels = _render(placed[: k + 1], background)
            with atomic_path(path) as tmp:
                Image.fromarray(pixels).save(tmp, format="PNG")
    # Written last: its presence means every listed image is complete.
    atomic_write_text(root / "train.json", json.dumps(labels) + "\n")
    return root
