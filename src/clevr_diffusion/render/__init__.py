"""Built-in CLEVR scene renderer: scene JSON, the CLEVR camera and ray-primitive geometry.

Modules: `scene` (dataclasses and JSON I/O), `camera` (projection and primary rays),
`geometry` (vectorised ray intersection and object-id maps). Shading is not here yet.
"""

from __future__ import annotations

from .camera import Camera, Frame, intrinsics
from .geometry import (
    BACKDROP_ID,
    MISS_ID,
    backdrop_height,
    intersect_backdrop,
    intersect_box,
    intersect_cylinder,
    intersect_object,
    intersect_scene,
    intersect_sphere,
    object_id_map,
)
from .scene import (
    COLOR_ALBEDO,
    Lights,
    Scene,
    SceneError,
    SceneObject,
    load_scenes,
    save_scenes,
)

__all__ = [
    "BACKDROP_ID",
    "COLOR_ALBEDO",
    "MISS_ID",
    "Camera",
    "Frame",
    "Lights",
    "Scene",
    "SceneError",
    "SceneObject",
    "backdrop_height",
    "intersect_backdrop",
    "intersect_box",
    "intersect_cylinder",
    "intersect_object",
    "intersect_scene",
    "intersect_sphere",
    "intrinsics",
    "load_scenes",
    "object_id_map",
    "save_scenes",
]
