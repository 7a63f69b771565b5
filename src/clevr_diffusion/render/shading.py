"""First-pass shading for the CLEVR renderer: lamps, sun, materials and one diffuse bounce.

Light model (``shared/reference/blender/FORMAT.md``):

* three one-sided square area lamps aimed at the origin, emitted radiance
  ``power * colour / (pi * area)``, sampled by next-event estimation with one stratified point
  per camera sample (the strata of a pixel's samples are a permutation of a k x k grid on the
  lamp) and a shadow ray;
* the sun: irradiance 0.45 from a disc of angular diameter 0.19934 rad, one direction per
  sample drawn uniformly in the cone, with a shadow ray;
* black world.

Shadow rays test the objects only, each object only against the rays through its bounding
sphere: the backdrop cannot block the lamps or the sun for points in the camera's view (it rises
far behind the scene), and skipping its 24 strips halves the cost.

Materials (approximations):

* floor: Lambertian 0.8;
* rubber: Lambertian with the object colour (the velvet part of CLEVR's mix is treated as
  diffuse) plus an untinted Beckmann gloss (0.8 gray, roughness 0.592) weighted by a dielectric
  Fresnel of IOR 1.2 at the view angle;
* metal: colour-tinted GGX lobes without Fresnel (0.6 x roughness 0.1 + 0.4 x roughness
  0.447, alpha = roughness^2, isotropic here: the 0.25 anisotropy is ignored). Per camera sample
  one microfacet normal is drawn from the lobe mixture and the reflected ray traced: it sees the
  floor/backdrop or another object (shaded with direct light) or the black sky. Lamps and the
  sun are reached both by that ray and by light sampling, combined with the balance heuristic
  (multiple importance sampling), which keeps small sharp highlights free of fireflies.

Indirect light: one diffuse bounce. Each diffuse camera hit traces one cosine-weighted ray; its
hit is shaded with direct light only (Lambertian with the hit surface's albedo). Higher bounces
are not traced: the bounce estimate is multiplied by a gain (1.3) calibrated on the reference
renders instead. Metal sees the floor and objects through its reflection ray with the same
direct-only shading (no bounce gain).

All functions work on flat batches of points ``(N, 3)``; randomness comes in as tensors of
uniform numbers so callers control determinism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .geometry import BACKDROP_ID, MISS_ID, intersect_backdrop, intersect_object
from .scene import Scene

__all__ = [
    "FLOOR_ALBEDO",
    "LAMPS",
    "SUN_ANGULAR_DIAMETER",
    "SUN_DIRECTION",
    "SUN_IRRADIANCE",
    "AreaLamp",
    "first_hit",
    "ShadingSamples",
    "linear_to_srgb",
    "scene_lamps",
    "shade",
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

_RUBBER_GLOSS = 0.8
_RUBBER_IOR = 1.2
_RUBBER_ALPHA = 0.592**2  # Cycles roughness -> alpha = roughness^2
_METAL_LOBES = ((0.6, 0.1**2), (0.4, 0.447**2))  # (weight, GGX alpha)
_EPS = 1e-3
_BOUNCE_GAIN = 1.3
# The one-bounce estimate is scaled by this gain as a stand-in for the missing 2nd-4th diffuse
# bounces (Cycles uses 4). 1.3 was calibrated on the 38 reference renders at 64 x 64: with 1.0
# the backdrop is 1.4 levels and objects 2.7 levels too dark on average; with 1.3 both are
# within 0.4 levels.


@dataclass(frozen=True)
class AreaLamp:
    """A one-sided square lamp: centre, unit axes of its square, unit normal (towards the origin)."""

    center: torch.Tensor  # (3,)
    axis_u: torch.Tensor  # (3,)
    axis_v: torch.Tensor  # (3,)
    normal: torch.Tensor  # (3,)
    side: float
    radiance: torch.Tensor  # (3,) linear RGB

    @property
    def area(self) -> float:
        return self.side * self.side


def scene_lamps(scene: Scene, device: torch.device | str = "cpu") -> list[AreaLamp]:
    """The scene's three lamps: TRACK_TO the origin (-Z towards it), local Y as close to world +Z."""
    lamps = []
    for name, (power, colour, side) in LAMPS.items():
        pos = torch.tensor(getattr(scene.lights, name), dtype=torch.float64)
        normal = -pos / pos.norm()  # emitting side faces the origin
        up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        axis_v = up - (up @ normal) * normal
        axis_v = axis_v / axis_v.norm()
        axis_u = torch.linalg.cross(axis_v, normal)
        radiance = torch.tensor(colour, dtype=torch.float64) * power / (math.pi * side * side)
        lamps.append(
            AreaLamp(
                *(t.to(device=device, dtype=torch.float32) for t in (pos, axis_u, axis_v, normal)),
                side=side,
                radiance=radiance.to(device=device, dtype=torch.float32),
            )
        )
    return lamps


