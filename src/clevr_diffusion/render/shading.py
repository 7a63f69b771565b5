"""Shading for the CLEVR renderer: lamps, sun, materials and one diffuse bounce.

Light model (``shared/reference/blender/FORMAT.md``):

* three one-sided square area lamps aimed at the origin, emitted radiance
  ``power * colour / (pi * area)``, each sampled at one random point per shaded sample;
* the sun: irradiance 0.45 from a disc of angular diameter 0.19934 rad, one direction per
  sample drawn uniformly in the cone;
* black world.

Primary diffuse hits and metal trace one shadow ray towards every light; secondary hits (of
bounce and reflection rays) trace one, towards a light picked in proportion to its unshadowed
light (`_direct`). Shadow rays test the objects only (`clevr_diffusion.render.geometry.occluded`).

Materials (approximations):

* floor: Lambertian 0.8;
* rubber: CLEVR's mix of a Lambertian and an Ashikhmin velvet lobe (sigma 0.6) in the object
  colour by a dielectric Fresnel of IOR 1.4, then of that and an untinted Beckmann gloss
  (0.8 gray, roughness 0.592) by a Fresnel of IOR 1.2, both at the view angle. The gloss
  reflects the lamps (light sampling) and the lit surroundings (through the bounce ray);
* metal: colour-tinted GGX lobes without Fresnel (0.6 x roughness 0.1 + 0.4 x roughness
  0.447, alpha = roughness^2, isotropic here: the 0.25 anisotropy is ignored). Per camera sample
  ``metal_samples`` microfacet normals are drawn from the lobe mixture and each reflected ray
  traced: it sees the floor/backdrop (shaded with direct light and one bounce of its own) or
  another object (direct light) or the black sky. Lamps and the sun are reached both by that ray and by light sampling, combined with the
  balance heuristic (multiple importance sampling), which keeps small sharp highlights free of
  fireflies.

Indirect light: one diffuse bounce. Each shaded diffuse hit traces one cosine-weighted ray; its
hit is shaded with direct light (Lambertian with the hit surface's albedo), plus, on an object,
light from the floor below it (`_FLOOR_LIGHT`). Higher bounces are not traced: the bounce
estimate is multiplied by gains (`scene_batch.BOUNCE_GAIN`, one for the backdrop and one for
objects) calibrated on the reference renders instead, and estimated against a control variate
(an open floor's light, whose mean over the bounce directions is known). The same ray, weighted
by the rubber gloss BRDF, gives the gloss's reflection of the surroundings.

All functions work on flat batches of points ``(N, 3)`` from several scenes at once: ``sid``
(N,) gives each point's scene in a `SceneBatch`. Randomness comes in as tensors of uniform
numbers so callers control determinism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .geometry import BACKDROP_ID, MISS_ID, cast_rays, dot, occluded
from .scene_batch import METAL_LOBES, RUBBER_ALPHA, SUN_ANGULAR_DIAMETER, SceneBatch, per_ray, sun_solid_angle, tangents

__all__ = ["ShadingSamples", "first_hit", "linear_to_srgb", "maybe_shadowed", "shade"]

_RUBBER_GLOSS = 0.8
_FLOOR_LIGHT = 0.5
"""Share of an open floor's light that reaches an object's secondary hit from below (see
`_secondary`): half, because the floor under and beside an object lies in its own shadow.
Fitted on the reference renders, where it removes the floor's missing colour bleeding next
to objects (2 levels in the object's colour at 1-3 px from it)."""
_RUBBER_IOR = 1.2
_VELVET_IOR = 1.4
"""The Fresnel (IOR 1.4) that mixes CLEVR rubber's diffuse and velvet lobes."""
_VELVET_SIGMA = 0.6
_EPS = 1e-3


@dataclass
class ShadingSamples:
    """Uniform random numbers in [0, 1) for one batch of N shading points.

    ``lamp``: (L, N, 2) stratified positions on each lamp's square; ``sun``: (N, 2);
    ``bounce``: (N, 2) for the diffuse bounce direction; ``lobe``: (N, 3) for the metal lobe
    choice and its microfacet normal; ``bounce_lamp``: (L, N, 2) and ``bounce_sun``: (N, 2) for
    the direct light at the secondary hit; ``select``: (N, 2) to pick the light whose shadow
    ray is traced, at the primary (column 0) and the secondary hit (column 1).
    """

    lamp: torch.Tensor
    sun: torch.Tensor
    bounce: torch.Tensor
    lobe: torch.Tensor
    bounce_lamp: torch.Tensor
    bounce_sun: torch.Tensor
    select: torch.Tensor

    def take(self, index: torch.Tensor) -> ShadingSamples:
        return ShadingSamples(
            lamp=self.lamp[:, index],
            sun=self.sun[index],
            bounce=self.bounce[index],
            lobe=self.lobe[index],
            bounce_lamp=self.bounce_lamp[:, index],
            bounce_sun=self.bounce_sun[index],
            select=self.select[index],
        )

    @staticmethod
    def concat(parts: list[ShadingSamples]) -> ShadingSamples:
        """The samples of ``parts`` one after another (as rows of one batch)."""
        return ShadingSamples(
            lamp=torch.cat([x.lamp for x in parts], dim=1),
            sun=torch.cat([x.sun for x in parts]),
            bounce=torch.cat([x.bounce for x in parts]),
            lobe=torch.cat([x.lobe for x in parts]),
            bounce_lamp=torch.cat([x.bounce_lamp for x in parts], dim=1),
            bounce_sun=torch.cat([x.bounce_sun for x in parts]),
            select=torch.cat([x.select for x in parts]),
        )

    def shifted(self, j: int) -> ShadingSamples:
        """The same numbers moved by the j-th point of a Kronecker (golden-ratio) sequence,
        modulo 1: extra well-spread samples from one draw, so tracing more of them changes no
        other surface's random numbers."""
        if j == 0:
            return self
        fields = [self.lamp, self.sun, self.bounce, self.lobe, self.bounce_lamp, self.bounce_sun, self.select]
        shifted = [torch.remainder(f + (j * _KRONECKER[i % len(_KRONECKER)]), 1.0) for i, f in enumerate(fields)]
        return ShadingSamples(*shifted)


# Fractional parts of multiples of the golden ratio's conjugate and of the plastic number's
# powers: irrational steps whose multiples spread evenly over [0, 1).
_KRONECKER = (0.6180339887, 0.7548776662, 0.5698402910, 0.8191725134, 0.4301597090, 0.2451223338, 0.1808274866)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The sRGB OETF (piecewise), after clamping linear values to [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def first_hit(
    batch: SceneBatch, sid: torch.Tensor, o: torch.Tensor, d: torch.Tensor, t_min: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First hit (backdrop included) of flat rays (N, 3), d unit, ray i in scene ``sid[i]``.

    Returns ``(t, normal, object_id)``."""
    return cast_rays(batch.prims, sid, o, d, t_min)


def _sun_directions(batch: SceneBatch, sid: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Directions uniform inside the sun's cone, (N, 3) from uniforms (N, 2)."""
    cos_max = math.cos(SUN_ANGULAR_DIAMETER / 2)
    cos_t = 1 - u[:, 0] * (1 - cos_max)
    sin_t = (1 - cos_t * cos_t).clamp(min=0).sqrt()
    phi = 2 * math.pi * u[:, 1]
    return (
        (sin_t * phi.cos())[:, None] * per_ray(batch.sun_tangent, sid)
        + (sin_t * phi.sin())[:, None] * per_ray(batch.sun_bitangent, sid)
        + cos_t[:, None] * per_ray(batch.sun_direction, sid)
    )


def _lamps(batch: SceneBatch, sid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-ray (N, L, 3) lamp centres, square axes u and v, normals and radiances."""
    return tuple(
        per_ray(x, sid) for x in (batch.lamp_center, batch.lamp_u, batch.lamp_v, batch.lamp_normal, batch.lamp_radiance)
    )


def _fresnel_dielectric(cos_i: torch.Tensor, ior: float) -> torch.Tensor:
    """Unpolarised Fresnel reflectance of a dielectric (as Cycles' Fresnel node), cos_i in [0, 1]."""
    c = cos_i.clamp(0.0, 1.0)
    g2 = ior * ior - 1 + c * c
    g = g2.clamp(min=0).sqrt()
    a = (g - c) / (g + c).clamp(min=1e-8)
    b = (c * (g + c) - 1) / (c * (g - c) + 1).clamp(min=1e-8)
    return (0.5 * a * a * (1 + b * b)).clamp(0.0, 1.0)


def _beckmann_lobe(n: torch.Tensor, v: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Beckmann microfacet BRDF value times cos(n, w) (no Fresnel), (N,); alpha (N,)."""
    h = torch.nn.functional.normalize(v + w, dim=-1, eps=1e-8)
    nh = dot(n, h).clamp(min=1e-4)
    nv = dot(n, v).clamp(min=1e-4)
    nw = dot(n, w).clamp(min=0.0)
    a2 = alpha * alpha
    tan2 = (1 - nh * nh) / (nh * nh)
    d = torch.exp(-tan2 / a2) / (math.pi * a2 * nh**4)

    def g1(c: torch.Tensor) -> torch.Tensor:
        a = c / (alpha * (1 - c * c).clamp(min=1e-8).sqrt())
        return torch.where(a < 1.6, (3.535 * a + 2.181 * a * a) / (1 + 2.276 * a + 2.577 * a * a), torch.ones_like(a))

    return d * g1(nv) * g1(nw.clamp(min=1e-4)) / (4 * nv) * (nw > 0)


def _velvet_lobe(n: torch.Tensor, v: torch.Tensor, w: torch.Tensor, sigma: float) -> torch.Tensor:
    """Ashikhmin's velvet BRDF (Cycles' Velvet, later Sheen 'Ashikhmin') times cos(n, w), (N,).

    Microfacets whose normals gather at grazing angles: D(h) = exp(-cot^2 / sigma^2) /
    (pi sigma^2 sin^4), with the V-cavity masking term G, over 4 cos(n, v).
    """
    h = torch.nn.functional.normalize(v + w, dim=-1, eps=1e-8)
    nh = dot(n, h).clamp(min=0.0, max=1 - 1e-5)
    nv = dot(n, v).clamp(min=1e-4)
    nw = dot(n, w)
    vh = dot(v, h).clamp(min=1e-5)
    sin2 = 1 - nh * nh
    inv_s2 = 1.0 / (sigma * sigma)
    d = torch.exp(-(nh * nh / sin2) * inv_s2) * inv_s2 / (math.pi * sin2 * sin2)
    ratio = (nh / vh).clamp(min=1e-5)
    g = torch.minimum(torch.ones_like(nv), torch.minimum(2 * ratio * nv, 2 * ratio * nw.clamp(min=0)))
    return d * g / (4 * nv) * (nw > 0)


def _light_samples(
    batch: SceneBatch,
    sid: torch.Tensor,
    p: torch.Tensor,
    n: torch.Tensor,
    lamp_u: torch.Tensor,
    sun_u: torch.Tensor,
    shadows: bool = True,
    own: torch.Tensor | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One sample of each lamp and of the sun at points p (normals n), facing the outside of
    the surface they lie on; ``own`` (N,) optionally gives that surface's object slot (negative
    for the backdrop), which its own shadow rays then skip (see `occluded`).

    Returns a list (lamps, then sun) of ``(w, cos_p, radiance, pdf, dist)``: unit direction to
    the light (N, 3), cos(n, w) (N,), incoming radiance (N, 3) (zero behind the surface, behind
    the one-sided lamp, or, with ``shadows``, if blocked), the sample's solid-angle pdf (N,) and
    the distance to the light sample (N,) (inf for the sun).
    """
    origin = p + _EPS * n
    L_center, L_u, L_v, L_normal, L_radiance = _lamps(batch, sid)
    samples = []  # per light: (w, cos_p, live before shadows, dist2, cos_l, dist)
    for k, side in enumerate(batch.lamp_side):
        q = (
            L_center[:, k]
            + ((lamp_u[k, :, :1] - 0.5) * side) * L_u[:, k]
            + ((lamp_u[k, :, 1:] - 0.5) * side) * L_v[:, k]
        )
        to_lamp = q - origin
        dist2 = dot(to_lamp, to_lamp).clamp(min=1e-8)
        dist = dist2.sqrt()
        w = to_lamp / dist[:, None]
        cos_p = dot(n, w)
        cos_l = -dot(w, L_normal[:, k])  # one-sided: emits towards the origin side only
        samples.append((w, cos_p, (cos_p > 0) & (cos_l > 0), dist2, cos_l, dist))
    w = _sun_directions(batch, sid, sun_u)
    cos_p = dot(n, w)
    far = torch.full_like(cos_p, math.inf)
    samples.append((w, cos_p, cos_p > 0, far, far, far))
    lives = [live for _, _, live, _, _, _ in samples]
    if shadows:
        lives = _unblocked(batch, sid, origin, samples, own)
    out = []
    for k, side in enumerate(batch.lamp_side):
        w, cos_p, _, dist2, cos_l, dist = samples[k]
        live = lives[k]
        pdf = torch.where(live, dist2 / (cos_l.clamp(min=1e-6) * side * side), torch.ones_like(dist))
        out.append((w, cos_p, live[:, None] * L_radiance[:, k], pdf, dist - _EPS))
    w, cos_p = samples[-1][:2]
    radiance = lives[-1][:, None] * per_ray(batch.sun_radiance, sid)
    out.append((w, cos_p, radiance, torch.full_like(cos_p, 1 / sun_solid_angle()), far))
    return out


def _unblocked(
    batch: SceneBatch,
    sid: torch.Tensor,
    origin: torch.Tensor,
    samples: list[tuple[torch.Tensor, ...]],
    own: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Each light sample's ``live`` mask with the blocked shadow rays removed.

    The shadow rays of all lights are tested in one `occluded` call (one host sync, not one
    per light); ``samples`` holds per light ``(w, cos_p, live, dist2, cos_l, dist)``, the
    sun's ``dist`` infinite.
    """
    count = origin.shape[0]
    lights = len(samples)
    w = torch.cat([x[0] for x in samples])
    live = torch.cat([x[2] for x in samples])
    # A lamp's shadow ray stops just short of it; the sun's never ends.
    dist = torch.cat([x[5] - _EPS for x in samples])
    # A shadow ray is only traced where the light lies above the surface (live), so it leaves
    # the surface outwards and its own (convex) object cannot block it.
    blocked = occluded(batch.prims, sid, origin, w, dist, active=live, shared=lights, own=own)
    return list((live & ~blocked).split(count))


def _direct(
    batch: SceneBatch,
    sid: torch.Tensor,
    p: torch.Tensor,
    n: torch.Tensor,
    lamp_u: torch.Tensor,
    sun_u: torch.Tensor,
    select: torch.Tensor,
    view: torch.Tensor | None = None,
    every_light: bool = False,
    lobes_at: torch.Tensor | None = None,
    own: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct light at points p with normals n, tracing one shadow ray per point (or, with
    ``every_light``, one per light: no noise from the choice of light, at four times the rays).

    Every light is sampled unshadowed; one of them is picked with probability proportional to
    its unshadowed irradiance (``select`` (N,) uniforms) and only its shadow ray is traced. The
    estimate, total unshadowed irradiance times that light's visibility, is exact wherever no
    light is blocked, and a quarter of the shadow rays keeps the cost of soft shadows low.

    Returns ``(irradiance, gloss, velvet)``, each (N, 3): the irradiance (for a Lambertian
    surface the outgoing radiance is albedo * irradiance / pi) and, if ``view`` (unit vectors
    towards the viewer) is given, the untinted rubber gloss radiance (Beckmann) and velvet
    radiance (untinted, without Fresnel weights; with ``every_light`` only, else zeros), at
    the points ``lobes_at`` (indices; default all) and zero elsewhere. ``own``: as in
    `_light_samples` (used with ``every_light``).
    """
    gloss = torch.zeros_like(p)
    velvet = torch.zeros_like(p)
    if every_light:
        lights = _light_samples(batch, sid, p, n, lamp_u, sun_u, shadows=True, own=own)
        irradiance = sum(r * (c.clamp(min=0) / pdf)[:, None] for _, c, r, pdf, _ in lights)
        if view is not None:
            at = torch.arange(p.shape[0], device=p.device) if lobes_at is None else lobes_at
            alpha = RUBBER_ALPHA * per_ray(batch.roughness, sid[at])
            nv, vv = n[at], view[at]
            gloss = gloss.index_copy(0, at, sum(
                r[at] * (_beckmann_lobe(nv, vv, w[at], alpha) / pdf[at])[:, None] for w, _, r, pdf, _ in lights
            ))  # fmt: skip
            velvet = velvet.index_copy(0, at, sum(
                r[at] * (_velvet_lobe(nv, vv, w[at], _VELVET_SIGMA) / pdf[at])[:, None] for w, _, r, pdf, _ in lights
            ))  # fmt: skip
        return irradiance, gloss, velvet
    lights = _light_samples(batch, sid, p, n, lamp_u, sun_u, shadows=False)
    contrib = torch.stack([r * (c.clamp(min=0) / pdf)[:, None] for _, c, r, pdf, _ in lights])  # (L+1, N, 3)
    weight = contrib.sum(-1)  # (L+1, N)
    total = weight.sum(0)
    cdf = torch.cumsum(weight, 0)
    pick = (cdf < (select * total)[None]).sum(0).clamp(max=len(lights) - 1)  # (N,)
    w = torch.stack([x[0] for x in lights])  # (L+1, N, 3)
    dist = torch.stack([x[4] for x in lights])
    rows = torch.arange(p.shape[0], device=p.device)
    w_pick, dist_pick = w[pick, rows], dist[pick, rows]
    visible = total > 0
    visible &= ~occluded(batch.prims, sid, p + _EPS * n, w_pick, dist_pick, active=visible)
    irradiance = contrib.sum(0) * visible[:, None]
    if view is not None:
        alpha = RUBBER_ALPHA * per_ray(batch.roughness, sid)
        prob = (weight[pick, rows] / total.clamp(min=1e-12)).clamp(min=1e-6)
        radiance = torch.stack([x[2] for x in lights])[pick, rows]
        lobe = _beckmann_lobe(n, view, w_pick, alpha) / torch.stack([x[3] for x in lights])[pick, rows]
        gloss = radiance * (lobe * visible / prob)[:, None]
    return irradiance, gloss, velvet


def _ggx_d(nh: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    a2 = alpha * alpha
    return a2 / (math.pi * (nh * nh * (a2 - 1) + 1) ** 2)


def _ggx_g1(c: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    c = c.clamp(min=1e-4)
    return 2 * c / (c + (alpha * alpha + (1 - alpha * alpha) * c * c).sqrt())


def _metal_eval(
    n: torch.Tensor, v: torch.Tensor, w: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Untinted metal BRDF times cos(n, w), and the lobe-mixture sampling pdf of w (solid angle);
    ``scale`` (N,) multiplies the lobes' alphas."""
    h = torch.nn.functional.normalize(v + w, dim=-1, eps=1e-8)
    nh = dot(n, h).clamp(min=0.0)
    nv = dot(n, v).clamp(min=1e-4)
    nw = dot(n, w)
    vh = dot(v, h).clamp(min=1e-4)
    f_cos = torch.zeros_like(nv)
    pdf = torch.zeros_like(nv)
    for weight, alpha in METAL_LOBES:
        a = alpha * scale
        d = _ggx_d(nh, a)
        f_cos = f_cos + weight * d * _ggx_g1(nv, a) * _ggx_g1(nw, a) / (4 * nv)
        pdf = pdf + weight * d * nh / (4 * vh)
    f_cos = torch.where(nw > 0, f_cos, torch.zeros_like(f_cos))
    return f_cos, pdf


def _emitter_hits(
    batch: SceneBatch, sid: torch.Tensor, o: torch.Tensor, d: torch.Tensor, t_max: torch.Tensor, ids: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What emitters rays o + t d (d unit) see: per lamp, then the sun, ``(radiance (N, 3), pdf (N,))``.

    ``radiance`` is zero where the emitter is not hit before ``t_max`` (front side only);
    ``pdf`` is the solid-angle pdf with which `_light_samples` would pick that direction.
    """
    out = []
    L_center, L_u, L_v, L_normal, L_radiance = _lamps(batch, sid)
    for k, side in enumerate(batch.lamp_side):
        normal, center = L_normal[:, k], L_center[:, k]
        den = dot(d, normal)
        t = dot(center - o, normal) / torch.where(den.abs() < 1e-8, torch.full_like(den, -1e-8), den)
        q = o + t[:, None] * d - center
        inside = (dot(q, L_u[:, k]).abs() <= side / 2) & (dot(q, L_v[:, k]).abs() <= side / 2)
        seen = inside & (t > 0) & (t < t_max) & (den < 0)
        pdf = torch.where(seen, t * t / ((-den).clamp(min=1e-6) * side * side), torch.ones_like(t))
        out.append((seen[:, None] * L_radiance[:, k], pdf))
    solid = sun_solid_angle()
    in_sun = (dot(d, per_ray(batch.sun_direction, sid)) >= math.cos(SUN_ANGULAR_DIAMETER / 2)) & (ids == MISS_ID)
    out.append((in_sun[:, None] * per_ray(batch.sun_radiance, sid), torch.full_like(t_max, 1 / solid)))
    return out


def _secondary(
    batch: SceneBatch,
    sid: torch.Tensor,
    o: torch.Tensor,
    d: torch.Tensor,
    lamp_u: torch.Tensor,
    sun_u: torch.Tensor,
    select: torch.Tensor,
    bounce: ShadingSamples | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reflected radiance (N, 3) along rays o + t d: the hit surface shaded as Lambertian with
    direct light (emitters themselves not included). Also returns the hit ``t`` and ``ids``.

    With ``bounce`` (per ray: ``bounce`` uniforms for a cosine-weighted direction, ``lamp``,
    ``sun`` and ``select[:, 0]`` for the light where it lands), a backdrop hit also gets its own
    indirect light from one bounce ray, times the backdrop's bounce gain: metal reflects the
    floor and wall as lit by everything, and without it metal came out 3-4 levels too dark."""
    t, n, ids = first_hit(batch, sid, o, d, t_min=_EPS)
    out = torch.zeros_like(o)
    hit = (ids != MISS_ID).nonzero().squeeze(-1)
    if hit.numel():
        sh = sid[hit]
        p = o[hit] + t[hit, None] * d[hit]
        nh = n[hit]
        # Backdrop normals point up; flip any normal that faces away from the ray.
        nh = torch.where((dot(nh, d[hit]) > 0)[:, None], -nh, nh)
        e, _, _ = _direct(batch, sh, p, nh, lamp_u[:, hit], sun_u[hit], select[hit])
        # Objects are lit from below by the floor, which this one bounce cannot see: add it as
        # an open floor of uniform radiance over the share of the sky below the normal, (1 - n_z) / 2.
        below = ((ids[hit] >= 0).to(p.dtype) * (1 - nh[:, 2]) / 2 * _FLOOR_LIGHT)[:, None]
        e = e + math.pi * below * per_ray(batch.floor_radiance, sh)
        out[hit] = per_ray(batch.albedo, sh, ids[hit] + 2) * e / math.pi
        if bounce is not None:
            # Traced from every hit and kept on the backdrop's: no compaction (no host sync).
            sb = bounce.take(hit)
            w = _cosine_direction(nh, sb.bounce)
            light, _, _ = _secondary(batch, sh, p + _EPS * nh, w, sb.lamp, sb.sun, sb.select[:, 0])
            gain = per_ray(batch.bounce_gain, sh, torch.zeros_like(hit)) * (ids[hit] == BACKDROP_ID)
            out[hit] += per_ray(batch.albedo, sh, torch.ones_like(hit)) * gain[:, None] * light
    return out, t, ids


def _cosine_direction(n: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Cosine-weighted directions about unit normals n (N, 3) from uniforms u (N, 2)."""
    r = u[:, 0].sqrt()
    phi = 2 * math.pi * u[:, 1]
    tx, ty = tangents(n)
    up = (1 - u[:, 0]).clamp(min=0).sqrt()
    return (r * phi.cos())[:, None] * tx + (r * phi.sin())[:, None] * ty + up[:, None] * n


def _ggx_normal(n: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Microfacet normals sampled from the GGX distribution D(h)(n.h) around n."""
    phi = 2 * math.pi * u[:, 0]
    tan2 = alpha * alpha * u[:, 1] / (1 - u[:, 1]).clamp(min=1e-6)
    cos_t = 1 / (1 + tan2).sqrt()
    sin_t = (1 - cos_t * cos_t).clamp(min=0).sqrt()
    t, b = tangents(n)
    return (sin_t * phi.cos())[:, None] * t + (sin_t * phi.sin())[:, None] * b + cos_t[:, None] * n


def _surface_points(
    samples: ShadingSamples,
    origins: torch.Tensor,
    directions: torch.Tensor,
    t: torch.Tensor,
    normals: torch.Tensor,
    index: torch.Tensor | None,
) -> tuple[ShadingSamples, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The selected rays' (all with ``index`` None) samples, directions, hit points and normals
    facing the ray."""
    if index is None:
        d, n, o, tt, s = directions, normals, origins, t, samples
    else:
        d, n, o, tt, s = directions[index], normals[index], origins[index], t[index], samples.take(index)
    n = torch.where((dot(n, d) > 0)[:, None], -n, n)
    return s, d, o + tt[:, None] * d, n


def shade(
    batch: SceneBatch,
    sid: torch.Tensor,
    origins: torch.Tensor,
    directions: torch.Tensor,
    t: torch.Tensor,
    normals: torch.Tensor,
    ids: torch.Tensor,
    samples: ShadingSamples,
    bounce: torch.Tensor | None = None,
    split_indirect: bool = False,
    shaded: torch.Tensor | None = None,
    metal_samples: int = 1,
    all_diffuse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Linear RGB radiance (N, 3) towards the camera for primary hits ``(t, normals, ids)`` (N,)
    of rays in scenes ``sid`` (N,).

    Args:
        bounce: Optional (N,) bool: the diffuse hits that trace a bounce ray (default: all).
            The others get no indirect light; a caller that traces a subset filters it
            across neighbouring samples (see ``split_indirect``).
        split_indirect: Return ``(radiance, indirect)``: the diffuse bounce light (N, 3), zero
            where no bounce was traced, left out of ``radiance``; the sum of the two is the
            radiance.
        shaded: Optional (N,) bool: the diffuse hits to shade at all (default: all); the
            others get zero radiance. Metal hits are always shaded.
        metal_samples: Reflection rays (each with its light samples) averaged per metal hit,
            the first from ``samples`` and the rest from it shifted (`ShadingSamples.shifted`).
        all_diffuse: The caller knows that every point is a diffuse hit to shade (no metal,
            no miss, ``shaded`` all true): the compactions that pick them out are skipped.
    """
    indirect_out = torch.zeros_like(origins)
    out = torch.zeros_like(origins)
    hit = ids != MISS_ID
    is_metal = per_ray(batch.metal, sid, ids + 2) & hit
    diffuse = hit & ~is_metal
    if shaded is not None:
        diffuse &= shaded

    # Diffuse surfaces (floor and rubber): direct + one diffuse bounce (+ rubber gloss).
    index = None if all_diffuse else diffuse.nonzero().squeeze(-1)

    def at(x: torch.Tensor) -> torch.Tensor:
        return x if index is None else x[index]

    if index is None or index.numel():
        s, d, p, n = _surface_points(samples, origins, directions, t, normals, index)
        si = at(sid)
        view = -d
        rubber = (at(ids) >= 0)[:, None]
        # The gloss and velvet lobes only matter on rubber: evaluate them there alone.
        lobes_at = rubber[:, 0].nonzero().squeeze(-1)
        e, gloss, velvet = _direct(
            batch, si, p, n, s.lamp, s.sun, s.select[:, 0], view=view, every_light=True, lobes_at=lobes_at, own=at(ids)
        )
        a = per_ray(batch.albedo, si, at(ids) + 2)
        cos_view = dot(n, view)
        fresnel = torch.where(rubber, _fresnel_dielectric(cos_view, _RUBBER_IOR)[:, None], 0.0)
        sheen = torch.where(rubber, _fresnel_dielectric(cos_view, _VELVET_IOR)[:, None], 0.0)
        base = (1 - sheen) * (a * e / math.pi) + sheen * a * velvet
        radiance = (1 - fresnel) * base + fresnel * _RUBBER_GLOSS * gloss
        if index is None:
            out = radiance
        else:
            out[index] = radiance
        # One diffuse bounce, cosine-weighted: the estimator is albedo * L_in.
        # Every hit traces a bounce unless `bounce` says otherwise; then only those are picked
        # out (a copy of every per-point tensor, skipped when all trace one).
        traced = None if bounce is None else at(bounce).nonzero().squeeze(-1)

        def pick(x: torch.Tensor) -> torch.Tensor:
            return x if traced is None else x[traced]

        if traced is None or traced.numel():
            nb, sb = pick(n), (s if traced is None else s.take(traced))
            w = _cosine_direction(nb, sb.bounce)
            light, _, _ = _secondary(
                batch, pick(si), pick(p) + _EPS * nb, w, sb.bounce_lamp, sb.bounce_sun, sb.select[:, 1]
            )
            gain = per_ray(batch.bounce_gain, pick(si), (pick(at(ids)) >= 0).long())
            # Control variate for the diffuse part: an open floor of the direct-lit radiance
            # seen below the horizon, whose mean over cosine-weighted rays is known exactly,
            # (1 - n_z) / 2 of it. Only the difference from it is estimated by the ray, which
            # removes most of the noise of rays that hit the floor or miss it (objects
            # get a third of their light this way).
            floor = per_ray(batch.floor_radiance, pick(si))
            expected = floor * ((1 - nb[:, 2]) / 2)[:, None]
            diffuse_light = expected + light - floor * (w[:, 2] < 0)[:, None]
            # The velvet's share of the bounce: its BRDF over the cosine-weighted pdf.
            v_weight = math.pi * _velvet_lobe(nb, pick(view), w, _VELVET_SIGMA) / dot(nb, w).clamp(min=1e-4)
            sheen_b = pick(sheen)
            mixed = (1 - sheen_b) * diffuse_light + sheen_b * v_weight[:, None] * light
            indirect = (1 - pick(fresnel)) * pick(a) * gain[:, None] * mixed
            # The rubber gloss reflects the lit surroundings too, not only the lamps: at grazing
            # views (Fresnel towards 1) it mirrors the bright floor, which made outlines 5-14
            # levels too dark at 320 x 240. Estimated from the same ray, with the gloss BRDF
            # over the cosine pdf (untinted, no bounce gain).
            alpha_b = RUBBER_ALPHA * per_ray(batch.roughness, pick(si))
            g_weight = math.pi * _beckmann_lobe(nb, pick(view), w, alpha_b) / dot(nb, w).clamp(min=1e-4)
            indirect = indirect + pick(fresnel) * _RUBBER_GLOSS * g_weight[:, None] * light
            if index is None and traced is None:
                if split_indirect:
                    indirect_out = indirect
                else:
                    out = out + indirect
            else:
                where = pick(torch.arange(origins.shape[0], device=origins.device) if index is None else index)
                if split_indirect:
                    indirect_out[where] = indirect
                else:
                    out[where] += indirect

    # Metal: sample GGX lobes and trace the reflections.
    index = None if all_diffuse else is_metal.nonzero().squeeze(-1)
    if index is not None and index.numel():
        s0, d, p, n = _surface_points(samples, origins, directions, t, normals, index)
        count, si = index.shape[0], sid[index]
        # All reflection samples in one pass (one set of casts and shadow tests, not one per
        # sample): row j * count + i is point i's sample j.
        s = ShadingSamples.concat([s0.shifted(j) for j in range(metal_samples)])
        si, d, p, n = (
            si.repeat(metal_samples),
            d.repeat(metal_samples, 1),
            p.repeat(metal_samples, 1),
            n.repeat(metal_samples, 1),
        )
        scale = per_ray(batch.roughness, si)
        view = -d
        origin = p + _EPS * n
        sharp = s.lobe[:, 0] < METAL_LOBES[0][0]
        alpha = torch.where(sharp, METAL_LOBES[0][1], METAL_LOBES[1][1]) * scale
        h = _ggx_normal(n, s.lobe[:, 1:], alpha)
        r = d - 2 * dot(d, h)[:, None] * h
        below = dot(r, n) <= 0
        r = torch.where(below[:, None], d - 2 * dot(d, n)[:, None] * n, r)
        # Environment: one reflection ray, weighted by BRDF * cos / pdf; emitters it hits are
        # combined with light sampling by the balance heuristic (multiple importance sampling).
        # The bounce at a backdrop hit reuses the ``bounce`` uniforms (unused on metal) and the
        # light-sample ones of this point, which lies elsewhere.
        env, t2, ids2 = _secondary(batch, si, origin, r, s.bounce_lamp, s.bounce_sun, s.select[:, 1], bounce=s)
        f_cos, pdf_b = _metal_eval(n, view, r, scale)
        f_cos = torch.where(below, torch.zeros_like(f_cos), f_cos)  # reflected under the surface: lost
        weight = torch.where(pdf_b > 0, f_cos / pdf_b.clamp(min=1e-8), torch.zeros_like(pdf_b))
        incoming = env * weight[:, None]
        for radiance, pdf_l in _emitter_hits(batch, si, origin, r, t2, ids2):
            incoming += radiance * (f_cos / (pdf_b + pdf_l))[:, None]
        own = ids[index].repeat(metal_samples)
        for w, _cos, radiance, pdf_l, _dist in _light_samples(batch, si, p, n, s.lamp, s.sun, own=own):
            f_cos_l, pdf_bl = _metal_eval(n, view, w, scale)
            incoming += radiance * (f_cos_l / (pdf_l + pdf_bl))[:, None]
        # Summed sample by sample, in a fixed order: a reduction over a dimension may group the
        # terms differently for other batch sizes, and a scene must render the same in any batch.
        total = sum(incoming[j * count : (j + 1) * count] for j in range(metal_samples)) / metal_samples
        out[index] = per_ray(batch.albedo, sid[index], ids[index] + 2) * total
    if split_indirect:
        return out, indirect_out
    return out


_SHADOW_MARGIN = (1.05, 0.02)
"""Bounding spheres are grown by this factor and then by this many metres in `maybe_shadowed`
(on top of their own 1 % slack), so that the test also covers points a little away from the
tested ones (the other samples of a pixel)."""


def maybe_shadowed(batch: SceneBatch, sid: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(L + 1, N) bool: per light (lamps, then the sun), whether any object might block its
    samples at points p (N, 3).

    Conservative: ``False`` guarantees that every shadow ray `_light_samples` can trace from p
    to that light (to any point of a lamp, in any direction of the sun's disc) misses every
    object's (grown) bounding sphere. A segment from p to a lamp point q lies within the lamp's
    half diagonal h of the segment to the lamp's centre, at the same fraction s of the way: it
    can only meet a sphere (c, R) if the segment to the centre passes within R + s h of c. The
    sun's directions lie within its angular radius of the central one. No host sync.
    """
    slots = batch.prims.shape[1]
    lights = len(batch.lamp_side) + 1
    if not slots or not p.shape[0]:
        return torch.zeros(lights, p.shape[0], dtype=torch.bool, device=p.device)
    # Centre and bounding radius of every slot (columns cx, cy, cz and bound of the primitive table).
    bounds = per_ray(batch.prims[:, :, [0, 1, 2, 11]].reshape(batch.prims.shape[0], -1), sid).view(-1, slots, 4)
    radius = bounds[..., 3] * _SHADOW_MARGIN[0] + _SHADOW_MARGIN[1]  # (N, K)
    filled = bounds[..., 3] > 0  # empty slots (bound 0) never block
    oc = bounds[..., :3] - p[:, None]  # (N, K, 3)
    oc2 = dot(oc, oc)
    out = []
    centres = per_ray(batch.lamp_center, sid)  # (N, L, 3)
    for k, side in enumerate(batch.lamp_side):
        h = side / math.sqrt(2.0)
        v = centres[:, k] - p
        length = v.norm(dim=-1).clamp(min=1e-6)
        w = v / length[:, None]
        along = torch.einsum("nkc,nc->nk", oc, w)
        lateral2 = oc2 - along * along
        reach = radius + h * ((along + radius + h) / length[:, None]).clamp(0.0, 1.0)
        near = (lateral2 <= reach * reach) & (along + radius + h > 0) & (along - radius - h < length[:, None])
        out.append((near & filled).any(dim=1))
    w = per_ray(batch.sun_direction, sid)
    along = torch.einsum("nkc,nc->nk", oc, w)
    lateral2 = oc2 - along * along
    reach = radius + (along + radius).clamp(min=0) * (math.tan(SUN_ANGULAR_DIAMETER / 2) * 1.01)
    near = (lateral2 <= reach * reach) & (along + radius > 0)
    return torch.stack([*out, (near & filled).any(dim=1)])
