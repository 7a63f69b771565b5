"""CLEVR scene descriptions: dataclasses that read and write the reference scene JSON.

The format is the one of ``shared/reference/blender/scenes.json`` (see its ``FORMAT.md``):
metres, world Z up, yaw in degrees. `Scene.from_dict` / `Scene.to_dict` round-trip an entry
losslessly: fields the format does not define (``kind``, ``sequence``, ``visible_pixels`` ...)
are kept verbatim in ``extra``. `Scene.from_clevr` replays an original CLEVR generator entry.

Every problem with the input raises `SceneError`, a `ValueError` naming the field and fix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..labels import SHAPES
from ..utils.config import load_json_text
from ..utils.io import atomic_write_json

__all__ = [
    "CLEVR_DEFAULT_CAMERA",
    "CLEVR_DEFAULT_LIGHTS",
    "COLOR_ALBEDO",
    "MATERIALS",
    "SHAPES",
    "SIZES",
    "SIZE_SCALE",
    "CLEVR_RGB",
    "Lights",
    "Scene",
    "SceneError",
    "SceneObject",
    "load_scenes",
    "save_scenes",
]

CLEVR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
"""CLEVR's colour table (``properties.json``), 0-255 per channel."""
COLOR_ALBEDO: dict[str, tuple[float, float, float]] = {
    name: (r / 255.0, g / 255.0, b / 255.0) for name, (r, g, b) in CLEVR_RGB.items()
}
"""CLEVR colour name -> **linear** albedo ``rgb/255`` (CLEVR feeds these to the shader undecoded)."""
SIZES: tuple[str, ...] = ("large", "small")
MATERIALS: tuple[str, ...] = ("rubber", "metal")
SIZE_SCALE: dict[str, float] = {"large": 0.7, "small": 0.35}
"""CLEVR's size scalar r (metres); an object's scale s equals r for every shape, cubes included."""

CLEVR_DEFAULT_CAMERA: tuple[float, float, float] = (7.4811, -6.5076, 5.3437)
"""Un-jittered camera position of ``base_scene.blend`` (metres). CLEVR JSON stores no camera."""
CLEVR_DEFAULT_LIGHTS: dict[str, tuple[float, float, float]] = {
    "key": (6.447, -2.905, 4.258),
    "fill": (-4.671, -4.014, 3.011),
    "back": (-1.169, 2.646, 5.816),
}
"""Un-jittered lamp positions of ``base_scene.blend`` (metres). CLEVR JSON stores no lamps."""

_OBJECT_KEYS = ("shape", "color", "size", "material", "3d_coords", "rotation", "pixel_coords")
_SCENE_KEYS = ("camera", "lights", "objects", "file")


class SceneError(ValueError):
    """A scene or object entry is malformed; the message names the field and how to fix it."""