@dataclass
class ShadingSamples:
    """Uniform random numbers in [0, 1) for one batch of N shading points.

    ``lamp``: (L, N, 2) stratified positions on each lamp's square; ``sun``: (N, 2);
    ``bounce``: (N, 2) for the diffuse bounce direction; ``lobe``: (N, 3) for the metal lobe
    choice and its microfacet normal; ``bounce_lamp``: (L, N, 2) and ``bounce_sun``: (N, 2) for
    the direct light at the secondary hit.
    """

    lamp: torch.Tensor
    sun: torch.Tensor
    bounce: torch.Tensor
    lobe: torch.Tensor
    bounce_lamp: torch.Tensor
    bounce_sun: torch.Tensor

    def take(self, index: torch.Tensor) -> ShadingSamples:
        return ShadingSamples(
            lamp=self.lamp[:, index],
            sun=self.sun[index],
            bounce=self.bounce[index],
            lobe=self.lobe[index],
            bounce_lamp=self.bounce_lamp[:, index],
            bounce_sun=self.bounce_sun[index],
        )


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The sRGB OETF (piecewise), after clamping linear values to [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _frame(n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit tangents orthogonal to unit normals ``n`` (N, 3)."""
    helper = torch.where(
        (n[:, 2].abs() < 0.9)[:, None],
        torch.tensor([0.0, 0.0, 1.0], device=n.device).expand_as(n),
        torch.tensor([1.0, 0.0, 0.0], device=n.device).expand_as(n),
    )
    t = torch.linalg.cross(helper, n)
    t = t / t.norm(dim=-1, keepdim=True)
    b = torch.linalg.cross(n, t)
    return t, b


def _sun_directions(u: torch.Tensor) -> torch.Tensor:
    """Directions uniform inside the sun's cone, (N, 3) from uniforms (N, 2)."""
    sun = torch.tensor(SUN_DIRECTION, device=u.device, dtype=torch.float32)
    sun = sun / sun.norm()
    cos_max = math.cos(SUN_ANGULAR_DIAMETER / 2)
    cos_t = 1 - u[:, 0] * (1 - cos_max)
    sin_t = (1 - cos_t * cos_t).clamp(min=0).sqrt()
    phi = 2 * math.pi * u[:, 1]
    t, b = _frame(sun.expand(u.shape[0], 3))
    return (sin_t * phi.cos())[:, None] * t + (sin_t * phi.sin())[:, None] * b + cos_t[:, None] * sun


_BOUND_FACTOR = {"sphere": 1.0, "cube": math.sqrt(3.0), "cylinder": math.sqrt(2.0)}


def _occluded(scene: Scene, p: torch.Tensor, d: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Whether an object blocks the segment p + t d, 0 < t < dist (d unit).

    Each object is only intersected with the rays that pass through its bounding sphere.
    """
    blocked = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
    if not scene.objects or p.shape[0] == 0:
        return blocked
    for obj in scene.objects:
        c = torch.tensor(obj.center, dtype=torch.float32, device=p.device)
        radius = obj.scale * _BOUND_FACTOR[obj.shape] * 1.01
        oc = c - p
        along = (oc * d).sum(-1)
        miss2 = (oc * oc).sum(-1) - along * along
        near = (miss2 <= radius * radius) & (along + radius > 0) & (along - radius < dist) & ~blocked
        index = near.nonzero().squeeze(-1)
        if index.numel():
            t, _ = intersect_object(obj, p[index], d[index], t_min=_EPS)
            blocked[index[t < dist[index]]] = True
    return blocked


def first_hit(
    scene: Scene, o: torch.Tensor, d: torch.Tensor, t_min: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`intersect_scene` (backdrop included) for flat rays (N, 3), d unit, with each object only
    intersected with the rays through its bounding sphere. Returns ``(t, normal, object_id)``."""
    t, n = intersect_backdrop(o, d, t_min)
    ids = torch.where(torch.isinf(t), MISS_ID, BACKDROP_ID).to(torch.int64)
    for k, obj in enumerate(scene.objects):
        c = torch.tensor(obj.center, dtype=torch.float32, device=o.device)
        radius = obj.scale * _BOUND_FACTOR[obj.shape] * 1.01
        oc = c - o
        along = (oc * d).sum(-1)
        miss2 = (oc * oc).sum(-1) - along * along
        near = (miss2 <= radius * radius) & (along + radius > 0) & (along - radius < t)
        index = near.nonzero().squeeze(-1)
        if index.numel():
            tk, nk = intersect_object(obj, o[index], d[index], t_min)
            closer = tk < t[index]
            sel = index[closer]
            t[sel] = tk[closer]
            n[sel] = nk[closer]
            ids[sel] = k
    return t, n, ids


def _fresnel_dielectric(cos_i: torch.Tensor, ior: float) -> torch.Tensor:
    """Unpolarised Fresnel reflectance of a dielectric (as Cycles' Fresnel node), cos_i in [0, 1]."""
    c = cos_i.clamp(0.0, 1.0)
    g2 = ior * ior - 1 + c * c
    g = g2.clamp(min=0).sqrt()
    a = (g - c) / (g + c).clamp(min=1e-8)
    b = (c * (g + c) - 1) / (c * (g - c) + 1).clamp(min=1e-8)
    return (0.5 * a * a * (1 + b * b)).clamp(0.0, 1.0)


def _beckmann_lobe(n: torch.Tensor, v: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    """Beckmann microfacet BRDF value times cos(n, w) (no Fresnel), (N,)."""
    h = v + w
    h = h / h.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    nh = (n * h).sum(-1).clamp(min=1e-4)
    nv = (n * v).sum(-1).clamp(min=1e-4)
    nw = (n * w).sum(-1).clamp(min=0.0)
    tan2 = (1 - nh * nh) / (nh * nh)
    d = torch.exp(-tan2 / (alpha * alpha)) / (math.pi * alpha * alpha * nh**4)

    def g1(c: torch.Tensor) -> torch.Tensor:
        a = c / (alpha * (1 - c * c).clamp(min=1e-8).sqrt())
        return torch.where(a < 1.6, (3.535 * a + 2.181 * a * a) / (1 + 2.276 * a + 2.577 * a * a), torch.ones_like(a))

    return d * g1(nv) * g1(nw.clamp(min=1e-4)) / (4 * nv) * (nw > 0)


def _light_samples(
    scene: Scene, lamps: list[AreaLamp], p: torch.Tensor, n: torch.Tensor, lamp_u: torch.Tensor, sun_u: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One shadowed sample of each lamp and of the sun at points p (normals n).

    Returns a list (lamps, then sun) of ``(w, cos_p, radiance, pdf)``: unit direction to the
    light (N, 3), cos(n, w) (N,), incoming radiance (N, 3) (zero if blocked, behind the surface or
    behind the one-sided lamp) and the sample's solid-angle pdf (N,).
    """
    out = []
    origin = p + _EPS * n
    for lamp, u in zip(lamps, lamp_u, strict=True):
        q = lamp.center + ((u[:, :1] - 0.5) * lamp.side) * lamp.axis_u + ((u[:, 1:] - 0.5) * lamp.side) * lamp.axis_v
        to_lamp = q - origin
        dist2 = (to_lamp * to_lamp).sum(-1).clamp(min=1e-8)
        dist = dist2.sqrt()
        w = to_lamp / dist[:, None]
        cos_p = (n * w).sum(-1)
        cos_l = -(w * lamp.normal).sum(-1)  # one-sided: emits towards the origin side only
        live = (cos_p > 0) & (cos_l > 0)
        index = live.nonzero().squeeze(-1)
        if index.numel():
            blocked = _occluded(scene, origin[index], w[index], dist[index] - _EPS)
            live[index[blocked]] = False
        pdf = torch.where(live, dist2 / (cos_l.clamp(min=1e-6) * lamp.area), torch.ones_like(dist))
        out.append((w, cos_p, live[:, None] * lamp.radiance, pdf))
    w = _sun_directions(sun_u)
    cos_p = (n * w).sum(-1)
    live = cos_p > 0
    index = live.nonzero().squeeze(-1)
    if index.numel():
        blocked = _occluded(scene, origin[index], w[index], torch.full((index.numel(),), math.inf, device=p.device))
        live[index[blocked]] = False
    solid = _sun_solid_angle()
    pdf = torch.full_like(cos_p, 1 / solid)
    out.append((w, cos_p, (live * (SUN_IRRADIANCE / solid))[:, None].expand(-1, 3), pdf))
    return out


def _sun_solid_angle() -> float:
    return 2 * math.pi * (1 - math.cos(SUN_ANGULAR_DIAMETER / 2))


def _direct(
    scene: Scene,
    lamps: list[AreaLamp],
    p: torch.Tensor,
    n: torch.Tensor,
    lamp_u: torch.Tensor,
    sun_u: torch.Tensor,
    view: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct light at points p with normals n.

    Returns ``(irradiance, gloss)``, each (N, 3): the irradiance (for a Lambertian surface the
    outgoing radiance is albedo * irradiance / pi) and, if ``view`` (unit vectors towards the
    viewer) is given, the untinted rubber gloss radiance (Beckmann, without Fresnel/weight).
    """
    irradiance = torch.zeros_like(p)
    gloss = torch.zeros_like(p)
    for w, cos_p, radiance, pdf in _light_samples(scene, lamps, p, n, lamp_u, sun_u):
        irradiance += radiance * (cos_p.clamp(min=0) / pdf)[:, None]
        if view is not None:
            gloss += radiance * (_beckmann_lobe(n, view, w, _RUBBER_ALPHA) / pdf)[:, None]
    return irradiance, gloss


def _ggx_d(nh: torch.Tensor, alpha: float) -> torch.Tensor:
    a2 = alpha * alpha
    return a2 / (math.pi * (nh * nh * (a2 - 1) + 1) ** 2)


def _ggx_g1(c: torch.Tensor, alpha: float) -> torch.Tensor:
    c = c.clamp(min=1e-4)
    return 2 * c / (c + (alpha * alpha + (1 - alpha * alpha) * c * c).sqrt())


def _metal_eval(n: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Untinted metal BRDF times cos(n, w), and the lobe-mixture sampling pdf of w (solid angle)."""
    h = v + w
    h = h / h.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    nh = (n * h).sum(-1).clamp(min=0.0)
    nv = (n * v).sum(-1).clamp(min=1e-4)
    nw = (n * w).sum(-1)
    vh = (v * h).sum(-1).clamp(min=1e-4)
    f_cos = torch.zeros_like(nv)
    pdf = torch.zeros_like(nv)
    for weight, alpha in _METAL_LOBES:
        d = _ggx_d(nh, alpha)
        f_cos = f_cos + weight * d * _ggx_g1(nv, alpha) * _ggx_g1(nw, alpha) / (4 * nv)
        pdf = pdf + weight * d * nh / (4 * vh)
    f_cos = torch.where(nw > 0, f_cos, torch.zeros_like(f_cos))
    return f_cos, pdf


def _albedo_table(scene: Scene, device: torch.device | str) -> torch.Tensor:
    """(K + 2, 3) albedo by ``object_id + 2``: sky (black), backdrop (0.8), then objects."""
    rows = [(0.0, 0.0, 0.0), (FLOOR_ALBEDO,) * 3] + [o.albedo for o in scene.objects]
    return torch.tensor(rows, dtype=torch.float32, device=device)


def _metal_table(scene: Scene, device: torch.device | str) -> torch.Tensor:
    rows = [False, False] + [o.material == "metal" for o in scene.objects]
    return torch.tensor(rows, dtype=torch.bool, device=device)


def _emitter_hits(
    lamps: list[AreaLamp], o: torch.Tensor, d: torch.Tensor, t_max: torch.Tensor, ids: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What emitters rays o + t d (d unit) see: per lamp, then the sun, ``(radiance (N, 3), pdf (N,))``.

    ``radiance`` is zero where the emitter is not hit before ``t_max`` (front side only);
    ``pdf`` is the solid-angle pdf with which `_light_samples` would pick that direction.
    """
    out = []
    for lamp in lamps:
        den = (d * lamp.normal).sum(-1)
        t = ((lamp.center - o) * lamp.normal).sum(-1) / torch.where(den.abs() < 1e-8, torch.full_like(den, -1e-8), den)
        q = o + t[:, None] * d - lamp.center
        inside = ((q * lamp.axis_u).sum(-1).abs() <= lamp.side / 2) & ((q * lamp.axis_v).sum(-1).abs() <= lamp.side / 2)
        seen = inside & (t > 0) & (t < t_max) & (den < 0)
        pdf = torch.where(seen, t * t / ((-den).clamp(min=1e-6) * lamp.area), torch.ones_like(t))
        out.append((seen[:, None] * lamp.radiance, pdf))
    sun = torch.tensor(SUN_DIRECTION, device=o.device)
    solid = _sun_solid_angle()
    in_sun = ((d * sun).sum(-1) >= math.cos(SUN_ANGULAR_DIAMETER / 2)) & (ids == MISS_ID)
    out.append(((in_sun * (SUN_IRRADIANCE / solid))[:, None].expand(-1, 3), torch.full_like(t_max, 1 / solid)))
    return out


def _secondary(
    scene: Scene,
    lamps: list[AreaLamp],
    albedo: torch.Tensor,
    o: torch.Tensor,
    d: torch.Tensor,
    lamp_u: torch.Tensor,
    sun_u: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reflected radiance (N, 3) along rays o + t d: the hit surface shaded as Lambertian with
    direct light (emitters themselves not included). Also returns the hit ``t`` and ``ids``."""
    t, n, ids = first_hit(scene, o, d, t_min=_EPS)
    out = torch.zeros_like(o)
    hit = (ids != MISS_ID).nonzero().squeeze(-1)
    if hit.numel():
        p = o[hit] + t[hit, None] * d[hit]
        nh = n[hit]
        # Backdrop normals point up; flip any normal that faces away from the ray.
        nh = torch.where(((nh * d[hit]).sum(-1) > 0)[:, None], -nh, nh)
        e, _ = _direct(scene, lamps, p, nh, lamp_u[:, hit], sun_u[hit])
        out[hit] = albedo[ids[hit] + 2] * e / math.pi
    return out, t, ids


def _ggx_normal(n: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Microfacet normals sampled from the GGX distribution D(h)(n.h) around n."""
    phi = 2 * math.pi * u[:, 0]
    tan2 = alpha * alpha * u[:, 1] / (1 - u[:, 1]).clamp(min=1e-6)
    cos_t = 1 / (1 + tan2).sqrt()
    sin_t = (1 - cos_t * cos_t).clamp(min=0).sqrt()
    t, b = _frame(n)
    return (sin_t * phi.cos())[:, None] * t + (sin_t * phi.sin())[:, None] * b + cos_t[:, None] * n



def _surface_points(
    samples: ShadingSamples,
    origins: torch.Tensor,
    directions: torch.Tensor,
    t: torch.Tensor,
    normals: torch.Tensor,
    index: torch.Tensor,
) -> tuple[ShadingSamples, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The selected rays' samples, directions, hit points and normals facing the ray."""
    d = directions[index]
    n = normals[index]
    n = torch.where(((n * d).sum(-1) > 0)[:, None], -n, n)
    return samples.take(index), d, origins[index] + t[index, None] * d, n

def shade(
    scene: Scene,
    origins: torch.Tensor,
    directions: torch.Tensor,
    t: torch.Tensor,
    normals: torch.Tensor,
    ids: torch.Tensor,
    samples: ShadingSamples,
    lamps: list[AreaLamp] | None = None,
    split_backdrop_indirect: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Linear RGB radiance (N, 3) towards the camera for primary hits ``(t, normals, ids)`` (N,).

    With ``split_backdrop_indirect`` returns ``(radiance, backdrop_indirect)``: the bounce light
    of backdrop hits (N, 3), zero elsewhere, is left out of ``radiance`` so a caller can filter
    it (it is smooth in the image but the noisiest term); the sum of the two is the radiance.
    """
    device = origins.device
    backdrop_indirect = torch.zeros_like(origins)
    lamps = scene_lamps(scene, device) if lamps is None else lamps
    albedo = _albedo_table(scene, device)
    metal = _metal_table(scene, device)
    out = torch.zeros_like(origins)
    hit = ids != MISS_ID
    is_metal = metal[ids + 2] & hit
    diffuse = hit & ~is_metal

    # Diffuse surfaces (floor and rubber): direct + one diffuse bounce (+ rubber gloss).
    index = diffuse.nonzero().squeeze(-1)
    if index.numel():
        s, d, p, n = _surface_points(samples, origins, directions, t, normals, index)
        view = -d
        rubber = ids[index] >= 0
        e, gloss = _direct(scene, lamps, p, n, s.lamp, s.sun, view=view)
        a = albedo[ids[index] + 2]
        # One diffuse bounce, cosine-weighted: the estimator is albedo * L_in.
        r = s.bounce[:, 0].sqrt()
        phi = 2 * math.pi * s.bounce[:, 1]
        tx, ty = _frame(n)
        w = (r * phi.cos())[:, None] * tx + (r * phi.sin())[:, None] * ty + (1 - s.bounce[:, 0]).clamp(min=0).sqrt()[:, None] * n
        bounce, _, _ = _secondary(scene, lamps, albedo, p + _EPS * n, w, s.bounce_lamp, s.bounce_sun)
        indirect = a * (_BOUNCE_GAIN * bounce)
        if split_backdrop_indirect:
            backdrop_indirect[index] = torch.where(rubber[:, None], torch.zeros_like(indirect), indirect)
            indirect = torch.where(rubber[:, None], indirect, torch.zeros_like(indirect))
        radiance = a * e / math.pi + indirect
        fresnel = _fresnel_dielectric((n * view).sum(-1), _RUBBER_IOR)[:, None]
        rubber_rad = (1 - fresnel) * radiance + fresnel * _RUBBER_GLOSS * gloss
        out[index] = torch.where(rubber[:, None], rubber_rad, radiance)

    # Metal: sample one GGX lobe and trace the reflection.
    index = is_metal.nonzero().squeeze(-1)
    if index.numel():
        s, d, p, n = _surface_points(samples, origins, directions, t, normals, index)
        sharp = s.lobe[:, 0] < _METAL_LOBES[0][0]
        alpha = torch.where(sharp, _METAL_LOBES[0][1], _METAL_LOBES[1][1]).to(device)
        h = _ggx_normal(n, s.lobe[:, 1:], alpha)
        r = d - 2 * (d * h).sum(-1, keepdim=True) * h
        below = (r * n).sum(-1) <= 0
        r = torch.where(below[:, None], d - 2 * (d * n).sum(-1, keepdim=True) * n, r)
        view = -d
        origin = p + _EPS * n
        # Environment: one reflection ray, weighted by BRDF * cos / pdf; emitters it hits are
        # combined with light sampling by the balance heuristic (multiple importance sampling).
        env, t2, ids2 = _secondary(scene, lamps, albedo, origin, r, s.bounce_lamp, s.bounce_sun)
        f_cos, pdf_b = _metal_eval(n, view, r)
        f_cos = torch.where(below, torch.zeros_like(f_cos), f_cos)  # reflected under the surface: lost
        weight = torch.where(pdf_b > 0, f_cos / pdf_b.clamp(min=1e-8), torch.zeros_like(pdf_b))
        incoming = env * weight[:, None]
        for radiance, pdf_l in _emitter_hits(lamps, origin, r, t2, ids2):
            incoming += radiance * (f_cos / (pdf_b + pdf_l))[:, None]
        for w, _cos, radiance, pdf_l in _light_samples(scene, lamps, p, n, s.lamp, s.sun):
            f_cos_l, pdf_bl = _metal_eval(n, view, w)
            incoming += radiance * (f_cos_l / (pdf_l + pdf_bl))[:, None]
        out[index] = albedo[ids[index] + 2] * incoming
    if split_backdrop_indirect:
        return out, backdrop_indirect
    return out
