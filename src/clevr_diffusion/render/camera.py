"""The CLEVR pinhole camera: projection of world points and generation of primary rays.

Model (``shared/reference/blender/FORMAT.md``): the camera sits at a scene's camera position,
looks at the origin, has world +Z as up (no roll), and a focal length of 350 px at 320 x 240
(horizontal field of view 49.134 deg, vertical 37.85 deg). Pixel (i, j) has its centre at
(i + 0.5, j + 0.5) in continuous image coordinates, with column 0 at the left and row 0 at
the top; CLEVR's ``pixel_coords`` are ``round`` of the same continuous coordinates.

Frames:
    ``'native'``: the camera's own frame at any size, square pixels, horizontal field of view
        kept: ``fx = fy = width * 350 / 320``. At 4:3 sizes this is exactly Blender's frame; at
        other aspects the vertical field of view follows from the height.
    ``'square'``: the 4:3 field of view (49.134 x 37.85 deg) squashed onto the given grid, as
        i-CLEVR pipelines squash 320 x 240 images to 64 x 64: ``fx = width * 350 / 320`` and
        ``fy = height * 350 / 240`` (64 x 64: fx = 70, fy = 93.33).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from .scene import Scene

__all__ = ["REFERENCE_FOCAL_PX", "REFERENCE_HEIGHT", "REFERENCE_WIDTH", "Camera", "Frame", "frame_for", "intrinsics"]

REFERENCE_WIDTH = 320
"""Width in pixels of the reference (Blender) frame."""
REFERENCE_HEIGHT = 240
"""Height in pixels of the reference (Blender) frame."""
REFERENCE_FOCAL_PX = 350.0
"""Focal length in pixels at 320 x 240: 35 mm lens on a 32 mm sensor fitted to the width."""

Frame = Literal["native", "square"]


def frame_for(width: int, height: int) -> Frame:
    """The frame an image of this size is drawn in: ``'native'`` for a 4:3 size (the camera's
    own frame), ``'square'`` otherwise (the 4:3 view squashed, as i-CLEVR's 64 x 64 images are)."""
    return "native" if width * 3 == height * 4 else "square"


def intrinsics(width: int, height: int, frame: Frame = "native") -> tuple[float, float, float, float]:
    """Pinhole intrinsics for an image grid.

    Args:
        width: Image width in pixels (> 0).
        height: Image height in pixels (> 0).
        frame: ``'native'`` (square pixels, horizontal FOV kept) or ``'square'`` (the 4:3 field
            of view squashed onto the grid). See the module docstring.

    Returns:
        ``(fx, fy, cx, cy)`` in pixels; the principal point is the image centre.

    Raises:
        ValueError: Non-positive size or unknown frame.
    """
    if isinstance(width, bool) or isinstance(height, bool) or int(width) != width or int(height) != height:
        raise ValueError(f"width and height must be whole pixel counts, got {width!r} x {height!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width} x {height}")
    fx = width * REFERENCE_FOCAL_PX / REFERENCE_WIDTH
    if frame == "native":
        fy = fx
    elif frame == "square":
        fy = height * REFERENCE_FOCAL_PX / REFERENCE_HEIGHT
    else:
        raise ValueError(f"unknown frame {frame!r}; use 'native' or 'square'")
    return fx, fy, width / 2.0, height / 2.0


@dataclass(frozen=True)
class Camera:
    """A CLEVR camera at ``position`` looking at the origin with world +Z up.

    Attributes:
        position: Camera position (x, y, z) in metres; must not be the origin or on the Z axis
            (the view direction would be parallel to "up" and the roll undefined).
        device: Device for every tensor the camera returns.
    """

    position: tuple[float, float, float]
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        if len(self.position) != 3:
            raise ValueError(f"camera position must be (x, y, z), got {self.position!r}")
        x, y, _ = (float(v) for v in self.position)
        # On the Z axis (or at the origin) the look-at frame with +Z up is undefined.
        if x * x + y * y < 1e-12:
            raise ValueError(f"camera position {self.position!r} is on the Z axis; move it off (x, y) = (0, 0)")

    @classmethod
    def from_scene(cls, scene: Scene, device: torch.device | str = "cpu") -> Camera:
        """The camera of ``scene``."""
        return cls(position=tuple(float(v) for v in scene.camera), device=device)  # type: ignore[arg-type]

    def basis(self) -> torch.Tensor:
        """Camera axes in world coordinates.

        Returns:
            ``(3, 3)`` float32: rows are right, up (image up) and forward (towards the origin),
            orthonormal.
        """
        # Float64 for the frame itself: it is tiny and any error here shifts every pixel.
        pos = torch.tensor(self.position, dtype=torch.float64)
        forward = -pos / pos.norm()
        world_up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        right = torch.linalg.cross(forward, world_up)
        right = right / right.norm()
        up = torch.linalg.cross(right, forward)
        return torch.stack([right, up, forward]).to(device=self.device, dtype=torch.float32)

    def project(
        self,
        points: torch.Tensor | Sequence[Sequence[float]],
        width: int = REFERENCE_WIDTH,
        height: int = REFERENCE_HEIGHT,
        frame: Frame = "native",
    ) -> torch.Tensor:
        """Project world points to continuous image coordinates, like CLEVR's ``get_camera_coords``.

        Args:
            points: ``(..., 3)`` world points in metres.
            width: Image width in pixels.
            height: Image height in pixels.
            frame: See `intrinsics`.

        Returns:
            ``(..., 3)`` float32 ``(px, py, depth)``: px from the left edge and py from the top
            edge in pixels (not rounded; a pixel centre is at i + 0.5), depth in metres along the
            view axis (negative behind the camera). ``round(px), round(py)`` is CLEVR's
            ``pixel_coords``.
        """
        pts = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        if pts.shape[-1:] != (3,):
            raise ValueError(f"points must have shape (..., 3), got {tuple(pts.shape)}")
        fx, fy, cx, cy = intrinsics(width, height, frame)
        pos = torch.tensor(self.position, dtype=torch.float32, device=self.device)
        local = (pts - pos) @ self.basis().T  # (..., 3): right, up, forward components
        depth = local[..., 2]
        px = cx + fx * local[..., 0] / depth
        py = cy - fy * local[..., 1] / depth  # image rows grow downwards
        return torch.stack([px, py, depth], dim=-1)

    def rays(
        self,
        width: int,
        height: int,
        frame: Frame = "native",
        supersample: int = 1,
        jitter: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Primary rays through pixel sample positions.

        Each pixel gets ``S = supersample**2`` samples on a k x k sub-pixel grid (cell centres
        ``(a + 0.5) / k``; with ``supersample=1`` that is the pixel centre). With ``jitter``, each
        sample is instead uniform inside its sub-cell (stratified), drawn on the CPU from the
        generator so results are the same on every device.

        Args:
            width: Image width W in pixels.
            height: Image height H in pixels.
            frame: See `intrinsics`.
            supersample: k >= 1, samples per pixel side.
            jitter: Optional generator for stratified random sub-pixel positions.

        Returns:
            ``(origins, directions)``, each ``(H, W, S, 3)`` float32 in world metres; directions
            are unit vectors. Sample index ``s = b * k + a`` (sub-row b, sub-column a), so
            ``image.mean(dim=2)`` averages the samples back to pixels.
        """
        if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
            raise ValueError(f"supersample must be an int >= 1, got {supersample!r}")
        fx, fy, cx, cy = intrinsics(width, height, frame)
        k = supersample
        cell = (torch.arange(k, dtype=torch.float32) + 0.5) / k  # (k,)
        sub_y, sub_x = torch.meshgrid(cell, cell, indexing="ij")  # (k, k), sub-row major
        sub_x, sub_y = sub_x.reshape(-1), sub_y.reshape(-1)  # (S,)
        cols = torch.arange(width, dtype=torch.float32)[None, :, None] + sub_x  # (1, W, S)
        rows = torch.arange(height, dtype=torch.float32)[:, None, None] + sub_y  # (H, 1, S)
        cols, rows = torch.broadcast_tensors(cols, rows)  # (H, W, S)
        if jitter is not None:
            shape = (2, height, width, k * k)
            offset = (torch.rand(shape, generator=jitter, dtype=torch.float32) - 0.5) / k
            cols, rows = cols + offset[0], rows + offset[1]
        cols, rows = cols.to(self.device), rows.to(self.device)
        right, up, forward = self.basis()
        local_x = ((cols - cx) / fx)[..., None]
        local_y = (-(rows - cy) / fy)[..., None]
        directions = local_x * right + local_y * up + forward
        directions = directions / directions.norm(dim=-1, keepdim=True)
        origin = torch.tensor(self.position, dtype=torch.float32, device=self.device)
        return origin.expand_as(directions), directions
