"""Vectorised ray intersection with CLEVR's primitives and its curved backdrop.

Every ``intersect_*`` function takes rays ``origins, directions`` of shape ``(..., 3)`` (float32,
metres; directions need not be unit, ``t`` is in units of their length) and returns
``(t, normal)``: ``t`` ``(...)`` the nearest hit parameter greater than ``t_min`` (``inf`` for a
miss) and ``normal`` ``(..., 3)`` the unit outward surface normal there (zeros for a miss).

Geometry is exact for idealised shapes; the real CLEVR meshes differ slightly:
the cube is bevelled (flat faces end at 0.768 of the half-side), the cylinder rim is rounded
(about 0.08-0.1 r), and the sphere is a 15,360-face mesh of radius 0.9992 s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .camera import REFERENCE_HEIGHT, REFERENCE_WIDTH, Camera, Frame
from .scene import Scene, SceneObject

__all__ = [
    "BACKDROP_DIRECTION",
    "BACKDROP_PROFILE",
    "BACKDROP_V_RANGE",
    "BACKDROP_ID",
    "MISS_ID",
    "backdrop_height",
    "intersect_backdrop",
    "intersect_box",
    "intersect_cylinder",
    "intersect_object",
    "intersect_scene",
    "intersect_sphere",
    "object_id_map",
]

BACKDROP_ID = -1
"""``object_id`` of a ray that first hits the backdrop (floor and rising wall)."""
MISS_ID = -2
"""``object_id`` of a ray that hits nothing (black sky)."""

BACKDROP_DIRECTION: tuple[float, float] = (-0.90322, 0.42918)
"""Unit ground direction (x, y) of the backdrop profile: u = -0.90322 x + 0.42918 y (away from the camera)."""
BACKDROP_PROFILE: tuple[tuple[float, float], ...] = (
    (-9.47, 0.0), (-6.0, 0.0001), (-3.0, 0.0011), (0.0, 0.0055), (2.0, 0.0138), (4.0, 0.0316),
    (6.0, 0.0681), (7.0, 0.0987), (8.0, 0.1428), (9.0, 0.2064), (10.0, 0.2996), (11.0, 0.4391),
    (12.0, 0.6539), (12.5, 0.805), (13.0, 1.001), (13.5, 1.256), (14.0, 1.597), (14.5, 2.066),
    (15.0, 2.733), (15.5, 3.723), (16.0, 5.250), (16.5, 7.664), (17.0, 11.33), (17.5, 16.27),
    (18.084, 23.14),
)  # fmt: skip
"""Backdrop height profile ``(u, z)`` in metres (FORMAT.md), interpolated linearly; no surface outside its u range."""
BACKDROP_V_RANGE: tuple[float, float] = (-29.9, 26.6)
"""Extent of the backdrop across the profile, v = 0.42918 x + 0.90322 y, metres.

FORMAT.md gives the extent but not the sign of v; this sign is an assumption. It does not
matter inside the camera's view, whose edges meet the backdrop at |v| < 15.
"""


def _vec(value: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float32, device=like.device)


def _check_rays(origins: torch.Tensor, directions: torch.Tensor) -> None:
    if origins.shape[-1:] != (3,) or directions.shape[-1:] != (3,):
        raise ValueError(
            f"origins and directions must have shape (..., 3), got {tuple(origins.shape)} and {tuple(directions.shape)}"
        )


def _nearest(
    t: torch.Tensor, valid: torch.Tensor, normals: torch.Tensor, t_min: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the nearest valid candidate: ``t``/``valid`` ``(..., K)``, normals ``(..., K, 3)``."""
    t = torch.where(valid & (t > t_min), t, torch.full_like(t, math.inf))
    best, index = t.min(dim=-1)
    normal = torch.gather(normals.expand(*t.shape, 3), -2, index[..., None, None].expand(*index.shape, 1, 3))[..., 0, :]
    normal = torch.where(torch.isinf(best)[..., None], torch.zeros_like(normal), normal)
    return best, normal


