"""Built-in CLEVR scene renderer: scene JSON, the CLEVR camera, ray-primitive geometry and shading.

Modules: `scene` (dataclasses and JSON I/O), `camera` (projection and primary rays),
`geometry` (vectorised ray intersection and object-id maps), `scene_batch` (a batch of scenes
as tensors), `randomization` (domain randomisation), `shading` (lamps, sun, materials, one
diffuse bounce), `renderer` (`render`: scenes to sRGB images and object-id maps),
`sampling` (`sample_scene`, `sample_scenes`, `scene_prefix`: random scenes by CLEVR's rules)
and `dataset_writer` (`make_dataset`: i-CLEVR-format folders).
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
from .randomization import DomainRandomization
from .renderer import RenderOutput, render, to_uint8
from .sampling import ground_directions, sample_scene, sample_scenes, scene_prefix, visible_pixel_counts
from .scene import (
    COLOR_ALBEDO,
    Lights,
    Scene,
    SceneError,
    SceneObject,
    load_scenes,
    save_scenes,
)
from .shading import linear_to_srgb
from .dataset_writer import make_dataset

__all__ = [
    "BACKDROP_ID",
    "COLOR_ALBEDO",
    "MISS_ID",
    "Camera",
    "DomainRandomization",
    "Frame",
    "Lights",
    "RenderOutput",
    "Scene",
    "SceneError",
    "SceneObject",
    "backdrop_height",
    "ground_directions",
    "intersect_backdrop",
    "intersect_box",
    "intersect_cylinder",
    "intersect_object",
    "intersect_scene",
    "intersect_sphere",
    "intrinsics",
    "linear_to_srgb",
    "load_scenes",
    "make_dataset",
    "object_id_map",
    "render",
    "sample_scene",
    "sample_scenes",
    "save_scenes",
    "scene_prefix",
    "to_uint8",
    "visible_pixel_counts",
]
