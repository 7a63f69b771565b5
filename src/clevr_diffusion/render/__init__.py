"""Built-in CLEVR scene renderer: scene JSON, the CLEVR camera, ray-primitive geometry and shading.

Modules: `scene` (dataclasses and JSON I/O), `camera` (projection and primary rays),
`geometry` (vectorised ray intersection with rounded edges, and object-id maps),
`scene_batch` (a batch of scenes as tensors), `randomization` (domain randomisation),
`shading` (lamps, sun, materials, one diffuse bounce), `renderer` (`render`: scenes to sRGB
images and object-id maps), `sampling` (`sample_scene`, `sample_scenes`, `scene_prefix`:
random scenes by CLEVR's rules), `dataset_writer` (`make_dataset`: i-CLEVR-format folders)
and `fidelity` (how close renders are to reference images: MAE, SSIM, sharpness, object and
floor errors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import install_lazy_exports

_EXPORTS: dict[str, str] = {
    "Camera": ".camera",
    "Frame": ".camera",
    "frame_for": ".camera",
    "intrinsics": ".camera",
    "BACKDROP_ID": ".geometry",
    "MISS_ID": ".geometry",
    "backdrop_height": ".geometry",
    "intersect_backdrop": ".geometry",
    "intersect_box": ".geometry",
    "intersect_cylinder": ".geometry",
    "intersect_object": ".geometry",
    "intersect_scene": ".geometry",
    "intersect_sphere": ".geometry",
    "object_id_map": ".geometry",
    "DomainRandomization": ".randomization",
    "RenderOutput": ".renderer",
    "render": ".renderer",
    "to_uint8": ".renderer",
    "ground_directions": ".sampling",
    "sample_scene": ".sampling",
    "sample_scenes": ".sampling",
    "scene_prefix": ".sampling",
    "visible_pixel_counts": ".sampling",
    "COLOR_ALBEDO": ".scene",
    "Lights": ".scene",
    "Scene": ".scene",
    "SceneError": ".scene",
    "SceneObject": ".scene",
    "load_scenes": ".scene",
    "save_scenes": ".scene",
    "linear_to_srgb": ".shading",
    "make_dataset": ".dataset_writer",
    "FidelityScores": ".fidelity",
    "fidelity_scores": ".fidelity",
}
"""Where each public name lives; its module is imported on first access (PEP 562)."""

if TYPE_CHECKING:  # what type checkers and the API docs see
    from .camera import Camera, Frame, frame_for, intrinsics
    from .dataset_writer import make_dataset
    from .fidelity import FidelityScores, fidelity_scores
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
else:  # at run time a name's module is imported on its first use
    install_lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BACKDROP_ID",
    "COLOR_ALBEDO",
    "MISS_ID",
    "Camera",
    "DomainRandomization",
    "FidelityScores",
    "Frame",
    "Lights",
    "RenderOutput",
    "Scene",
    "SceneError",
    "SceneObject",
    "backdrop_height",
    "frame_for",
    "ground_directions",
    "intersect_backdrop",
    "intersect_box",
    "intersect_cylinder",
    "intersect_object",
    "intersect_scene",
    "intersect_sphere",
    "intrinsics",
    "linear_to_srgb",
    "fidelity_scores",
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
