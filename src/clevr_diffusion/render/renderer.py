"""Render CLEVR scenes to images: primary rays, pixel filter, shading and sRGB encoding.

Each pixel gets ``supersample**2`` stratified camera samples. Their sub-pixel offsets follow
the reference's effective pixel filter instead of a box:

* 320 x 240 (``frame='native'`` at the Blender size): Cycles' Blackman-Harris filter of
  radius 1.5 px;
* smaller images: the Blackman-Harris filter at the 320 x 240 scale convolved with PIL's
  BILINEAR downscale kernel (a triangle of radius one output pixel), as ``png64`` is made.

Shading (`clevr_diffusion.render.shading`) is evaluated per camera sample; only the backdrop's
one-bounce light, its noisiest and smoothest term, is filtered across neighbouring pixels (a
Gaussian of sigma 1.5 px at 64 px width, over backdrop samples only) before it is added.

Randomness for scene ``i`` of a call is drawn from a CPU generator seeded with
``(seed, scene_offset + i)``, so a scene renders the same whether alone or in a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .camera import REFERENCE_HEIGHT, REFERENCE_WIDTH, Camera, Frame, intrinsics
from .geometry import BACKDROP_ID, intersect_scene
from .scene import Scene
from .shading import ShadingSamples, first_hit, linear_to_srgb, scene_lamps, shade

__all__ = ["RenderOutput", "render", "to_uint8"]


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


def _bh_inverse_cdf(u: torch.Tensor, radius: float) -> torch.Tensor:
    """Blackman-Harris window over [-radius, radius]: offsets with that density from uniforms u."""
    x = torch.linspace(-1.0, 1.0, 513, dtype=torch.float64)
    phase = 2 * math.pi * (x / 2 + 0.5)
    w = _BH[0] - _BH[1] * torch.cos(phase) + _BH[2] * torch.cos(2 * phase) - _BH[3] * torch.cos(3 * phase)
    w = w.clamp(min=0)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((w[1:] + w[:-1]) / 2, 0)])
    cdf = cdf / cdf[-1]
    uu = u.to(torch.float64).contiguous()
    k = (torch.searchsorted(cdf, uu, right=True) - 1).clamp(0, len(cdf) - 2)
    frac = (uu - cdf[k]) / (cdf[k + 1] - cdf[k]).clamp(min=1e-12)
    return ((x[k] + frac * (x[k + 1] - x[k])) * radius).to(torch.float32)


def _tent_inverse_cdf(u: torch.Tensor) -> torch.Tensor:
    """Triangle density over [-1, 1]."""
    return torch.where(u < 0.5, -1 + (2 * u).clamp(min=0).sqrt(), 1 - (2 * (1 - u)).clamp(min=0).sqrt())


def _filter_offsets(u_main: torch.Tensor, u_extra: torch.Tensor, scale: float) -> torch.Tensor:
    """Sub-pixel offsets (output pixels) from the pixel centre for a downscale factor ``scale``."""
    if scale <= 1.0 + 1e-6:
        return _bh_inverse_cdf(u_main, 1.5 * scale)
    return _tent_inverse_cdf(u_main) + _bh_inverse_cdf(u_extra, 1.5 / scale)


def _filtered_backdrop_indirect(
    indirect: torch.Tensor, ids: torch.Tensor, height: int, width: int, samples: int
) -> torch.Tensor:
    """Per-pixel backdrop bounce light, smoothed across neighbouring backdrop samples.

    The one-bounce estimate on the backdrop is the noisiest term (one ray per sample, mostly
    black sky or the lit wall) but varies slowly over the image, so it is averaged with a
    Gaussian of sigma 1.5 px at 64 px width (scaled with the width) over backdrop samples only,
    then weighted by each pixel's fraction of backdrop samples. Returns (H, W, 3).
    """
    mask = (ids == BACKDROP_ID).reshape(height, width, samples).to(indirect.dtype)
    total = indirect.reshape(height, width, samples, 3).sum(dim=2)  # (H, W, 3)
    count = mask.sum(dim=2)  # (H, W)
    sigma = 1.5 * width / 64
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=indirect.dtype, device=indirect.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    stack = torch.cat([total.permute(2, 0, 1), count[None]], dim=0)[:, None]  # (4, 1, H, W)
    stack = torch.nn.functional.conv2d(stack, kernel.view(1, 1, 1, -1), padding=(0, radius))
    stack = torch.nn.functional.conv2d(stack, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    smooth = stack[:3, 0] / stack[3, 0].clamp(min=1e-6)  # (3, H, W) mean per backdrop sample
    return (smooth * (count / samples)).permute(1, 2, 0)


def _scene_generator(seed: int, index: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(index) * 7919 + 12345) % (2**63 - 1))
    return g


def _render_one(
    scene: Scene, width: int, height: int, frame: Frame, k: int, device: torch.device, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    fx, fy, cx, cy = intrinsics(width, height, frame)
    if frame == "native":
        scale_x = scale_y = REFERENCE_WIDTH / width
    else:
        scale_x, scale_y = REFERENCE_WIDTH / width, REFERENCE_HEIGHT / height
    samples = k * k
    count = height * width * samples
    # Stratified uniforms on the k x k grid, randomly jittered inside each cell.
    cell = torch.arange(k, dtype=torch.float32)
    grid_y, grid_x = torch.meshgrid(cell, cell, indexing="ij")
    grid = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1)  # (S, 2)
    u = (grid + torch.rand(height, width, samples, 2, generator=gen)) / k
    extra = torch.rand(height, width, samples, 2, generator=gen)
    off_x = _filter_offsets(u[..., 0], extra[..., 0], scale_x)
    off_y = _filter_offsets(u[..., 1], extra[..., 1], scale_y)
    cols = torch.arange(width, dtype=torch.float32)[None, :, None] + 0.5 + off_x
    rows = torch.arange(height, dtype=torch.float32)[:, None, None] + 0.5 + off_y
    camera = Camera.from_scene(scene, device=device)
    right, up, forward = camera.basis()
    cols, rows = cols.to(device), rows.to(device)
    d = ((cols - cx) / fx)[..., None] * right + (-(rows - cy) / fy)[..., None] * up + forward
    d = (d / d.norm(dim=-1, keepdim=True)).reshape(count, 3)
    o = torch.tensor(camera.position, dtype=torch.float32, device=device).expand(count, 3)

    # Lamp strata: each pixel's S samples use a permutation of the k x k lamp cells.
    def stratified(n_sets: int) -> torch.Tensor:
        perms = torch.stack([torch.randperm(samples, generator=gen) for _ in range(n_sets)])  # (L, S)
        cells = grid[perms]  # (L, S, 2)
        jit = torch.rand(n_sets, height * width, samples, 2, generator=gen)
        return ((cells[:, None] + jit) / k).reshape(n_sets, count, 2)

    shading_samples = ShadingSamples(
        lamp=stratified(3).to(device),
        sun=stratified(1)[0].to(device),
        bounce=stratified(1)[0].to(device),
        lobe=torch.rand(count, 3, generator=gen).to(device),
        bounce_lamp=torch.rand(3, count, 2, generator=gen).to(device),
        bounce_sun=torch.rand(count, 2, generator=gen).to(device),
    )
    t, n, ids = first_hit(scene, o, d)
    radiance, indirect = shade(
        scene, o, d, t, n, ids, shading_samples, lamps=scene_lamps(scene, device), split_backdrop_indirect=True
    )
    image = radiance.reshape(height, width, samples, 3).mean(dim=2)
    image = image + _filtered_backdrop_indirect(indirect, ids, height, width, samples)
    image = linear_to_srgb(image).permute(2, 0, 1).contiguous()

    # Object ids at the pixel centres.
    pc = torch.arange(width, dtype=torch.float32, device=device)[None, :] + 0.5
    pr = torch.arange(height, dtype=torch.float32, device=device)[:, None] + 0.5
    dc = ((pc - cx) / fx)[..., None] * right + (-(pr - cy) / fy)[..., None] * up + forward
    dc = dc / dc.norm(dim=-1, keepdim=True)
    oc = torch.tensor(camera.position, dtype=torch.float32, device=device).expand_as(dc)
    _, _, centre_ids = intersect_scene(scene, oc, dc, backdrop=True)
    return image, centre_ids


def render(
    scenes: Scene | Sequence[Scene],
    width: int = 64,
    height: int = 64,
    frame: Frame = "square",
    supersample: int = 4,
    device: torch.device | str = "cpu",
    seed: int = 0,
    scene_offset: int = 0,
) -> RenderOutput:
    """Render scenes with direct light from the lamps and sun plus one diffuse bounce.

    Args:
        scenes: One scene or a sequence of them.
        width: Image width W in pixels.
        height: Image height H in pixels.
        frame: ``'square'`` (the 4:3 view squashed onto the grid, like the 64 x 64 i-CLEVR
            images) or ``'native'`` (square pixels); see `clevr_diffusion.render.camera.intrinsics`.
        supersample: k >= 1; each pixel averages k x k filter-distributed samples.
        device: Device to render on.
        seed: Random seed; scene ``i`` uses the stream for ``(seed, scene_offset + i)``.
        scene_offset: Index of the first scene in a larger list (so chunks render like the whole).

    Returns:
        `RenderOutput` with ``images`` (B, 3, H, W) float32 sRGB in [0, 1] and ``object_ids``
        (B, H, W) int64.
    """
    if isinstance(scenes, Scene):
        scenes = [scenes]
    if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be an int >= 1, got {supersample!r}")
    intrinsics(width, height, frame)  # validates size and frame
    device = torch.device(device)
    images, ids = [], []
    for i, scene in enumerate(scenes):
        image, centre = _render_one(
            scene, width, height, frame, supersample, device, _scene_generator(seed, scene_offset + i)
        )
        images.append(image)
        ids.append(centre)
    if not images:
        return RenderOutput(
            images=torch.zeros(0, 3, height, width, device=device),
            object_ids=torch.zeros(0, height, width, dtype=torch.int64, device=device),
        )
    return RenderOutput(images=torch.stack(images), object_ids=torch.stack(ids))