def _safe(d: torch.Tensor) -> torch.Tensor:
    # Dividing by an exact zero gives inf and then 0 * inf = nan; a tiny signed value gives a
    # huge but finite parameter that the range checks reject.
    return torch.where(d.abs() < 1e-20, torch.where(d < 0, -1e-20, 1e-20), d)


def intersect_sphere(
    origins: torch.Tensor,
    directions: torch.Tensor,
    center: Sequence[float] | torch.Tensor,
    radius: float,
    t_min: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays against a sphere of ``radius`` metres at ``center`` (3,); see the module docstring."""
    _check_rays(origins, directions)
    c = _vec(center, origins)
    length = directions.norm(dim=-1, keepdim=True)
    unit = directions / length
    oc = origins - c
    b = (oc * unit).sum(-1)
    # r^2 - |perpendicular offset|^2 avoids the cancellation of b^2 - (|oc|^2 - r^2) at range.
    perp = oc - b[..., None] * unit
    disc = radius * radius - (perp * perp).sum(-1)
    root = disc.clamp(min=0).sqrt()
    t = torch.stack([-b - root, -b + root], dim=-1) / length  # (..., 2)
    valid = (disc >= 0)[..., None].expand_as(t)
    points = origins[..., None, :] + t[..., None] * directions[..., None, :]
    return _nearest(t, valid, (points - c) / radius, t_min)


def intersect_box(
    origins: torch.Tensor,
    directions: torch.Tensor,
    center: Sequence[float] | torch.Tensor,
    half_size: float,
    yaw_degrees: float = 0.0,
    t_min: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays against a sharp-edged cube of half-side ``half_size`` at ``center``, rotated by yaw about +Z.

    The CLEVR cube mesh is bevelled; this sharp box is slightly larger at edges and corners.
    """
    _check_rays(origins, directions)
    c = _vec(center, origins)
    cos, sin = math.cos(math.radians(yaw_degrees)), math.sin(math.radians(yaw_degrees))
    # Object-to-world rotation Rz(yaw); rays go to the box frame with its transpose.
    rot = _vec([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]], origins)
    o = (origins - c) @ rot  # row-vector form of rot.T @ (origins - c)
    d = directions @ rot
    h = half_size
    faces = torch.tensor([-h, h], dtype=torch.float32, device=origins.device)
    t = (faces[:, None] - o[..., None, :]) / _safe(d)[..., None, :]  # (..., 2 sides, 3 axes)
    hit = o[..., None, None, :] + t[..., None] * d[..., None, None, :]  # (..., 2, 3 face, 3 coord)
    inside = hit.abs() <= h * (1 + 1e-6)
    axis_eye = torch.eye(3, dtype=torch.bool, device=origins.device)
    # On each face only the two other coordinates need to lie within the square.
    valid = (inside | axis_eye).all(dim=-1)  # (..., 2, 3)
    normals = faces.sign()[:, None, None] * torch.eye(3, device=origins.device)  # (2, 3, 3) local
    normals = normals @ rot.T  # back to world
    return _nearest(t.flatten(-2), valid.flatten(-2), normals.reshape(6, 3), t_min)


