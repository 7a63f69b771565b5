"""Tests of the shading pass: `clevr_diffusion.render.renderer.render` and its output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clevr_diffusion.render import Camera, Lights, Scene, SceneObject, load_scenes, object_id_map
from clevr_diffusion.render.fidelity import fidelity_scores
from clevr_diffusion.render.renderer import RenderOutput, render, to_uint8
from clevr_diffusion.render.shading import linear_to_srgb

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "blender"


def _sphere(
    x: float = 0.0, y: float = 0.0, scale: float = 0.7, material: str = "rubber", color: str = "red"
) -> SceneObject:
    size = "large" if scale >= 0.5 else "small"
    return SceneObject("sphere", color, size, material, (x, y), scale, 0.0)


def _scenes() -> list[Scene]:
    return [
        Scene(objects=(_sphere(),)),
        Scene(
            objects=(
                _sphere(-1.5, 1.0, 0.35, "metal", "cyan"),
                SceneObject("cube", "blue", "large", "rubber", (1.5, -0.5), 0.7, 30.0),
            )
        ),
        Scene(objects=(SceneObject("cylinder", "yellow", "large", "metal", (0.5, 1.5), 0.7, 0.0),)),
    ]


def test_output_shapes_ranges_dtypes() -> None:
    out = render(_scenes(), width=24, height=16, supersample=1)
    assert isinstance(out, RenderOutput)
    assert out.images.shape == (3, 3, 16, 24) and out.images.dtype == torch.float32
    assert out.object_ids.shape == (3, 16, 24) and out.object_ids.dtype == torch.int64
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert torch.isfinite(out.images).all()
    assert set(out.object_ids.unique().tolist()) <= {-2, -1, 0, 1}
    single = render(_scenes()[0], width=8, height=8, supersample=1)
    assert single.images.shape == (1, 3, 8, 8)
    u8 = to_uint8(out.images)
    assert u8.dtype == torch.uint8


def test_srgb_oetf() -> None:
    x = torch.tensor([-1.0, 0.0, 0.002, 0.0031308, 0.5, 1.0, 2.0])
    y = linear_to_srgb(x)
    assert y[0] == 0 and y[1] == 0 and y[-1] == pytest.approx(1.0) and y[-2] == pytest.approx(1.0)
    assert y[2] == pytest.approx(0.002 * 12.92)
    assert y[4] == pytest.approx(1.055 * 0.5 ** (1 / 2.4) - 0.055)


@pytest.mark.slow
def test_deterministic_and_batch_independent() -> None:
    scenes = _scenes()
    together = render(scenes, width=16, height=16, supersample=2, seed=3)
    again = render(scenes, width=16, height=16, supersample=2, seed=3)
    assert torch.equal(together.images, again.images)
    for i, scene in enumerate(scenes):
        alone = render(scene, width=16, height=16, supersample=2, seed=3, scene_offset=i)
        assert torch.equal(alone.images[0], together.images[i])
        assert torch.equal(alone.object_ids[0], together.object_ids[i])
    other = render(scenes, width=16, height=16, supersample=2, seed=4)
    assert not torch.equal(other.images, together.images)


@pytest.mark.parametrize("frame", ["square", "native"])
def test_object_ids_match_geometry(frame: str) -> None:
    scenes = _scenes()
    out = render(scenes, width=32, height=24, frame=frame, supersample=1)
    for i, scene in enumerate(scenes):
        assert torch.equal(out.object_ids[i], object_id_map(scene, 32, 24, frame=frame))


@pytest.mark.slow
def test_shadow_behind_object_away_from_key_light() -> None:
    # A clear synthetic case: the key lamp moved to the camera's left, so the shadow of a sphere
    # falls sideways in the image (not hidden behind the sphere). The floor point 0.55 m from the
    # sphere's centre away from the key lamp is in shadow; the point towards the lamp is open.
    obj = _sphere(0.0, 0.0, 0.35)
    lights = Lights(key=(-6.0, -3.0, 4.0))
    scene = Scene(lights=lights, objects=(obj,))
    empty = Scene(lights=lights)
    away = -np.array(lights.key[:2]) / np.linalg.norm(lights.key[:2])
    shadow_pt = (0.55 * away[0], 0.55 * away[1], 0.0)
    open_pt = (-0.9 * away[0], -0.9 * away[1], 0.0)
    size = 64
    pix = Camera.from_scene(scene).project([shadow_pt, open_pt], size, size, "square")
    (sx, sy), (ox, oy) = [(int(p[0]), int(p[1])) for p in pix]
    with_obj = render(scene, size, size, supersample=3)
    without = render(empty, size, size, supersample=3)
    assert with_obj.object_ids[0, sy, sx] == -1 and with_obj.object_ids[0, oy, ox] == -1
    shadow = with_obj.images[0, :, sy, sx].mean()
    lit = with_obj.images[0, :, oy, ox].mean()
    bare = without.images[0, :, sy, sx].mean()
    assert shadow < lit - 0.05
    assert shadow < bare - 0.03


@pytest.mark.slow
def test_metal_differs_from_rubber() -> None:
    rubber = Scene(objects=(_sphere(material="rubber", color="gray"),))
    metal = Scene(objects=(_sphere(material="metal", color="gray"),))
    a = render(rubber, 64, 64, supersample=2)
    b = render(metal, 64, 64, supersample=2)
    mask = a.object_ids[0] == 0
    assert mask.sum() > 20
    diff = (a.images[0] - b.images[0]).abs().mean(0)[mask]
    assert diff.mean() > 0.05
    # Metal reflects black sky on its upper half: much darker there than the lit rubber.
    assert b.images[0].mean(0)[mask].min() < a.images[0].mean(0)[mask].min()
    # Its reflections give it far more contrast than matte rubber.
    assert b.images[0].mean(0)[mask].std() > 2 * a.images[0].mean(0)[mask].std()


def test_split_indirect_sums_to_radiance_and_respects_the_bounce_mask() -> None:
    from clevr_diffusion.render.scene_batch import SceneBatch
    from clevr_diffusion.render.shading import ShadingSamples, first_hit, shade

    scene = _scenes()[1]
    origins, directions = Camera.from_scene(scene).rays(16, 16, "square")
    o, d = origins.reshape(-1, 3), directions.reshape(-1, 3)
    count = o.shape[0]
    g = torch.Generator().manual_seed(0)
    samples = ShadingSamples(
        lamp=torch.rand(3, count, 2, generator=g),
        sun=torch.rand(count, 2, generator=g),
        bounce=torch.rand(count, 2, generator=g),
        lobe=torch.rand(count, 3, generator=g),
        bounce_lamp=torch.rand(3, count, 2, generator=g),
        bounce_sun=torch.rand(count, 2, generator=g),
        select=torch.rand(count, 2, generator=g),
    )
    batch = SceneBatch.from_scenes([scene])
    sid = torch.zeros(count, dtype=torch.int64)
    t, n, ids = first_hit(batch, sid, o, d)
    whole = shade(batch, sid, o, d, t, n, ids, samples)
    part, indirect = shade(batch, sid, o, d, t, n, ids, samples, split_indirect=True)
    assert torch.allclose(part + indirect, whole, atol=1e-6)
    assert (indirect[ids == -2] == 0).all() and indirect[ids == -1].sum() > 0
    # Only the masked samples trace a bounce ray; the direct part does not change.
    mask = torch.arange(count) % 2 == 0
    part2, indirect2 = shade(batch, sid, o, d, t, n, ids, samples, bounce=mask, split_indirect=True)
    assert torch.equal(part2, part)
    assert (indirect2[~mask] == 0).all() and torch.allclose(indirect2[mask], indirect[mask])


@pytest.mark.slow
@pytest.mark.skipif(not (REFERENCE / "scenes.json").exists(), reason="reference renders not available")
def test_fidelity_regression_64() -> None:
    scenes = load_scenes(REFERENCE / "scenes.json")
    # One i-CLEVR rubber scene, one CLEVR metal-heavy and one rubber CLEVR scene.
    entries = json.loads((REFERENCE / "scenes.json").read_text())
    picks = [2]
    picks.append(
        next(i for i, e in enumerate(entries) if e["kind"] == "clevr" and e["objects"][0]["material"] == "metal")
    )
    picks.append(
        next(i for i, e in enumerate(entries) if e["kind"] == "clevr" and e["objects"][0]["material"] == "rubber")
    )
    out = to_uint8(render([scenes[i] for i in picks], 64, 64, "square", scene_offset=0).images)
    ours = out.permute(0, 2, 3, 1).numpy().astype(np.float64)
    for k, i in enumerate(picks):
        name = Path(scenes[i].file).name
        ref = np.asarray(Image.open(REFERENCE / "png64" / name).convert("RGB"), dtype=np.float64)
        mae = np.abs(ours[k] - ref).mean()
        # Regression guard set when these measured 2.09, 1.84 and 1.55 levels (0.2.0, seed 0,
        # + 0.5 levels margin); in benchmarks/render_fidelity.py (each scene with its own noise
        # stream) the renderer of issue 16 measures 0.86, 0.94 and 0.76.
        assert mae < BOUNDS_64[k], (name, mae)


BOUNDS_64 = (2.6, 2.35, 2.05)


@pytest.mark.skipif(not (REFERENCE / "scenes.json").exists(), reason="reference renders not available")
def test_metal_keeps_the_contrast_of_its_reflections() -> None:
    # 036.png: two large metal spheres. Blender's show the black sky above their horizon and
    # bright lamp highlights; blurring metal like rubber halves that contrast, and an evaluator
    # trained on such renders read Blender's metal spheres as cubes.
    scene = next(s for s in load_scenes(REFERENCE / "scenes.json") if s.file.endswith("036.png"))
    out = render([scene], 64, 64, "square")
    ref = torch.from_numpy(
        np.asarray(Image.open(REFERENCE / "png64" / "036.png").convert("RGB"), dtype=np.float32) / 255
    )
    ref = ref.permute(2, 0, 1)
    spheres = [k for k, o in enumerate(scene.objects) if o.material == "metal" and o.shape == "sphere"]
    assert len(spheres) == 2
    for k in spheres:
        mask = out.object_ids[0] == k
        ratio = out.images[0][:, mask].std(dim=1).mean() / ref[:, mask].std(dim=1).mean()
        assert 0.8 < ratio < 1.6, (k, ratio.item())


def test_shifted_shading_samples_stay_uniform_and_differ() -> None:
    from clevr_diffusion.render.renderer import _shading_samples

    u = torch.rand(4096, 23, generator=torch.Generator().manual_seed(0))
    base = _shading_samples(u)
    assert base.shifted(0) is base
    moved = base.shifted(3)
    for a, b in zip(
        (base.lamp, base.sun, base.lobe, base.select), (moved.lamp, moved.sun, moved.lobe, moved.select), strict=True
    ):
        assert float(b.min()) >= 0.0 and float(b.max()) < 1.0
        assert not torch.allclose(a, b)
        # A shift modulo 1 keeps the numbers uniform: the mean stays near 1/2.
        assert abs(float(b.mean()) - 0.5) < 0.02


@pytest.mark.slow
@pytest.mark.skipif(not (REFERENCE / "scenes.json").exists(), reason="reference renders not available")
def test_fidelity_on_every_reference_scene_at_64() -> None:
    """The measures of `benchmarks/render_fidelity.py` at 64 x 64, default settings.

    Measured (seed 0): MAE 0.70, SSIM 0.993 (worst 0.983), sharpness 0.975, object-pixel MAE
    1.84 (interiors 1.51), floor pixels more than 4 levels off 0.95 %; seeds 1 and 2 give an
    object-pixel MAE of 1.85 and 1.94. Before outline pixels traced their own coverage rays and
    rubber was shaded twice: object-pixel MAE 2.06, floor 1.15 %; before png64-style
    compositing, rubber's reflection of the surroundings and stratified samples: 2.67. The bounds
    hold the issue's targets and guard the rest a little above what was measured.
    """
    scenes = load_scenes(REFERENCE / "scenes.json")
    out = render(scenes, 64, 64, "square", seed=0)
    ours = to_uint8(out.images).permute(0, 2, 3, 1).numpy()
    refs = np.stack([np.asarray(Image.open(REFERENCE / "png64" / Path(s.file).name).convert("RGB")) for s in scenes])
    scores = fidelity_scores(ours, refs, out.object_ids)
    assert len(scores) == 38
    mean = {k: float(np.mean([getattr(x, k) for x in scores])) for k in scores[0].as_dict()}
    assert mean["mae"] <= 0.75, mean
    assert mean["ssim"] >= 0.99 and min(x.ssim for x in scores) >= 0.98, mean
    assert 0.95 <= mean["sharpness"] <= 1.05, mean
    assert mean["object_mae"] <= 1.9, mean
    assert mean["interior_mae"] <= 1.6, mean
    assert mean["floor_off"] <= 0.01, mean


@pytest.mark.slow
@pytest.mark.skipif(not (REFERENCE / "scenes.json").exists(), reason="reference renders not available")
def test_fidelity_on_every_reference_scene_at_320x240() -> None:
    """At 320 x 240 (native frame) against ``png/``: object-pixel MAE <= 3 levels (the issue's
    target), guarded at 2.05 (measured 1.91; 1.96 before the outline coverage rays and the second
    rubber pass, 2.92 before rubber's gloss reflected the floor and metal lost its blur), MAE
    <= 1.05 (measured 0.95)."""
    scenes = load_scenes(REFERENCE / "scenes.json")
    scores = []
    for start in range(0, len(scenes), 8):
        part = scenes[start : start + 8]
        out = render(part, 320, 240, "native", seed=0, scene_offset=start)
        ours = to_uint8(out.images).permute(0, 2, 3, 1).numpy()
        refs = np.stack([np.asarray(Image.open(REFERENCE / "png" / Path(s.file).name).convert("RGB")) for s in part])
        scores += fidelity_scores(ours, refs, out.object_ids)
    assert len(scores) == 38
    assert np.mean([x.object_mae for x in scores]) <= 2.05
    assert np.mean([x.mae for x in scores]) <= 1.05


def test_stream_per_scene_and_chunking_do_not_change_images() -> None:
    scenes = _scenes()
    whole = render(scenes, width=16, height=12, seed=5, scene_offset=[7, 3, 11][: len(scenes)])
    for i, stream in enumerate([7, 3, 11][: len(scenes)]):
        alone = render(scenes[i], width=16, height=12, seed=5, scene_offset=stream)
        assert torch.equal(alone.images[0], whole.images[i])
    chunked = render(scenes, width=16, height=12, seed=5, scene_offset=[7, 3, 11][: len(scenes)], chunk=1)
    assert torch.equal(chunked.images, whole.images)
    with pytest.raises(ValueError, match="stream indices"):
        render(scenes, width=16, height=12, scene_offset=[1])
    with pytest.raises(ValueError, match="chunk"):
        render(scenes, width=16, height=12, chunk=0)


def test_frame_for_keeps_4_to_3_sizes_native() -> None:
    from clevr_diffusion.render import frame_for

    assert [frame_for(w, h) for w, h in ((320, 240), (640, 480), (64, 48))] == ["native"] * 3
    assert [frame_for(w, h) for w, h in ((64, 64), (128, 64), (240, 320))] == ["square"] * 3


def test_open_floor_is_never_shadowed_and_shaded_once_per_pixel() -> None:
    """The default shades open-floor pixels once: `_open_floor` must only pick floor that no
    light sample's shadow ray can miss (conservative), and still a large share of the floor."""
    from clevr_diffusion.render.renderer import _camera_directions, _open_floor, _scene_of_ray
    from clevr_diffusion.render.scene_batch import SceneBatch, per_ray
    from clevr_diffusion.render.shading import _light_samples, first_hit

    scenes = _scenes()
    num, size, k = len(scenes), 32, 2
    batch = SceneBatch.from_scenes(scenes)
    fine = (torch.arange(k * size, dtype=torch.float32) + 0.5) / k
    d = _camera_directions(
        batch, fine.expand(num, k * size, -1), fine[:, None].expand(num, -1, k * size), size, size, "square"
    )
    d = d.reshape(-1, 3)
    sid = _scene_of_ray(num, (k * size) ** 2, torch.device("cpu"))
    o = per_ray(batch.camera, sid)
    t, n, ids = first_hit(batch, sid, o, d)
    lit = _open_floor(batch, num, size, size, k, o, d, t, ids)
    floor = ids == -1
    assert not (lit & ~floor).any()
    assert 0.3 < lit.sum() / floor.sum() < 0.95
    index = lit.nonzero().squeeze(-1)
    p = o[index] + t[index, None] * d[index]
    g = torch.Generator().manual_seed(0)
    for _ in range(4):  # random points on every lamp and in the sun's disc
        lamp_u, sun_u = torch.rand(3, index.numel(), 2, generator=g), torch.rand(index.numel(), 2, generator=g)
        shadowed = _light_samples(batch, sid[index], p, n[index], lamp_u, sun_u, shadows=True)
        open_ = _light_samples(batch, sid[index], p, n[index], lamp_u, sun_u, shadows=False)
        for (_, _, a, _, _), (_, _, b, _, _) in zip(shadowed, open_, strict=True):
            assert torch.equal(a, b)


def test_explicit_shaded_per_pixel_still_shades_every_sample() -> None:
    scenes = _scenes()[:1]
    every = render(scenes, 16, 16, shaded_per_pixel=4)
    default = render(scenes, 16, 16)
    assert torch.equal(every.object_ids, default.object_ids)
    assert not torch.equal(every.images, default.images)
    assert (every.images - default.images).abs().mean() < 0.02


def test_metal_free_chunks_render_as_in_a_chunk_with_metal() -> None:
    # A chunk without metal skips the diffuse/metal compactions (`shade(all_diffuse=True)`);
    # its scenes must come out exactly as beside a metal scene.
    rubber = [
        Scene(objects=(_sphere(),)),
        Scene(objects=(SceneObject("cube", "blue", "large", "rubber", (1.0, -0.5), 0.7, 30.0),)),
    ]
    metal = Scene(objects=(_sphere(-1.0, 1.0, 0.5, "metal", "cyan"),))
    alone = render(rubber, 24, 24, seed=3)
    mixed = render([*rubber, metal], 24, 24, seed=3)
    assert torch.equal(alone.images, mixed.images[:2])


def _one_pixel_resolve(ids: torch.Tensor, values: torch.Tensor, kind: int, downscaled: bool) -> torch.Tensor:
    """`_resolve` of one output pixel from its 2 x 2 samples under a box filter, no smoothing."""
    from clevr_diffusion.render.renderer import _resolve

    box = torch.full((1, 2), 0.5)
    smoothing = ((box, box),) * 3
    groups = [[(0, slice(None))], [(kind, torch.tensor([0]))]]
    weights = torch.ones(1, 2, 2, dtype=torch.bool)
    return _resolve(
        values.view(1, 2, 2, 3), weights, ids.view(1, 2, 2), groups, ((box, box),), (smoothing,), downscaled
    )[0, 0, 0]


def test_downscaled_pixels_are_composited_in_srgb_as_png64() -> None:
    from clevr_diffusion.render.renderer import _LINEAR_SHARE

    # Left half a black object, right half white floor: png64 averages the encoded pixels.
    ids = torch.tensor([[0, -1], [0, -1]])
    values = torch.tensor([[0.0, 1.0], [0.0, 1.0]])[..., None].expand(2, 2, 3)
    linear = _one_pixel_resolve(ids, values, 1, downscaled=False)
    assert torch.allclose(linear, linear_to_srgb(torch.tensor(0.5)).expand(3), atol=1e-5)
    encoded = _one_pixel_resolve(ids, values, 1, downscaled=True)
    expected = _LINEAR_SHARE * linear_to_srgb(torch.tensor(0.5)) + (1 - _LINEAR_SHARE) * 0.5
    assert torch.allclose(encoded, expected.expand(3), atol=1e-5)


def test_downscaled_metal_clips_each_sample_before_the_average() -> None:
    from clevr_diffusion.render.renderer import _LINEAR_SHARE, _METAL_KIND

    # A metal pixel: half black sky reflection, half a lamp highlight four times above white.
    ids = torch.zeros(2, 2, dtype=torch.int64)
    values = torch.tensor([[0.0, 0.0], [4.0, 4.0]])[..., None].expand(2, 2, 3)
    assert torch.allclose(_one_pixel_resolve(ids, values, _METAL_KIND, downscaled=False), torch.ones(3))
    encoded = _one_pixel_resolve(ids, values, _METAL_KIND, downscaled=True)
    assert torch.allclose(encoded, torch.full((3,), _LINEAR_SHARE * 1.0 + (1 - _LINEAR_SHARE) * 0.5), atol=1e-5)


def test_shading_uniforms_are_stratified_within_each_pixel() -> None:
    from clevr_diffusion.render.renderer import _STRATIFIED_PAIRS, _STRATIFIED_SINGLES, _shaded_uniforms

    k, height, width = 2, 3, 4
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    chosen = torch.ones(2, k * height * k * width, dtype=torch.bool)
    u = _shaded_uniforms(gens, chosen, height, width, k).view(2, height, k, width, k, -1)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    per_pixel = u.permute(0, 1, 3, 2, 4, 5).reshape(2 * height * width, k * k, -1)  # the k x k samples of each pixel
    for a, b in _STRATIFIED_PAIRS:
        cell = (per_pixel[..., a] * k).floor() * k + (per_pixel[..., b] * k).floor()
        assert (cell.sort(dim=1).values == torch.arange(k * k)).all()
    for a in _STRATIFIED_SINGLES:
        assert ((per_pixel[..., a] * k * k).floor().sort(dim=1).values == torch.arange(k * k)).all()
    # One row per chosen sample, and a scene's numbers do not depend on its batch.
    pick = torch.rand(2, chosen.shape[1], generator=torch.Generator().manual_seed(3)) < 0.5
    some = _shaded_uniforms([torch.Generator().manual_seed(s) for s in (1, 2)], pick, height, width, k)
    assert some.shape == (int(pick.sum()), u.shape[-1])
    alone = _shaded_uniforms([torch.Generator().manual_seed(2)], pick[1:], height, width, k)
    assert torch.equal(alone, some[int(pick[0].sum()) :])
