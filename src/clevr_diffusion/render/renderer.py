"""Render CLEVR scenes to images: camera samples, shading, pixel filter and sRGB encoding.

The scenes of a call are traced together, as one flat batch of rays (see
`clevr_diffusion.render.scene_batch`), in chunks of at most about a million samples on the CPU
and sixteen million on an accelerator. What can be known from the scene descriptions (which
object slots are metal, which exist) is worked out on the host rather than read back from the
device, so a chunk costs a fixed number of host-device syncs whatever its scenes.

Each pixel gets ``supersample**2`` camera samples on a regular k x k sub-pixel grid. The image
is resolved from them with the reference's effective pixel filter rather than a box, so edges
are anti-aliased as Blender's are:

* 320 x 240 (``frame='native'`` at the Blender size): Cycles' Blackman-Harris filter of
  radius 1.5 px;
* smaller images: the Blackman-Harris filter at the 320 x 240 scale convolved with PIL's
  BILINEAR downscale kernel (a triangle of radius one output pixel), as ``png64`` is made.

Outline pixels, whose samples hit more than one surface, trace (2k)^2 more camera rays for
their coverage alone (`_outline_coverage`): how much of such a pixel each surface covers is
resolved on a grid twice as fine, which took most of the outline error off the object and
floor pixels.

Shading (`clevr_diffusion.render.shading`) is costly and only needed where it varies. By
default every sample is shaded except on open floor: pixels whose samples all hit the backdrop
and that no object can shadow from any light (a conservative test of the lights' shadow cones
against the objects' bounding spheres, `_open_floor`; about half the floor of an i-CLEVR
scene) are shaded at one sample and smoothed more widely, as a surface of their own, since
their light is smooth. Metal is always shaded at every sample, with eight reflection rays;
rubber objects twice per sample (`_RUBBER_PASSES`).
Each surface's shaded values are then averaged over neighbouring pixels with a Gaussian (a
narrow one on metal, whose reflections are sharp), within that surface only, and weighted by
the surface's filtered coverage of the pixel: noise is averaged away, outlines stay sharp.

Randomness for scene ``i`` of a call is drawn from CPU generators seeded with
``(seed, scene_offset + i)``, so a scene renders the same whether alone or in a batch.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .camera import REFERENCE_HEIGHT, REFERENCE_WIDTH, Frame, intrinsics
from .geometry import BACKDROP_ID, MISS_ID, cast_rays
from .randomization import DomainRandomization
from .scene import Scene
from .scene_batch import SceneBatch, per_ray, upload
from .shading import ShadingSamples, first_hit, linear_to_srgb, maybe_shadowed, shade

__all__ = ["RenderOutput", "render", "to_uint8"]

_MAX_SAMPLES_CPU = 2**20
"""Most camera samples traced together on the CPU: beyond a few hundred thousand, the
intermediate tensors stop fitting in the caches and throughput drops several-fold."""
_MAX_SAMPLES_ACCELERATOR = 2**24
"""Most camera samples traced together on a GPU (1,024 scenes at 64 x 64 with supersample 2):
it needs large batches to fill it and amortise its fixed per-kernel and per-sync costs; the
intermediates then take a few GB of device memory."""
_CHUNK_CPU = 64
"""Default ``chunk`` (scenes traced together) on the CPU."""
_CHUNK_ACCELERATOR = 4096
"""Default ``chunk`` on an accelerator: large enough that `_MAX_SAMPLES_ACCELERATOR` decides."""
_DIRECT_SIGMA = (0.8, 1.2)
_INDIRECT_SIGMA = (3.0, 1.5)
_METAL_SAMPLES = 8
"""Reflection rays per metal sample. Metal is encoded to sRGB per sample when downscaling, so its
noise darkens it; eight rather than four took 0.04 off the object-pixel MAE at 64 x 64 (seeds 0
and 1), and i-CLEVR scenes have no metal to pay for it."""
_OUTLINE_REFINE = 2
"""Outline pixels (samples on more than one surface) trace this many times more camera rays per
axis for their coverage alone (`_outline_coverage`); 1 turns it off."""
_RUBBER_PASSES = 2
"""Shading passes per sample on rubber objects (their noise dominated the object-pixel error)."""
_METAL_KIND = 2
"""Surface kind of metal objects in `_surface_groups` and `_resolve`."""
_LINEAR_SHARE = 0.2
"""When downscaling, the share of each pixel composited in linear light rather than in sRGB
(see `_resolve`): png64 averages 8-bit sRGB pixels of the 320 x 240 render, whose own outlines
were blended in linear light by Cycles' pixel filter, over about one of the five source pixels
that a 64 px pixel spans. Chosen on the 38 reference scenes (0.2 against 0 and 0.4: the same
object-pixel MAE, fewer floor pixels off)."""
_SMOOTHING_WIDTH_POWER = 0.5
# Gaussian widths on the backdrop and on rubber objects, in pixels at 64 px width: for the
# direct light with one shaded sample per pixel (divided by the square root of the shaded
# samples per pixel), and for the bounce light. Chosen on the 38 reference scenes at 64 x 64
# (supersample 2, every sample shaded; see docs/renderer.md for the measurements). Larger
# images scale them by the square root of the width: a blur that is constant in the scene
# (power 1) washes out the contact shadows at 320 x 240 (object-pixel MAE 3.05 levels there,
# 2.95 with power 0.5), one constant in pixels (power 0) leaves more noise.
_OPEN_FLOOR_SIGMA = (1.6, 16.0)
# Gaussian widths (direct, bounce) on open floor, shaded at one sample per pixel, in pixels at
# 64 px width (scaled like the others): its light is smooth, so a wide blur only removes noise.
# Chosen on the 38 reference scenes at 64 x 64 (docs/renderer.md).
# Metal is shaded at every sample and its look is its sharp reflections (black sky above the
# horizon, the floor below, lamp highlights a pixel or two wide at 320 x 240): it gets no blur
# beyond the pixel filter. A blur spreads a highlight's light, far above 1, over pixels that
# Blender clips at 1, which made metal spheres 11 levels too bright at 320 x 240.


@dataclass
class RenderOutput:
    """Rendered images.

    Attributes:
        images: ``(B, 3, H, W)`` float32 in [0, 1], sRGB-encoded.
        object_ids: ``(B, H, W)`` int64 at pixel centres: object index, -1 backdrop, -2 sky.
    """

    images: torch.Tensor
    object_ids: torch.Tensor


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images to uint8 by rounding (as Blender writes PNGs)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


_BH = (0.35875, 0.48829, 0.14128, 0.01168)


def _blackman_harris(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Blackman-Harris window over [-radius, radius] (unnormalised), zero outside."""
    phase = 2 * math.pi * (x / (2 * radius) + 0.5)
    w = _BH[0] - _BH[1] * torch.cos(phase) + _BH[2] * torch.cos(2 * phase) - _BH[3] * torch.cos(3 * phase)
    return torch.where(x.abs() < radius, w.clamp(min=0), torch.zeros_like(x))