def intersect_cylinder(
    origins: torch.Tensor,
    directions: torch.Tensor,
    center: Sequence[float] | torch.Tensor,
    radius: float,
    half_height: float,
    t_min: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays against an upright (Z-axis) capped cylinder at ``center``, spanning z = center ± half_height.

    The CLEVR cylinder mesh has a rounded rim; this one has sharp edges.
    """
    _check_rays(origins, directions)
    c = _vec(center, origins)
    o = origins - c
    d = directions
    # Side: solve in the ground plane, in units of the ray's horizontal length.
    flat = d[..., :2].norm(dim=-1)
    flat_safe = flat.clamp(min=1e-20)
    unit = d[..., :2] / flat_safe[..., None]
    b = (o[..., :2] * unit).sum(-1)
    perp = o[..., :2] - b[..., None] * unit
    disc = radius * radius - (perp * perp).sum(-1)
    root = disc.clamp(min=0).sqrt()
    t_side = torch.stack([-b - root, -b + root], dim=-1) / flat_safe[..., None]  # (..., 2)
    z_side = o[..., None, 2] + t_side * d[..., None, 2]
    valid_side = (disc >= 0)[..., None] & (flat > 1e-12)[..., None] & (z_side.abs() <= half_height * (1 + 1e-6))
    # Caps: planes z = +-half_height, hit inside the disc.
    caps = torch.tensor([-half_height, half_height], dtype=torch.float32, device=origins.device)
    t_cap = (caps - o[..., None, 2]) / _safe(d[..., 2])[..., None]  # (..., 2)
    xy_cap = o[..., None, :2] + t_cap[..., None] * d[..., None, :2]
    valid_cap = (xy_cap * xy_cap).sum(-1) <= radius * radius * (1 + 1e-6)
    side_points = o[..., None, :] + t_side[..., None] * d[..., None, :]
    side_normals = torch.cat([side_points[..., :2] / radius, torch.zeros_like(side_points[..., 2:])], dim=-1)
    cap_normals = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]], device=origins.device).expand(*t_cap.shape, 3)
    return _nearest(
        torch.cat([t_side, t_cap], dim=-1),
        torch.cat([valid_side, valid_cap], dim=-1),
        torch.cat([side_normals, cap_normals], dim=-2),
        t_min,
    )


def _profile(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    table = torch.tensor(BACKDROP_PROFILE, dtype=torch.float32, device=device)
    return table[:, 0].contiguous(), table[:, 1].contiguous()


def backdrop_height(u: torch.Tensor) -> torch.Tensor:
    """Backdrop height z(u), metres, piecewise linear through `BACKDROP_PROFILE`.

    Args:
        u: ``(...)`` float32 profile coordinate, metres (``u = -0.90322 x + 0.42918 y``).

    Returns:
        ``(...)`` float32 heights; ``nan`` outside the profile's u range (no surface there).
    """
    us, zs = _profile(u.device)
    k = (torch.searchsorted(us, u.contiguous(), right=True) - 1).clamp(0, len(us) - 2)
    w = (u - us[k]) / (us[k + 1] - us[k])
    z = zs[k] + w * (zs[k + 1] - zs[k])
    return torch.where((u >= us[0]) & (u <= us[-1]), z, torch.full_like(z, math.nan))


def intersect_backdrop(
    origins: torch.Tensor, directions: torch.Tensor, t_min: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays against the curved backdrop (floor sweeping up into a wall), exactly.

    The surface is the piecewise-linear profile `BACKDROP_PROFILE` extruded across v within
    `BACKDROP_V_RANGE`: each of its 24 planar strips is intersected, vectorised over strips, and
    the nearest valid hit kept. Normals point up (towards the camera side).
    """
    _check_rays(origins, directions)
    us, zs = _profile(origins.device)
    a, b = BACKDROP_DIRECTION
    slope = (zs[1:] - zs[:-1]) / (us[1:] - us[:-1])  # (K,)
    u0 = a * origins[..., 0] + b * origins[..., 1]
    du = a * directions[..., 0] + b * directions[..., 1]
    v0 = b * origins[..., 0] - a * origins[..., 1]
    dv = b * directions[..., 0] - a * directions[..., 1]
    # Strip k: z = zs[k] + slope[k] (u - us[k]); along the ray z0 + t dz = that at u0 + t du.
    den = directions[..., None, 2] - slope * du[..., None]  # (..., K)
    num = zs[:-1] + slope * (u0[..., None] - us[:-1]) - origins[..., None, 2]
    t = num / _safe(den)
    u = u0[..., None] + t * du[..., None]
    v = v0[..., None] + t * dv[..., None]
    tol = 1e-5
    valid = (den.abs() > 1e-12) & (u >= us[:-1] - tol) & (u <= us[1:] + tol)
    valid &= (v >= BACKDROP_V_RANGE[0]) & (v <= BACKDROP_V_RANGE[1])
    normals = torch.stack([-slope * a, -slope * b, torch.ones_like(slope)], dim=-1)
    normals = normals / normals.norm(dim=-1, keepdim=True)  # (K, 3)
    return _nearest(t, valid, normals, t_min)


def intersect_object(
    obj: SceneObject, origins: torch.Tensor, directions: torch.Tensor, t_min: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays against one CLEVR object; sizes from its scale s (sphere radius s, cube half-side s,
    cylinder radius s and height 2s), resting on z = 0."""
    if obj.shape == "sphere":
        return intersect_sphere(origins, directions, obj.center, obj.scale, t_min)
    if obj.shape == "cube":
        return intersect_box(origins, directions, obj.center, obj.scale, obj.rotation, t_min)
    if obj.shape == "cylinder":
        return intersect_cylinder(origins, directions, obj.center, obj.scale, obj.scale, t_min)
    raise ValueError(f"unknown shape {obj.shape!r}; use cube, sphere or cylinder")


def intersect_scene(
    scene: Scene,
    origins: torch.Tensor,
    directions: torch.Tensor,
    backdrop: bool = True,
    t_min: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First surface hit of each ray in a scene.

    Args:
        scene: The scene; object i of ``scene.objects`` gets id i.
        origins: ``(..., 3)`` float32 ray origins, metres.
        directions: ``(..., 3)`` float32 ray directions.
        backdrop: Include the backdrop; ``False`` intersects objects only (like CLEVR's
            visibility render, which hides the ground).
        t_min: Hits at ``t <= t_min`` are ignored.

    Returns:
        ``(t, normal, object_id)``: ``(...)`` float32 (``inf`` on a miss), ``(..., 3)`` float32
        unit normals (zeros on a miss), ``(...)`` int64 object index, `BACKDROP_ID` (-1) for the
        backdrop or `MISS_ID` (-2) for nothing.
    """
    _check_rays(origins, directions)
    shape = torch.broadcast_shapes(origins.shape, directions.shape)[:-1]
    best_t = torch.full(shape, math.inf, dtype=torch.float32, device=origins.device)
    best_n = torch.zeros((*shape, 3), dtype=torch.float32, device=origins.device)
    best_id = torch.full(shape, MISS_ID, dtype=torch.int64, device=origins.device)
    candidates: list[tuple[int, tuple[torch.Tensor, torch.Tensor]]] = []
    if backdrop:
        candidates.append((BACKDROP_ID, intersect_backdrop(origins, directions, t_min)))
    for index, obj in enumerate(scene.objects):
        candidates.append((index, intersect_object(obj, origins, directions, t_min)))
    for index, (t, normal) in candidates:
        closer = t < best_t
        best_t = torch.where(closer, t, best_t)
        best_n = torch.where(closer[..., None], normal, best_n)
        best_id = torch.where(closer, torch.full_like(best_id, index), best_id)
    return best_t, best_n, best_id


def object_id_map(
    scene: Scene,
    width: int = REFERENCE_WIDTH,
    height: int = REFERENCE_HEIGHT,
    frame: Frame = "native",
    backdrop: bool = True,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Which surface is first hit at each pixel centre.

    Args:
        scene: The scene.
        width: Image width W in pixels.
        height: Image height H in pixels.
        frame: ``'native'`` or ``'square'`` (see `clevr_diffusion.render.camera.intrinsics`).
        backdrop: Include the backdrop (id -1); ``False`` leaves those pixels as misses (-2).
        device: Device to compute on and return the map on.

    Returns:
        ``(H, W)`` int64: object index, -1 for the backdrop, -2 where nothing is hit.
    """
    origins, directions = Camera.from_scene(scene, device=device).rays(width, height, frame)
    _, _, ids = intersect_scene(scene, origins[..., 0, :], directions[..., 0, :], backdrop=backdrop)
    return ids
