"""Outline pixels' finer coverage and the extra shading passes on rubber objects."""

from __future__ import annotations

import pytest
import torch

from clevr_diffusion.render import Scene, SceneObject
from clevr_diffusion.render import renderer as renderer_module
from clevr_diffusion.render.geometry import cast_rays
from clevr_diffusion.render.renderer import (
    _flat_camera_directions,
    _outline_coverage,
    _outline_pixels,
    _outline_rays,
    render,
)
from clevr_diffusion.render.scene_batch import SceneBatch, per_ray


def _scenes() -> list[Scene]:
    return [
        Scene(objects=(SceneObject("sphere", "red", "large", "rubber", (0.0, 0.0), 0.7, 0.0),)),
        Scene(
            objects=(
                SceneObject("cube", "blue", "large", "rubber", (1.5, -0.5), 0.7, 30.0),
                SceneObject("cylinder", "yellow", "small", "metal", (-1.0, 1.5), 0.35, 0.0),
            )
        ),
    ]


def _ids(batch: SceneBatch, num: int, width: int, height: int, m: int) -> torch.Tensor:
    """(num, m H, m W) surface ids cast at every point of an m x m sub-pixel grid."""
    cols = ((torch.arange(m * width, dtype=torch.float32) + 0.5) / m).expand(num, m * height, m * width)
    rows = ((torch.arange(m * height, dtype=torch.float32) + 0.5) / m)[:, None].expand(num, m * height, m * width)
    sid = torch.arange(num)[:, None, None].expand(num, m * height, m * width).reshape(-1)
    d = _flat_camera_directions(batch, sid, cols.reshape(-1), rows.reshape(-1), width, height, "square")
    return cast_rays(batch.prims, sid, per_ray(batch.camera, sid), d)[2].view(num, m * height, m * width)


def test_outline_pixels_get_the_finer_grid_and_others_repeat_their_surface() -> None:
    scenes = _scenes()
    width, height, k, refine = 24, 16, 2, 2
    batch = SceneBatch.from_scenes(scenes, torch.device("cpu"), None, None)
    coarse = _ids(batch, len(scenes), width, height, k)
    outline = _outline_pixels(coarse, height, width, k)
    pixels = outline.nonzero()
    sid, d = _outline_rays(batch, pixels, width, height, "square", k * refine)
    traced = cast_rays(batch.prims, sid, per_ray(batch.camera, sid), d)[2]
    fine = _outline_coverage(coarse, pixels, traced, k, refine)
    exact = _ids(batch, len(scenes), width, height, k * refine)
    m = k * refine
    samples = coarse.view(len(scenes), height, k, width, k)
    assert torch.equal(outline, (samples != samples[:, :, :1, :, :1]).any(dim=4).any(dim=2))
    assert outline.any() and not outline.all()
    blocks = fine.view(len(scenes), height, m, width, m)
    exact_blocks = exact.view(len(scenes), height, m, width, m)
    # Outline pixels: every one of their m x m rays, as cast directly.
    assert torch.equal(blocks.permute(0, 1, 3, 2, 4)[outline], exact_blocks.permute(0, 1, 3, 2, 4)[outline])
    # Other pixels: their one surface, repeated.
    uniform = blocks.permute(0, 1, 3, 2, 4)[~outline].flatten(start_dim=1)
    assert torch.equal(uniform, uniform[:, :1].expand_as(uniform))
    assert torch.equal(uniform[:, 0], samples[:, :, 0, :, 0][~outline])
    # The finer grid finds coverage that the k x k samples miss somewhere.
    assert not torch.equal(fine, coarse.repeat_interleave(refine, dim=1).repeat_interleave(refine, dim=2))


def test_finer_outline_coverage_changes_only_pixels_near_outlines(monkeypatch: pytest.MonkeyPatch) -> None:
    scenes = _scenes()
    refined = render(scenes, width=32, height=32, seed=1)
    monkeypatch.setattr(renderer_module, "_OUTLINE_REFINE", 1)
    plain = render(scenes, width=32, height=32, seed=1)
    # Elsewhere only float rounding (coverage 1 summed over another grid): below 1e-4.
    changed = (refined.images - plain.images).abs().amax(dim=1) > 1e-4
    assert changed.any()
    ids = plain.object_ids
    # Within two pixels of a change of surface at the pixel centres (the filter's reach).
    edge = torch.zeros_like(ids, dtype=torch.bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[:, :-1] |= ids[:, 1:] != ids[:, :-1]
    edge[:, :, 1:] |= ids[:, :, 1:] != ids[:, :, :-1]
    edge[:, :, :-1] |= ids[:, :, 1:] != ids[:, :, :-1]
    near = torch.nn.functional.max_pool2d(edge[:, None].float(), 5, stride=1, padding=2)[:, 0] > 0
    assert not (changed & ~near).any()


def test_extra_rubber_passes_lower_the_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two noise seeds differ less on rubber objects with two shading passes than with one."""
    scene = [_scenes()[0]]

    def spread() -> float:
        a = render(scene, width=32, height=32, seed=1)
        b = render(scene, width=32, height=32, seed=2)
        on = a.object_ids[0] == 0
        return float((a.images[0] - b.images[0]).abs()[:, on].mean())

    two = spread()
    monkeypatch.setattr(renderer_module, "_RUBBER_PASSES", 1)
    one = spread()
    assert two < 0.85 * one, (two, one)