def _require(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(entry, Mapping):
        raise SceneError(f"{where}: expected a JSON object (dict), got {type(entry).__name__}")
    if key not in entry:
        raise SceneError(f"{where}: missing field {key!r}; add it (fields: see FORMAT.md)")
    return entry[key]


def _choice(value: Any, allowed: Sequence[str], what: str, where: str) -> str:
    if value not in allowed:
        raise SceneError(f"{where}: unknown {what} {value!r}; use one of {', '.join(allowed)}")
    return str(value)


def _number(value: Any, what: str, where: str) -> float:
    # bool is an int subclass; a True here is certainly a data error.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SceneError(f"{where}: {what} must be a finite number, got {value!r}")
    return value


def _vector(value: Any, n: int, what: str, where: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != n:
        raise SceneError(f"{where}: {what} must be a list of {n} numbers, got {value!r}")
    return tuple(_number(v, f"{what}[{i}]", where) for i, v in enumerate(value))


@dataclass(frozen=True)
class SceneObject:
    """One CLEVR object.

    Attributes:
        shape: ``'cube'``, ``'sphere'`` or ``'cylinder'``.
        color: One of the 8 CLEVR colour names (keys of `COLOR_ALBEDO`).
        size: ``'large'`` or ``'small'`` (a label; geometry uses ``scale``).
        material: ``'rubber'`` or ``'metal'``.
        position: Ground position (x, y), metres.
        scale: Uniform scale s, metres (``3d_coords[2]``): sphere radius, cube half-side,
            cylinder radius and half-height. The centre sits at height s.
        rotation: Yaw about +Z, degrees (true degrees, not CLEVR's radians-as-degrees).
        pixel_coords: Optional ``(px, py, depth)`` as CLEVR's ``get_camera_coords`` stores it.
        extra: Unknown per-object fields, kept verbatim for lossless round trips.
    """

    shape: str
    color: str
    size: str
    material: str
    position: tuple[float, float]
    scale: float
    rotation: float = 0.0
    pixel_coords: tuple[int, int, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = "SceneObject"
        _choice(self.shape, SHAPES, "shape", where)
        _choice(self.color, tuple(COLOR_ALBEDO), "color", where)
        _choice(self.size, SIZES, "size", where)
        _choice(self.material, MATERIALS, "material", where)
        _vector(self.position, 2, "position", where)
        if _number(self.scale, "scale", where) <= 0:
            raise SceneError(f"{where}: scale must be > 0 metres, got {self.scale!r}")
        _number(self.rotation, "rotation", where)

    @property
    def center(self) -> tuple[float, float, float]:
        """Object centre (x, y, s) in metres: it rests on z = 0."""
        return (self.position[0], self.position[1], self.scale)

    @property
    def albedo(self) -> tuple[float, float, float]:
        """Linear albedo of the object's colour, each channel in [0, 1]."""
        return COLOR_ALBEDO[self.color]

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], where: str = "object") -> SceneObject:
        """Read one object entry of the reference format (``3d_coords``, yaw in degrees)."""
        coords = _vector(_require(entry, "3d_coords", where), 3, "3d_coords", where)
        pixel = entry.get("pixel_coords")
        if pixel is not None:
            px, py, depth = _vector(pixel, 3, "pixel_coords", where)
            if px != int(px) or py != int(py):
                raise SceneError(f"{where}: pixel_coords[0:2] must be whole pixels, got {pixel!r}")
            pixel = (int(px), int(py), depth)
        if coords[2] <= 0:
            raise SceneError(f"{where}: 3d_coords[2] (the scale s) must be > 0 metres, got {coords[2]!r}")
        return cls(
            shape=_choice(_require(entry, "shape", where), SHAPES, "shape", where),
            color=_choice(_require(entry, "color", where), tuple(COLOR_ALBEDO), "color", where),
            size=_choice(_require(entry, "size", where), SIZES, "size", where),
            material=_choice(_require(entry, "material", where), MATERIALS, "material", where),
            position=(coords[0], coords[1]),
            scale=coords[2],
            rotation=_number(_require(entry, "rotation", where), "rotation", where),
            pixel_coords=pixel,
            extra={k: v for k, v in entry.items() if k not in _OBJECT_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        """Write the object in the reference format (inverse of `from_dict`)."""
        out: dict[str, Any] = {
            "shape": self.shape,
            "color": self.color,
            "size": self.size,
            "material": self.material,
            "3d_coords": [self.position[0], self.position[1], self.scale],
            "rotation": self.rotation,
        }
        if self.pixel_coords is not None:
            out["pixel_coords"] = list(self.pixel_coords)
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Lights:
    """Positions (x, y, z) in metres of the three area lamps, each aimed at the origin."""

    key: tuple[float, float, float] = CLEVR_DEFAULT_LIGHTS["key"]
    fill: tuple[float, float, float] = CLEVR_DEFAULT_LIGHTS["fill"]
    back: tuple[float, float, float] = CLEVR_DEFAULT_LIGHTS["back"]

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], where: str = "lights") -> Lights:
        """Read ``{"key": [x, y, z], "fill": [...], "back": [...]}``."""
        extra = sorted(set(entry) - {"key", "fill", "back"}) if isinstance(entry, Mapping) else []
        if extra:
            raise SceneError(f"{where}: unknown lamp(s) {extra}; only key, fill and back exist")
        return cls(
            **{name: _vector(_require(entry, name, where), 3, name, where) for name in ("key", "fill", "back")}
        )

    def to_dict(self) -> dict[str, list[float]]:
        """Write the lamps in the reference format."""
        return {"key": list(self.key), "fill": list(self.fill), "back": list(self.back)}


@dataclass(frozen=True)
class Scene:
    """A CLEVR scene: camera, lamps and objects.

    Attributes:
        camera: Camera position (x, y, z), metres; it always looks at the origin.
        lights: Lamp positions.
        objects: The objects, in file order (object ids in the renderer are these indices).
        file: Optional image path, e.g. ``'png/000.png'``.
        extra: Unknown entry fields (``kind``, ``sequence``, ``visible_pixels`` ...) kept verbatim.
    """

    camera: tuple[float, float, float] = CLEVR_DEFAULT_CAMERA
    lights: Lights = field(default_factory=Lights)
    objects: tuple[SceneObject, ...] = ()
    file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], where: str = "scene") -> Scene:
        """Read one entry of the reference format (``scenes.json``).

        Raises:
            SceneError: A field is missing, has the wrong type, or names an unknown value.
        """
        objects = _require(entry, "objects", where)
        if isinstance(objects, (str, bytes)) or not isinstance(objects, Sequence):
            raise SceneError(f"{where}: objects must be a list of object entries")
        file = entry.get("file")
        if file is not None and not isinstance(file, str):
            raise SceneError(f"{where}: file must be a string path, got {file!r}")
        return cls(
            camera=_vector(_require(entry, "camera", where), 3, "camera", where),
            lights=Lights.from_dict(_require(entry, "lights", where), f"{where}.lights"),
            objects=tuple(SceneObject.from_dict(o, f"{where}.objects[{i}]") for i, o in enumerate(objects)),
            file=file,
            extra={k: v for k, v in entry.items() if k not in _SCENE_KEYS},
        )

    @classmethod
    def from_clevr(
        cls,
        entry: Mapping[str, Any],
        camera: Sequence[float] = CLEVR_DEFAULT_CAMERA,
        lights: Lights | None = None,
        where: str = "clevr scene",
    ) -> Scene:
        """Read an entry of an original CLEVR generator scene file (``CLEVR_*_scenes.json``).

        CLEVR stores ``rotation`` as "degrees" but the generator applied the number as radians,
        so the true yaw is ``degrees(value) mod 360``. CLEVR does not store its camera and lamp
        jitter, so the un-jittered ``base_scene.blend`` positions are used unless given (the
        real image's view may differ by up to 0.5 m of camera and 1 m of lamp movement).
        Other fields (``image_index``, ``relationships`` ...) are kept in ``extra``.
        """
        objects = _require(entry, "objects", where)
        if isinstance(objects, (str, bytes)) or not isinstance(objects, Sequence):
            raise SceneError(f"{where}: objects must be a list of object entries")
        converted = []
        for i, obj in enumerate(objects):
            here = f"{where}.objects[{i}]"
            radians = _number(_require(obj, "rotation", here), "rotation", here)
            converted.append(SceneObject.from_dict({**obj, "rotation": math.degrees(radians) % 360.0}, here))
        return cls(
            camera=_vector(camera, 3, "camera", where),
            lights=lights if lights is not None else Lights(),
            objects=tuple(converted),
            file=None,
            extra={k: v for k, v in entry.items() if k != "objects"},
        )

    @property
    def label_names(self) -> list[str]:
        """The scene's i-CLEVR labels, ``"color shape"``, each once in object order (a
        multi-hot label cannot count objects)."""
        return list(dict.fromkeys(f"{o.color} {o.shape}" for o in self.objects))

    def to_dict(self) -> dict[str, Any]:
        """Write the scene in the reference format (inverse of `from_dict`)."""
        out: dict[str, Any] = {
            "camera": list(self.camera),
            "lights": self.lights.to_dict(),
            "objects": [o.to_dict() for o in self.objects],
        }
        out.update(self.extra)
        if self.file is not None:
            out["file"] = self.file
        return out


def load_scenes(path: str | os.PathLike[str]) -> list[Scene]:
    """Read a JSON list of reference-format entries (e.g. ``scenes.json``).

    Raises:
        FileNotFoundError: No file at ``path``.
        SceneError: The file is not valid JSON (line and column named), not a JSON list, or an
            entry is malformed (index named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no scene file at {path}; pass a JSON list of scenes written by save_scenes")
    data = load_json_text(path, "fix the file or write it again with save_scenes", SceneError)
    if not isinstance(data, list):
        raise SceneError(f"{path}: expected a JSON list of scenes, got {type(data).__name__}")
    return [Scene.from_dict(entry, f"{path}[{i}]") for i, entry in enumerate(data)]


def save_scenes(scenes: Iterable[Scene], path: str | os.PathLike[str]) -> Path:
    """Write scenes as a JSON list atomically (a reader never sees half a file); return the path."""
    return atomic_write_json(path, [s.to_dict() for s in scenes])
