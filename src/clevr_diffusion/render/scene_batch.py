"""A batch of scenes as stacked tensors: what the shading code reads for every ray.

Rays of all scenes of a render call travel in one flat batch, each with its scene index
``sid``; per-scene quantities (objects, lamps, sun, materials, camera) are stored here as
``(B, ...)`` tensors and gathered per ray, so the number of tensor operations does not grow
with the number of scenes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .camera import Camera
from .geometry import primitive_table
from .randomization import DomainRandomization, SceneJitter
from .scene import Scene

__all__ = [
    "FLOOR_ALBEDO",
    "LAMPS",
    "SUN_ANGULAR_DIAMETER",
    "SUN_DIRECTION",
    "SUN_IRRADIANCE",
    "SceneBatch",
    "per_ray",
    "sun_solid_angle",
    "tangents",
    "upload",
]

FLOOR_ALBEDO = 0.8
"""Linear albedo of the backdrop (Cycles' default surface)."""
SUN_IRRADIANCE = 0.45
"""Sun strength: irradiance on a surface facing it."""
SUN_ANGULAR_DIAMETER = 0.19934
"""Sun disc angular diameter, radians."""
SUN_DIRECTION: tuple[float, float, float] = (0.41450, -0.19458, 0.88901)
"""Unit vector from the scene towards the sun (the light travels the opposite way)."""

LAMPS: dict[str, tuple[float, tuple[float, float, float], float]] = {
    "key": (78.5398, (1.0, 0.93231, 0.81666), 0.5),
    "fill": (23.5619, (0.76167, 0.81772, 1.0), 0.5),
    "back": (39.2699, (1.0, 1.0, 1.0), 1.0),
}
"""Lamp name -> (power W, linear colour, square side m)."""

RUBBER_ALPHA = 0.592**2
"""Beckmann alpha of the rubber gloss (Cycles roughness 0.592, alpha = roughness^2)."""
METAL_LOBES: tuple[tuple[float, float], ...] = ((0.6, 0.1**2), (0.4, 0.447**2))
"""Metal GGX lobes as (weight, alpha)."""
BOUNCE_GAIN: tuple[float, float] = (1.35, 1.12)
"""Gains on the one-bounce indirect light of the backdrop and of objects: a stand-in for
Cycles' 2nd-4th diffuse bounces, which the renderer does not trace. They differ because the
missing light differs: the floor's one bounce sees the backdrop's wall and the objects lit
directly, while the wall and floor are themselves lit a good deal by further bounces inside
the concave sweep; an object's one bounce mostly sees the floor. Calibrated on the 38
reference renders (see ``benchmarks/render_fidelity.py``)."""


def _floor_radiance(
    positions: torch.Tensor, radiance: torch.Tensor, sides: Sequence[float], sun_power: torch.Tensor, jitters: Sequence
) -> torch.Tensor:
    """(B, 3) radiance of an unshadowed floor point at the origin: each lamp as a small square
    facing it (irradiance radiance x area x cos / distance^2) plus the sun, times the floor's
    albedo over pi."""
    dist2 = (positions * positions).sum(-1)  # (B, L)
    cos_p = positions[..., 2] / dist2.sqrt()
    area = torch.tensor([s * s for s in sides], dtype=positions.dtype)
    lamps = (radiance * (area * cos_p / dist2)[..., None]).sum(1)  # (B, 3)
    sun = (sun_power * SUN_IRRADIANCE * SUN_DIRECTION[2])[:, None]
    albedo = torch.tensor([j.floor_albedo for j in jitters], dtype=positions.dtype)
    return albedo * (lamps + sun) / math.pi


def sun_solid_angle() -> float:
    """Solid angle of the sun's disc, steradians."""
    return 2 * math.pi * (1 - math.cos(SUN_ANGULAR_DIAMETER / 2))


def per_ray(table: torch.Tensor, sid: torch.Tensor, column: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of a per-scene table for each ray: ``table[sid]`` or ``table[sid, column]``.

    Args:
        table: (B, ...) per-scene values; with ``column``, (B, C, ...).
        sid: (N,) int64 scene index per ray.
        column: Optional (N,) int64 index into the table's second axis.

    Returns:
        (N, ...) values (an embedding lookup: much faster on CPU than fancy indexing).
    """
    flat_index = sid if column is None else sid * table.shape[1] + column
    rows = table.reshape(-1, *table.shape[(1 if column is None else 2) :])
    if rows.dtype == torch.bool:
        return per_ray(rows.to(torch.uint8), flat_index).bool()
    if rows.dim() == 1:
        return torch.nn.functional.embedding(flat_index, rows[:, None])[:, 0]
    width = rows[0].numel()
    return torch.nn.functional.embedding(flat_index, rows.reshape(-1, width)).view(-1, *rows.shape[1:])


def upload(tensors: Sequence[torch.Tensor], device: torch.device | str) -> list[torch.Tensor]:
    """CPU tensors on ``device``, in as few host-to-device copies as there are dtypes.

    On the CPU the tensors themselves come back. Elsewhere the tensors of each dtype are
    packed into one buffer (pinned on CUDA), copied without blocking the host, and split into
    views of their shapes again: many small copies each cost a driver call and a wait.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return list(tensors)
    out: list[torch.Tensor | None] = [None] * len(tensors)
    for dtype in dict.fromkeys(t.dtype for t in tensors):
        members = [i for i, t in enumerate(tensors) if t.dtype == dtype]
        flat = torch.cat([tensors[i].reshape(-1) for i in members])
        if device.type == "cuda":
            flat = flat.pin_memory()
        parts = flat.to(device, non_blocking=True).split([tensors[i].numel() for i in members])
        for i, part in zip(members, parts, strict=True):
            out[i] = part.view(tensors[i].shape)
    return out  # type: ignore[return-value]


def tangents(n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit tangents orthogonal to unit vectors ``n`` (..., 3)."""
    helper = torch.where(
        (n[..., 2].abs() < 0.9)[..., None],
        torch.tensor([0.0, 0.0, 1.0], device=n.device, dtype=n.dtype),
        torch.tensor([1.0, 0.0, 0.0], device=n.device, dtype=n.dtype),
    )
    t = torch.nn.functional.normalize(torch.linalg.cross(helper, n), dim=-1)
    return t, torch.linalg.cross(n, t)


@dataclass
class SceneBatch:
    """B scenes as tensors on one device (L = 3 lamps, K = most objects in a scene).

    Attributes:
        prims: ``(B, K, 13)`` `clevr_diffusion.render.geometry.primitive_table`.
        albedo: ``(B, K + 2, 3)`` linear albedo by ``object_id + 2``: sky (black), backdrop, objects.
        metal: ``(B, K + 2)`` bool, whether that surface is metal.
        camera: ``(B, 3)`` camera positions, metres.
        basis: ``(B, 3, 3)`` camera right, up and forward axes (rows).
        focal: ``(B,)`` focal-length factor (1 unless the field of view is randomised).
        lamp_center, lamp_u, lamp_v, lamp_normal: ``(B, L, 3)`` lamp centres, the unit axes
            of their squares and their unit normals (towards the origin).
        lamp_side: Side of each lamp's square, metres (L floats).
        lamp_radiance: ``(B, L, 3)`` emitted linear radiance.
        sun_direction, sun_tangent, sun_bitangent: ``(B, 3)`` unit vector to the sun and a
            frame around it.
        sun_radiance: ``(B, 3)`` radiance of the sun's disc.
        bounce_gain: ``(B, 2)`` factors on the one-bounce indirect light of the backdrop and of objects.
        floor_radiance: ``(B, 3)`` linear radiance of the open floor at the origin under direct
            light (albedo times unshadowed irradiance over pi): what lights an object from below.
        roughness: ``(B,)`` factor on the rubber and metal alphas.
    """

    prims: torch.Tensor
    albedo: torch.Tensor
    metal: torch.Tensor
    camera: torch.Tensor
    basis: torch.Tensor
    focal: torch.Tensor
    lamp_center: torch.Tensor
    lamp_u: torch.Tensor
    lamp_v: torch.Tensor
    lamp_normal: torch.Tensor
    lamp_side: tuple[float, ...]
    lamp_radiance: torch.Tensor
    sun_direction: torch.Tensor
    sun_tangent: torch.Tensor
    sun_bitangent: torch.Tensor
    sun_radiance: torch.Tensor
    bounce_gain: torch.Tensor
    floor_radiance: torch.Tensor
    roughness: torch.Tensor

    @classmethod
    def from_scenes(
        cls,
        scenes: Sequence[Scene],
        device: torch.device | str = "cpu",
        randomization: DomainRandomization | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> SceneBatch:
        """Stack scenes; with ``randomization``, draw each scene's jitter from its generator."""
        if randomization is not None and (generators is None or len(generators) != len(scenes)):
            raise ValueError("randomization needs one generator per scene")
        jitters = [
            randomization.draw(g) if randomization is not None else SceneJitter()
            for g in (generators if randomization is not None else [None] * len(scenes))  # type: ignore[list-item]
        ]
        f64 = torch.float64
        albedo = [
            [(0.0, 0.0, 0.0), j.floor_albedo] + [o.albedo for o in s.objects] for s, j in zip(scenes, jitters, strict=True)
        ]
        width = max((len(a) for a in albedo), default=2)
        albedo = [a + [(0.0, 0.0, 0.0)] * (width - len(a)) for a in albedo]
        metal = [[False, False] + [o.material == "metal" for o in s.objects] for s in scenes]
        metal = [m + [False] * (width - len(m)) for m in metal]

        pos = torch.tensor([[getattr(s.lights, name) for name in LAMPS] for s in scenes], dtype=f64).reshape(-1, 3, 3)
        normal = -pos / pos.norm(dim=-1, keepdim=True)  # one-sided lamps face the origin
        # TRACK_TO with local Y as close to world +Z as the aim allows.
        up = torch.tensor([0.0, 0.0, 1.0], dtype=f64)
        axis_v = torch.nn.functional.normalize(up - (normal @ up)[..., None] * normal, dim=-1)
        axis_u = torch.linalg.cross(axis_v, normal)
        sides = tuple(side for _, _, side in LAMPS.values())
        base = torch.tensor([[p * c for c in colour] for p, colour, _ in LAMPS.values()], dtype=f64)
        base = base / torch.tensor([math.pi * s * s for s in sides], dtype=f64)[:, None]
        jitter = torch.tensor(
            [[[p * c for c in col] for p, col in zip(j.lamp_power, j.lamp_color, strict=True)] for j in jitters], dtype=f64
        ).reshape(-1, 3, 3)
        sun = torch.tensor(SUN_DIRECTION, dtype=f64)
        sun = (sun / sun.norm()).expand(len(scenes), 3)
        sun_t, sun_b = tangents(sun)
        sun_power = torch.tensor([j.sun_power for j in jitters], dtype=f64)
        bases = [Camera.from_scene(s).basis() for s in scenes]

        def put(x: torch.Tensor | list, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(x).to(dtype=dtype)

        # Everything is built on the CPU (from Python numbers) and moved in one go.
        b = len(scenes)
        fields = {
            "prims": primitive_table(scenes),
            "albedo": put(albedo).reshape(b, width, 3),
            "metal": put(metal, torch.bool).reshape(b, width),
            "camera": put([list(s.camera) for s in scenes]).reshape(b, 3),
            "basis": put(torch.stack(bases) if bases else torch.zeros(0, 3, 3)),
            "focal": put([j.focal for j in jitters]),
            "lamp_center": put(pos),
            "lamp_u": put(axis_u),
            "lamp_v": put(axis_v),
            "lamp_normal": put(normal),
            "lamp_radiance": put(base * jitter),
            "sun_direction": put(sun),
            "sun_tangent": put(sun_t),
            "sun_bitangent": put(sun_b),
            "sun_radiance": put((sun_power * SUN_IRRADIANCE / sun_solid_angle())[:, None].expand(-1, 3)),
            "bounce_gain": put([[g * j.indirect for g in BOUNCE_GAIN] for j in jitters]).reshape(b, 2),
            "floor_radiance": put(_floor_radiance(pos, base * jitter, sides, sun_power, jitters)),
            "roughness": put([j.roughness for j in jitters]),
        }
        moved = upload(list(fields.values()), device)
        return cls(lamp_side=sides, **dict(zip(fields, moved, strict=True)))