def _pixel_filter(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The reference's effective pixel filter at offsets ``x`` (output pixels), unnormalised.

    At the Blender size (``scale`` = 320 / width <= 1) Cycles' Blackman-Harris filter of radius
    1.5 px; for smaller images that filter at the 320 px scale convolved with PIL's BILINEAR
    downscale kernel (a triangle of radius one output pixel).
    """
    if scale <= 1.0 + 1e-6:
        return _blackman_harris(x, 1.5 * scale)
    step = 1.0 / 256
    y = torch.arange(-1.0 - 1.5 / scale, 1.0 + 1.5 / scale + step, step, dtype=torch.float64)
    bh = _blackman_harris(y, 1.5 / scale)
    xs = x.to(torch.float64)
    tent = (1 - (xs[..., None] - y).abs()).clamp(min=0)
    return (tent * bh).sum(-1).to(torch.float32)


@functools.lru_cache(maxsize=64)
def _filter_matrix(size: int, k: int, scale: float, sigma: float = 0.0) -> torch.Tensor:
    """(size, k * size) CPU matrix: weights of the fine samples (k per pixel, at sub-pixel
    centres) in each output pixel under the pixel filter, rows summing to 1 (also at the
    border); with ``sigma`` > 0 followed by a Gaussian blur of that many output pixels."""
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    fine = (torch.arange(k * size, dtype=torch.float32) + 0.5) / k
    w = _pixel_filter(fine[None, :] - centres[:, None], scale)
    w = w / w.sum(dim=1, keepdim=True)
    if sigma > 0:
        x = torch.arange(size, dtype=torch.float32)
        w = torch.exp(-0.5 * ((x[:, None] - x[None, :]) / sigma) ** 2) @ w
    return w


Groups = list[list[tuple[int, torch.Tensor | slice]]]
"""Per surface (backdrop, object slot 0, 1, ...): ``(kind, scenes)`` pairs, see `_surface_groups`."""


def _surface_groups(scenes: Sequence[Scene], device: torch.device) -> Groups:
    """Which scenes `_resolve` smooths together, per surface, from the scene descriptions.

    Kind 0 is the backdrop (all scenes), 1 rubber objects, 2 metal ones (scenes differ in which
    slots are metal; a slot a scene lacks counts as rubber). Worked out on the host, so the
    device is never asked which slots are metal; the index lists go over in one copy. A group
    of every scene is a slice, not an index list: `_resolve` then works on views instead of
    copying every scene's samples for each object slot (all of them, in i-CLEVR scenes).
    """
    slots = max(len(s.objects) for s in scenes)
    lists = []
    for k in range(slots):
        metal = [k < len(s.objects) and s.objects[k].material == "metal" for s in scenes]
        for kind, want in ((1, False), (2, True)):
            chosen = [i for i, m in enumerate(metal) if m == want]
            if chosen:
                lists.append((k, kind, chosen))
    flat = torch.tensor([i for *_, chosen in lists for i in chosen], dtype=torch.int64)
    (flat,) = upload([flat], device)
    groups: Groups = [[(0, slice(None))]] + [[] for _ in range(slots)]
    for (k, kind, chosen), part in zip(lists, flat.split([len(c) for *_, c in lists]), strict=True):
        groups[k + 1].append((kind, slice(None) if len(chosen) == len(scenes) else part))
    return groups


def _resolve(
    terms: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
    groups: Groups,
    filters: tuple[tuple[torch.Tensor, torch.Tensor], ...],
    smoothing: tuple[tuple[tuple[torch.Tensor, torch.Tensor], ...], ...],
    downscaled: bool = False,
    coverage: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """sRGB output pixels from fine samples: pixel filter for coverage, per-surface smoothing for values.

    For each surface (the backdrop and every object; the sky is black), its coverage of each
    pixel is its fine-sample mask under the pixel filter, and its value there is the weighted
    average of its shaded samples under the pixel filter followed by a Gaussian (the noise of
    a few shaded samples is averaged over neighbouring pixels, never across an outline). The
    pixel is the coverage-weighted sum of those values, in linear light.

    ``downscaled`` follows how png64 is made instead: Blender's 320 x 240 pixels are encoded to
    sRGB (clipped at 1) and then averaged. So the surfaces are composited in sRGB (all but
    `_LINEAR_SHARE` of the pixel), and metal, whose highlights and black-sky reflections vary
    within a pixel, is encoded per sample before the pixel filter averages it. In linear light
    outlines against the bright floor and metal came out several levels too bright.

    Args:
        terms: (B, kH, kW, 3 * T) per-sample values of T terms (linear RGB).
        weights: (B, kH, kW) bool: the samples that carry values.
        ids: (B, kH, kW) surface id per sample (object slot, -1 backdrop, -2 sky).
        groups: `_surface_groups` of the B scenes.
        filters: ((rows (H, kH), cols (W, kW)),): the pixel filter.
        smoothing: Per term, per surface kind (backdrop, rubber objects, metal objects, ...):
            (rows, cols) matrices of the Gaussian times the pixel filter.
        downscaled: Composite as png64 is made (see above).
        coverage: Optional ``(cover_ids (B, mH, mW), (rows (H, mH), cols (W, mW)))``: surface
            ids on a finer grid and its pixel filter, for the coverage alone (the values still
            come from ``terms``); see `_outline_coverage`.

    Returns:
        (B, H, W, 3) sRGB in [0, 1].
    """
    ((rows, cols),) = filters
    cover_ids, (cover_rows, cover_cols) = (ids, (rows, cols)) if coverage is None else coverage
    linear = terms.new_zeros(terms.shape[0], 3, rows.shape[0], cols.shape[0])
    encoded = torch.zeros_like(linear) if downscaled else None
    w = weights.to(terms.dtype)
    planar = terms.permute(0, 3, 1, 2).contiguous()  # (B, 3T, kH, kW): one copy, not one per surface and term
    # A surface no sample hits adds exact zeros: cheaper than asking the device whether any does.
    for surface, surface_groups in enumerate(groups, start=-1):
        mask = (ids == surface).to(terms.dtype)
        cover = cover_rows @ (cover_ids == surface).to(terms.dtype) @ cover_cols.T  # (B, H, W)
        carried = (mask * w)[:, None]
        for kind, scenes in surface_groups:
            part = carried[scenes]
            values = planar[scenes]
            value = 0.0
            for term, per_kind in enumerate(smoothing):
                r, c = per_kind[kind]
                stack = torch.cat([values[:, 3 * term : 3 * term + 3] * part, part], dim=1)
                smooth = r @ stack @ c.T  # (b, 4, H, W)
                value = value + smooth[:, :3] / smooth[:, 3:].clamp(min=1e-6)
            weight = cover[scenes][:, None]
            linear[scenes] += value * weight
            if encoded is None:
                continue
            if kind == _METAL_KIND:
                sample = sum(values[:, 3 * term : 3 * term + 3] for term in range(len(smoothing)))
                smooth = rows @ torch.cat([linear_to_srgb(sample) * part, part], dim=1) @ cols.T
                encoded[scenes] += smooth[:, :3] / smooth[:, 3:].clamp(min=1e-6) * weight
            else:
                encoded[scenes] += linear_to_srgb(value) * weight
    out = linear_to_srgb(linear)
    if encoded is not None:
        out = _LINEAR_SHARE * out + (1 - _LINEAR_SHARE) * encoded
    return out.permute(0, 2, 3, 1)


def _scene_generator(seed: int, index: int, purpose: int = 0) -> torch.Generator:
    """CPU generator of scene stream ``index``: purpose 0 for the sampling noise, 1 for the
    domain randomisation (separate, so randomising does not change the noise)."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(index) * 7919 + 12345 + purpose * 2_654_435_761) % (2**63 - 1))
    return g


def _shaded_samples(gen: torch.Generator, height: int, width: int, k: int, per_pixel: int) -> torch.Tensor:
    """(kH, kW) bool: the fine samples shaded on diffuse surfaces, ``per_pixel`` random ones
    of each pixel's k x k."""
    samples = k * k
    if per_pixel >= samples:
        return torch.ones(k * height, k * width, dtype=torch.bool)
    picks = torch.rand(height * width, samples, generator=gen).argsort(dim=1)[:, :per_pixel]
    chosen = torch.zeros(height * width, samples, dtype=torch.bool).scatter_(1, picks, True)
    return chosen.view(height, width, k, k).permute(0, 2, 1, 3).reshape(k * height, k * width)


_SHADING_UNIFORMS = 23  # lamp 3 x 2, sun 2, bounce 2, lobe 3, bounce_lamp 3 x 2, bounce_sun 2, select 2


def _shading_samples(u: torch.Tensor) -> ShadingSamples:
    """`ShadingSamples` from (M, 23) uniforms."""
    m = u.shape[0]
    return ShadingSamples(
        lamp=u[:, 0:6].reshape(m, 3, 2).permute(1, 0, 2),
        sun=u[:, 6:8],
        bounce=u[:, 8:10],
        lobe=u[:, 10:13],
        bounce_lamp=u[:, 13:19].reshape(m, 3, 2).permute(1, 0, 2),
        bounce_sun=u[:, 19:21],
        select=u[:, 21:23],
    )


def _camera_directions(
    batch: SceneBatch, cols: torch.Tensor, rows: torch.Tensor, width: int, height: int, frame: Frame
) -> torch.Tensor:
    """Unit directions (B, ..., 3) through image positions ``cols, rows`` (B, ...) in pixels."""
    extra = cols.dim() - 1
    focal = batch.focal.view(-1, *([1] * extra))
    basis = batch.basis.view(-1, *([1] * extra), 3, 3)
    return _pinhole_directions(cols, rows, focal, basis, width, height, frame)


def _pinhole_directions(
    cols: torch.Tensor,
    rows: torch.Tensor,
    focal: torch.Tensor,
    basis: torch.Tensor,
    width: int,
    height: int,
    frame: Frame,
) -> torch.Tensor:
    """Unit directions (..., 3) through image positions ``cols, rows`` (...) in pixels, for
    cameras of focal scale ``focal`` (broadcast to ``cols``) and ``basis`` (..., 3, 3): right,
    up, forward."""
    fx, fy, cx, cy = intrinsics(width, height, frame)
    right, up, forward = basis.unbind(dim=-2)
    d = ((cols - cx) / (fx * focal))[..., None] * right + (-(rows - cy) / (fy * focal))[..., None] * up + forward
    return d / d.norm(dim=-1, keepdim=True)


def _outline_pixels(ids: torch.Tensor, height: int, width: int, k: int) -> torch.Tensor:
    """(B, H, W) bool: the pixels whose k x k samples (``ids`` (B, kH, kW)) hit more than one surface."""
    num = ids.shape[0]
    pixels = ids.view(num, height, k, width, k)
    return (pixels != pixels[:, :, :1, :, :1]).any(dim=4).any(dim=2)


def _outline_rays(
    batch: SceneBatch, pixels: torch.Tensor, width: int, height: int, frame: Frame, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene index (P m^2,) and unit direction (P m^2, 3) of m x m camera rays on a regular grid
    in each of the pixels ``pixels`` (P, 3): rows of (scene, row, column)."""
    count = pixels.shape[0]
    scene, row, col = pixels.unbind(dim=1)
    offsets = (torch.arange(m, dtype=torch.float32, device=pixels.device) + 0.5) / m
    cols = (col.to(torch.float32)[:, None, None] + offsets[None, None, :]).expand(count, m, m)
    rows = (row.to(torch.float32)[:, None, None] + offsets[None, :, None]).expand(count, m, m)
    sid = scene[:, None].expand(count, m * m).reshape(-1)
    return sid, _flat_camera_directions(batch, sid, cols.reshape(-1), rows.reshape(-1), width, height, frame)


def _outline_coverage(
    ids: torch.Tensor, pixels: torch.Tensor, traced: torch.Tensor, k: int, refine: int
) -> torch.Tensor:
    """(B, m H, m W) surface ids on a grid ``refine`` times finer than the samples' (m = k refine).

    Outline pixels (`_outline_pixels`; ``pixels`` (P, 3) rows of scene, row, column) trace
    m x m camera rays of their own (`_outline_rays`, ids only, no shading: ``traced`` (P m^2,)),
    so that the pixel filter resolves how much of them each surface covers more finely than
    k x k samples can; every other pixel repeats its one surface. ``ids`` (B, kH, kW): the
    samples' surface ids as given to `_resolve` (the open floor's own id never occurs in an
    outline pixel, all of whose samples would hit the backdrop).
    """
    fine = ids.repeat_interleave(refine, dim=1).repeat_interleave(refine, dim=2)
    num, fine_h, fine_w = fine.shape
    m = k * refine
    scene, row, col = pixels.unbind(dim=1)
    fine.view(num, fine_h // m, m, fine_w // m, m)[scene, row, :, col, :] = traced.view(-1, m, m)
    return fine


def _flat_camera_directions(
    batch: SceneBatch, sid: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor, width: int, height: int, frame: Frame
) -> torch.Tensor:
    """Unit directions (N, 3) through image positions ``cols, rows`` (N,) of scenes ``sid`` (N,)."""
    focal, basis = per_ray(batch.focal, sid), per_ray(batch.basis, sid)
    return _pinhole_directions(cols, rows, focal, basis, width, height, frame)


@functools.lru_cache(maxsize=64)
def _device_filter_matrix(size: int, k: int, scale: float, sigma: float, device: torch.device) -> torch.Tensor:
    """`_filter_matrix` on ``device``, copied there once rather than per chunk."""
    return _filter_matrix(size, k, scale, sigma).to(device)


@functools.lru_cache(maxsize=16)
def _representatives(height: int, width: int, k: int, num: int, device: torch.device) -> torch.Tensor:
    """(num * H * W,) int64: flat index, among num scenes' (kH, kW) samples, of the sample that
    stands for each pixel where only one is shaded; its sub-pixel position varies from pixel to
    pixel."""
    r = torch.arange(height)[:, None]
    c = torch.arange(width)[None, :]
    flat = (r * k + r % k) * (k * width) + c * k + (r + c) % k
    return (flat[None] + k * k * height * width * torch.arange(num)[:, None, None]).view(-1).to(device)


def _open_floor(
    batch: SceneBatch,
    num: int,
    height: int,
    width: int,
    k: int,
    o: torch.Tensor,
    d: torch.Tensor,
    t: torch.Tensor,
    ids: torch.Tensor,
) -> torch.Tensor:
    """(num * kH * kW,) bool: the samples of open-floor pixels, shaded once per pixel.

    A pixel is open floor when all its samples hit the backdrop and no object can shadow the
    representative points (`_representatives`) of it or of its eight neighbours from any light
    (`maybe_shadowed`, conservative): its light is smooth there (unshadowed direct light and the
    bounce), so one sample per pixel and a wider filter do. Every other pixel (outlines,
    objects, shadows and their penumbrae, the sky) has all its samples shaded. No host sync.
    """
    floor = (ids.view(num, height, k, width, k) == BACKDROP_ID).all(dim=4).all(dim=2)  # (num, H, W)
    rep = _representatives(height, width, k, num, ids.device)
    p = o[rep] + torch.where(floor.view(-1), t[rep], torch.zeros_like(t[rep]))[:, None] * d[rep]
    sid = _scene_of_ray(num, height * width, ids.device)
    shadowed = maybe_shadowed(batch, sid, p).any(dim=0).view(num, 1, height, width) & floor[:, None]
    shadowed = torch.nn.functional.max_pool2d(shadowed.float(), 3, stride=1, padding=1)[:, 0] > 0
    lit = floor & ~shadowed
    return lit[:, :, None, :, None].expand(num, height, k, width, k).reshape(-1)


_STRATIFIED_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (11, 12), (13, 14), (15, 16), (17, 18), (19, 20))
"""Columns of the shading uniforms (`_shading_samples`) that pick a point of a 2-D domain (a lamp
square, the sun's disc, a bounce or microfacet direction); the rest (10, 21, 22) pick one of a few
choices. `_shaded_uniforms` stratifies both within each pixel."""
_STRATIFIED_SINGLES = (10, 21, 22)


def _strata(gens: Sequence[torch.Generator], mask: torch.Tensor, height: int, width: int, k: int) -> torch.Tensor:
    """(M, domains) stratum (0 .. k * k - 1) of each chosen sample (``mask`` (B, kH * kW) bool,
    row-major) in each stratified domain: a random order of the k * k strata per pixel and
    domain, drawn by each scene from its own generator for all its pixels.

    For k <= 2 an order is one of at most 24, drawn by index (no sort, a byte per pixel and domain)."""
    domains = len(_STRATIFIED_PAIRS) + len(_STRATIFIED_SINGLES)
    pixels, samples = height * width, k * k
    scene, position = mask.nonzero().unbind(dim=1)
    y, x = position // (k * width), position % (k * width)
    row = scene * pixels + (y // k) * width + x // k  # pixel of each sample, over all scenes
    local = ((y % k) * k + x % k)[:, None]
    if k <= 2:
        perms = list(itertools.permutations(range(samples)))
        # Each order's strata packed into a byte, two bits per sample: the per-sample work is a
        # byte gather, a shift and a mask (int64 table lookups on every sample cost 3x more).
        packed = torch.tensor([sum(s << (2 * i) for i, s in enumerate(p)) for p in perms], dtype=torch.uint8)
        drawn = [(torch.rand(pixels, domains, generator=g) * len(perms)).to(torch.uint8) for g in gens]
        per_pixel = packed[torch.cat(drawn).long()]  # (B * pixels, domains)
        return (per_pixel.index_select(0, row) >> (2 * local).to(torch.uint8)) & 3
    keys = torch.cat([torch.rand(pixels, domains, samples, generator=g) for g in gens])
    orders = keys.argsort(dim=-1).view(-1)
    return orders[(row[:, None] * domains + torch.arange(domains)) * samples + local]


def _shaded_uniforms(
    gens: Sequence[torch.Generator], chosen: torch.Tensor, height: int, width: int, k: int
) -> torch.Tensor:
    """(M, 23) CPU uniforms for the M chosen samples, stratified within each pixel.

    Each scene draws, from its own generator, one row per chosen sample of its own, in order
    (``chosen`` (B, kH * kW) bool, row-major), then the orders of `_strata` (so it renders
    alike alone or in a batch). The k x k samples of a pixel split every 2-D domain into k x k
    strata and every 1-D one into k^2, a sample per stratum: the per-surface smoothing averages
    few samples, and stratified ones leave it less noise to remove (object-pixel MAE 2.35 ->
    2.14 at 64 x 64). ``chosen`` is on the CPU (`_host_masks` reads it from the device).
    """
    mask = chosen
    counts = mask.sum(dim=1).tolist()
    u = torch.empty(sum(counts), _SHADING_UNIFORMS)
    start = 0
    for count, g in zip(counts, gens, strict=True):  # drawn in place: no copy into one tensor
        torch.rand(count, _SHADING_UNIFORMS, generator=g, out=u[start : start + count])
        start += count
    stratum = _strata(gens, mask, height, width, k).to(torch.uint8)
    # The cell of each column (small integers), written column by column into one byte table.
    cells = torch.empty_like(u, dtype=torch.uint8)
    for j, (first, second) in enumerate(_STRATIFIED_PAIRS):
        cells[:, first] = stratum[:, j] % k
        cells[:, second] = stratum[:, j] // k
    for j, column in enumerate(_STRATIFIED_SINGLES, start=len(_STRATIFIED_PAIRS)):
        cells[:, column] = stratum[:, j]
    return u.add_(cells).div_(_stratum_counts(k))


@functools.lru_cache(maxsize=8)
def _stratum_counts(k: int) -> torch.Tensor:
    """For each of the 23 shading uniforms, the number of strata along it: k on each axis of a
    2-D domain, k^2 on a 1-D one."""
    return torch.tensor([float(k * k if c in _STRATIFIED_SINGLES else k) for c in range(_SHADING_UNIFORMS)])


def _host_masks(
    chosen: torch.Tensor, rubber: torch.Tensor, outline: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the host needs to know of the first hits, in one read of the device.

    Args:
        chosen: (B * kH * kW,) bool: the samples to shade.
        rubber: Like ``chosen``: those of them on rubber objects (shaded again).
        outline: (B, H, W) bool: the outline pixels (`_outline_pixels`).
        k: Samples per pixel along each axis.

    Returns:
        ``(mask, rubber_rows, outline_pixels)`` on the CPU: ``chosen`` as (B, kH * kW), the
        positions of the rubber samples among the chosen ones in order (R,), and the outline
        pixels as (P, 3) rows of scene, row, column.
    """
    num, height, width = outline.shape
    per_sample = outline[:, :, None, :, None].expand(num, height, k, width, k).reshape(-1)
    code = chosen.to(torch.uint8) | (rubber & chosen).to(torch.uint8) << 1 | per_sample.to(torch.uint8) << 2
    code = code.cpu()  # the one read
    flat = code.view(-1)
    mask = (flat & 1).bool()
    # Rubber samples' positions among the chosen ones: their ranks in the chosen mask.
    rubber_rows = (mask.cumsum(0) - 1)[((flat & 3) == 3).nonzero().squeeze(-1)]
    outline_pixels = ((code.view(num, height, k, width, k)[:, :, 0, :, 0] & 4) != 0).nonzero()
    return mask.view(num, -1), rubber_rows, outline_pixels


def _render_batch(
    scenes: Sequence[Scene],
    width: int,
    height: int,
    frame: Frame,
    k: int,
    device: torch.device,
    gens: list[torch.Generator],
    randomization: DomainRandomization | None,
    jitter_gens: list[torch.Generator],
    shaded_per_pixel: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    num = len(scenes)
    batch = SceneBatch.from_scenes(scenes, device, randomization, jitter_gens)
    if frame == "native":
        scale_x = scale_y = REFERENCE_WIDTH / width
    else:
        scale_x, scale_y = REFERENCE_WIDTH / width, REFERENCE_HEIGHT / height
    # Fine samples on a regular k x k grid in every pixel, resolved below with the pixel filter.
    fine_h, fine_w = k * height, k * width
    fine_cols = ((torch.arange(fine_w, dtype=torch.float32, device=device) + 0.5) / k).expand(num, fine_h, fine_w)
    fine_rows = ((torch.arange(fine_h, dtype=torch.float32, device=device) + 0.5) / k)[:, None].expand(
        num, fine_h, fine_w
    )
    d = _camera_directions(batch, fine_cols, fine_rows, width, height, frame).reshape(-1, 3)
    sid = _scene_of_ray(num, fine_h * fine_w, device)
    o = per_ray(batch.camera, sid)
    adaptive = shaded_per_pixel is None
    if not adaptive:
        shaded = torch.stack([_shaded_samples(g, height, width, k, shaded_per_pixel) for g in gens]).view(-1)
        (shaded,) = upload([shaded], device)
    groups = _surface_groups(scenes, device)
    # Known on the host: without metal every chosen sample is a diffuse hit (skips compactions).
    any_metal = any(obj.material == "metal" for scene in scenes for obj in scene.objects)
    t, n, ids = first_hit(batch, sid, o, d)
    resolve_ids = ids
    if adaptive:
        # Open floor far from any shadow is shaded at one sample per pixel and smoothed as a
        # surface of its own (surface id K, after the objects), more widely.
        lit = _open_floor(batch, num, height, width, k, o, d, t, ids)
        shaded = ~lit
        shaded[_representatives(height, width, k, num, device)] = True
        resolve_ids = torch.where(lit, len(groups) - 1, ids)
        groups = groups + [[(3, slice(None))]]

    # Shade some samples per pixel on diffuse surfaces, every sample on metal (its reflections
    # are sharp); each scene draws the uniforms for exactly its shaded samples, in order.
    hit = ids != MISS_ID
    metal = per_ray(batch.metal, sid, ids + 2) & hit
    diffuse = hit & ~metal
    chosen = (shaded & hit) | metal
    # Rubber objects are shaded `_RUBBER_PASSES` times per sample, the extra passes with the
    # sample's random numbers shifted (which keeps a pixel's samples stratified), in the same
    # call; the passes are averaged below.
    rubber = diffuse & (ids >= 0) & chosen if _RUBBER_PASSES > 1 else torch.zeros_like(chosen)
    if _OUTLINE_REFINE > 1:
        outline = _outline_pixels(resolve_ids.view(num, fine_h, fine_w), height, width, k)
    else:
        outline = torch.zeros(num, height, width, dtype=torch.bool, device=device)
    mask, rubber_rows, outline_pixels = _host_masks(chosen, rubber, outline, k)
    u, rubber_rows, outline_pixels = upload(
        [_shaded_uniforms(gens, mask, height, width, k), rubber_rows, outline_pixels], device
    )
    index = chosen.nonzero().squeeze(-1)
    every = adaptive or shaded_per_pixel >= k * k  # every shaded diffuse sample traces a bounce
    samples = _shading_samples(u)
    count = index.shape[0]
    extra = [samples.take(rubber_rows).shifted(j) for j in range(1, _RUBBER_PASSES)]
    rows = torch.cat([index, *[index[rubber_rows]] * len(extra)])
    bounce = None if every else shaded[rows]
    part, part_indirect = shade(
        batch, sid[rows], o[rows], d[rows], t[rows], n[rows], ids[rows], ShadingSamples.concat([samples, *extra]),
        bounce=bounce, split_indirect=True, metal_samples=_METAL_SAMPLES, all_diffuse=not any_metal,
    )  # fmt: skip
    shaded_terms = torch.cat([part, part_indirect], dim=1)
    if extra:
        passes = shaded_terms[rubber_rows]
        size = rubber_rows.shape[0]
        for j in range(len(extra)):  # summed pass by pass, in a fixed order
            passes = passes + shaded_terms[count + j * size : count + (j + 1) * size]
        shaded_terms = shaded_terms[:count].index_copy(0, rubber_rows, passes / _RUBBER_PASSES)
    terms = torch.zeros(d.shape[0], 6, device=device).index_copy_(0, index, shaded_terms)
    weights = (diffuse & shaded) | metal

    def matrices(sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        rows = _device_filter_matrix(height, k, scale_y, sigma, device)
        return rows, _device_filter_matrix(width, k, scale_x, sigma, device)

    def smoothing(sigma: tuple[float, ...]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        return tuple(matrices(s) for s in sigma)

    # More shaded samples per pixel need less smoothing for the same noise.
    spread = math.sqrt(k * k if adaptive else min(shaded_per_pixel, k * k))
    scale = (width / 64) ** _SMOOTHING_WIDTH_POWER
    direct_sigma = (_DIRECT_SIGMA[0] * scale / spread, _DIRECT_SIGMA[1] * scale / spread, 0.0)
    # Metal carries no bounce term (its reflection is in the direct one): any width will do.
    indirect_sigma = (_INDIRECT_SIGMA[0] * scale, _INDIRECT_SIGMA[1] * scale, 0.0)
    if adaptive:  # the open floor: one shaded sample per pixel
        direct_sigma += (_OPEN_FLOOR_SIGMA[0] * scale,)
        indirect_sigma += (_OPEN_FLOOR_SIGMA[1] * scale,)
    # Object ids at the pixel centres, cast together with the outline pixels' extra rays (one
    # cast: its host syncs are paid once).
    pc = torch.arange(width, dtype=torch.float32, device=device)[None, None, :] + 0.5
    pr = torch.arange(height, dtype=torch.float32, device=device)[None, :, None] + 0.5
    pc, pr = torch.broadcast_tensors(pc.expand(num, height, width), pr.expand(num, height, width))
    dc = _camera_directions(batch, pc, pr, width, height, frame).reshape(-1, 3)
    sc = _scene_of_ray(num, height * width, device)
    m = k * _OUTLINE_REFINE
    so, do = _outline_rays(batch, outline_pixels, width, height, frame, m)
    rays_sid = torch.cat([sc, so])
    _, _, cast_ids = cast_rays(batch.prims, rays_sid, per_ray(batch.camera, rays_sid), torch.cat([dc, do]))
    centre_ids, traced = cast_ids.split([sc.shape[0], so.shape[0]])
    coverage = None
    if _OUTLINE_REFINE > 1:
        cover_ids = _outline_coverage(resolve_ids.view(num, fine_h, fine_w), outline_pixels, traced, k, _OUTLINE_REFINE)
        cover_filter = (
            _device_filter_matrix(height, m, scale_y, 0.0, device),
            _device_filter_matrix(width, m, scale_x, 0.0, device),
        )
        coverage = (cover_ids, cover_filter)
    image = _resolve(
        terms.view(num, fine_h, fine_w, 6), weights.view(num, fine_h, fine_w),
        resolve_ids.view(num, fine_h, fine_w), groups, (matrices(0.0),),
        (smoothing(direct_sigma), smoothing(indirect_sigma)), downscaled=scale_x > 1, coverage=coverage,
    )  # fmt: skip
    images = image.permute(0, 3, 1, 2).contiguous()
    return images, centre_ids.view(num, height, width)


def _scene_of_ray(num: int, per_scene: int, device: torch.device) -> torch.Tensor:
    """(num * per_scene,) int64 scene index of each ray, scene by scene (no host sync, unlike
    ``repeat_interleave`` on some devices)."""
    return torch.arange(num, device=device)[:, None].expand(num, per_scene).reshape(-1)


def _chunk_size(chunk: int | None, device: torch.device, samples_per_scene: int) -> int:
    """Scenes traced together: at most ``chunk`` (default by device) and within the device's sample bound."""
    accelerator = device.type != "cpu"
    if chunk is None:
        chunk = _CHUNK_ACCELERATOR if accelerator else _CHUNK_CPU
    bound = _MAX_SAMPLES_ACCELERATOR if accelerator else _MAX_SAMPLES_CPU
    return max(1, min(chunk, bound // samples_per_scene))


def render(
    scenes: Scene | Sequence[Scene],
    width: int = 64,
    height: int = 64,
    frame: Frame = "square",
    supersample: int = 2,
    device: torch.device | str = "cpu",
    seed: int = 0,
    scene_offset: int | Sequence[int] = 0,
    randomization: DomainRandomization | None = None,
    chunk: int | None = None,
    shaded_per_pixel: int | None = None,
) -> RenderOutput:
    """Render scenes with direct light from the lamps and sun plus one diffuse bounce.

    All scenes of a chunk are traced together as one flat batch of rays.

    Args:
        scenes: One scene or a sequence of them.
        width: Image width W in pixels.
        height: Image height H in pixels.
        frame: ``'square'`` (the 4:3 view squashed onto the grid, like the 64 x 64 i-CLEVR
            images) or ``'native'`` (square pixels); see `clevr_diffusion.render.camera.intrinsics`.
        supersample: k >= 1; each pixel averages k x k filter-distributed samples.
        device: Device to render on.
        seed: Random seed of the rendering noise (and of the randomisation).
        scene_offset: Index of the first scene in a larger list (so chunks render like the
            whole), or one stream index per scene. Scene ``i`` uses the stream for
            ``(seed, scene_offset + i)`` or ``(seed, scene_offset[i])``.
        randomization: Optional `DomainRandomization`, drawn per scene from its stream.
        chunk: At most this many scenes are traced together (fewer when their samples would
            exceed the device's bound: about a million on the CPU, which keeps memory to a few
            hundred MB, sixteen million on an accelerator). Default: 64 on the CPU, the sample
            bound elsewhere. The images do not depend on it.
        shaded_per_pixel: How many of a pixel's ``supersample**2`` samples are shaded on
            diffuse surfaces (metal is always shaded at every sample); the others only count
            for coverage and the per-surface filter fills them in. Default (``None``): every
            sample, except one per pixel on open floor that no object can shadow (see the
            module docstring). Fewer is faster and noisier; ``supersample**2`` shades every
            sample everywhere.

    Returns:
        `RenderOutput` with ``images`` (B, 3, H, W) float32 sRGB in [0, 1] and ``object_ids``
        (B, H, W) int64.
    """
    if isinstance(scenes, Scene):
        scenes = [scenes]
    scenes = list(scenes)
    if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be an int >= 1, got {supersample!r}")
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if shaded_per_pixel is not None and (
        isinstance(shaded_per_pixel, bool) or not isinstance(shaded_per_pixel, int) or shaded_per_pixel < 1
    ):
        raise ValueError(f"shaded_per_pixel must be an int >= 1, got {shaded_per_pixel!r}")
    intrinsics(width, height, frame)  # validates size and frame
    if isinstance(scene_offset, int):
        streams = [scene_offset + i for i in range(len(scenes))]
    else:
        streams = [int(i) for i in scene_offset]
        if len(streams) != len(scenes):
            raise ValueError(f"scene_offset has {len(streams)} stream indices for {len(scenes)} scenes")
    device = torch.device(device)
    if not scenes:
        return RenderOutput(
            images=torch.zeros(0, 3, height, width, device=device),
            object_ids=torch.zeros(0, height, width, dtype=torch.int64, device=device),
        )
    chunk = _chunk_size(chunk, device, width * height * supersample * supersample)
    images, ids = [], []
    for start in range(0, len(scenes), chunk):
        part = scenes[start : start + chunk]
        part_streams = streams[start : start + chunk]
        gens = [_scene_generator(seed, i) for i in part_streams]
        jitter = [_scene_generator(seed, i, purpose=1) for i in part_streams]
        image, centre = _render_batch(
            part, width, height, frame, supersample, device, gens, randomization, jitter, shaded_per_pixel
        )
        images.append(image)
        ids.append(centre)
    return RenderOutput(images=torch.cat(images), object_ids=torch.cat(ids))
