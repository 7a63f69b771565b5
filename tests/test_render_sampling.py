"""Random scene sampling: determinism, every CLEVR placement rule, i-CLEVR labels and prefixes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clevr_diffusion.render import (
    Camera,
    Scene,
    ground_directions,
    object_id_map,
    sample_scene,
    sample_scenes,
    scene_prefix,
    visible_pixel_counts,
)
from clevr_diffusion.render.sampling import object_counts
from clevr_diffusion.render.scene import CLEVR_DEFAULT_CAMERA, CLEVR_DEFAULT_LIGHTS, SIZE_SCALE

N_SCENES = 20


@pytest.fixture(scope="module")
def iclevr_scenes() -> list[Scene]:
    return sample_scenes(N_SCENES, seed=7, style="iclevr")


@pytest.fixture(scope="module")
def clevr_scenes() -> list[Scene]:
    return sample_scenes(N_SCENES, seed=7, style="clevr")


def _camera_ground_axes(scene: Scene) -> list[np.ndarray]:
    """Left and behind ground directions from the camera basis (independent of ground_directions)."""
    right, _, forward = Camera.from_scene(scene).basis().double().numpy()
    behind = forward[:2] / np.linalg.norm(forward[:2])
    left = -right[:2] / np.linalg.norm(right[:2])
    return [left, -left, -behind, behind]


def _check_rules(scene: Scene, min_visible: int = 200) -> None:
    for axis, centre in enumerate(CLEVR_DEFAULT_CAMERA):
        assert abs(scene.camera[axis] - centre) <= 0.5 + 1e-6
    for name, centre in CLEVR_DEFAULT_LIGHTS.items():
        pos = getattr(scene.lights, name)
        for axis in range(3):
            assert abs(pos[axis] - centre[axis]) <= 1.0 + 1e-6
    directions = _camera_ground_axes(scene)
    objs = scene.objects
    for obj in objs:
        assert -3 <= obj.position[0] <= 3 and -3 <= obj.position[1] <= 3
        assert obj.scale == SIZE_SCALE[obj.size]
        assert 0 <= obj.rotation < 360
    for i, a in enumerate(objs):
        for b in objs[:i]:
            delta = np.subtract(a.position, b.position)
            assert np.linalg.norm(delta) - a.scale - b.scale >= 0.25
            for d in directions:
                margin = float(delta @ d)
                # The sampler uses float64 directions, the basis is float32: allow a rounding-sized slack.
                assert not (1e-5 < margin < 0.4 - 1e-5), (margin, a, b)
    # Visibility: count again with the object-only id map.
    ids = object_id_map(scene, 320, 240, backdrop=False)
    counts = [int((ids == i).sum()) for i in range(len(objs))]
    assert counts == scene.extra["visible_pixels"]
    assert all(c >= min_visible for c in counts)
    # pixel_coords as in scenes.json: rounded projection of the centre, depth to 4 decimals.
    proj = Camera.from_scene(scene).project([o.center for o in objs]).tolist()
    for obj, (px, py, depth) in zip(objs, proj, strict=True):
        assert obj.pixel_coords == (round(px), round(py), round(depth, 4))
    # Survives the JSON format unchanged.
    assert Scene.from_dict(scene.to_dict()) == scene


def test_deterministic_and_independent_of_n() -> None:
    five = sample_scenes(5, seed=3, style="clevr")
    assert sample_scenes(5, seed=3, style="clevr") == five
    assert sample_scenes(2, seed=3, style="clevr") == five[:2]
    assert sample_scene(np.random.default_rng([3, 4]), style="clevr") == five[4]
    assert sample_scenes(2, seed=4, style="clevr") != five[:2]
    assert len({s.camera for s in five}) == 5


def test_iclevr_rules(iclevr_scenes: list[Scene]) -> None:
    for scene in iclevr_scenes:
        assert len(scene.objects) == 3
        assert scene.extra["kind"] == "iclevr"
        assert all(o.size == "large" and o.material == "rubber" for o in scene.objects)
        labels = [(o.color, o.shape) for o in scene.objects]
        assert len(set(labels)) == len(labels)
        _check_rules(scene)


@pytest.mark.slow
def test_clevr_rules(clevr_scenes: list[Scene]) -> None:
    counts = {len(s.objects) for s in clevr_scenes}
    assert counts <= {3, 4, 5, 6} and len(counts) >= 3
    assert {o.size for s in clevr_scenes for o in s.objects} == {"large", "small"}
    assert {o.material for s in clevr_scenes for o in s.objects} == {"rubber", "metal"}
    for scene in clevr_scenes:
        assert scene.extra["kind"] == "clevr"
        _check_rules(scene)


def test_ground_directions_match_camera_basis() -> None:
    scene = Scene(camera=(7.1, -6.2, 5.0))
    dirs = ground_directions(scene.camera)
    expected = _camera_ground_axes(scene)
    for name, want in zip(("left", "right", "front", "behind"), expected, strict=True):
        assert np.allclose(dirs[name], want, atol=1e-6)


def test_prefixes_keep_camera_and_lights(iclevr_scenes: list[Scene]) -> None:
    scene = iclevr_scenes[0]
    for k in range(4):
        prefix = scene_prefix(scene, k)
        assert prefix.camera == scene.camera and prefix.lights == scene.lights
        assert prefix.objects == scene.objects[:k]
        pixels = prefix.extra["visible_pixels"]
        assert pixels == visible_pixel_counts(prefix)
        # Fewer objects can only uncover pixels.
        assert all(p >= full for p, full in zip(pixels, scene.extra["visible_pixels"], strict=False))
        if k:
            assert prefix.extra["step"] == k - 1
    assert scene_prefix(scene, 2, recount=False).extra["visible_pixels"] == scene.extra["visible_pixels"][:2]
    with pytest.raises(ValueError, match="k must be"):
        scene_prefix(scene, 4)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), style=st.sampled_from(["iclevr", "clevr"]), n=st.integers(1, 4))
def test_property_small_seeds(seed: int, style: str, n: int) -> None:
    scene = sample_scene(np.random.default_rng(seed), style=style, num_objects=n)  # type: ignore[arg-type]
    assert len(scene.objects) == n
    _check_rules(scene)
    if style == "iclevr":
        assert len({(o.color, o.shape) for o in scene.objects}) == n


def test_num_objects_range() -> None:
    scenes = sample_scenes(6, seed=1, style="iclevr", num_objects=(1, 2))
    assert {len(s.objects) for s in scenes} <= {1, 2}


@pytest.mark.slow
def test_object_counts_without_sampling(clevr_scenes: list[Scene]) -> None:
    assert object_counts(N_SCENES, 7, style="clevr") == [len(s.objects) for s in clevr_scenes]
    assert object_counts(4, 7) == [3] * 4 and object_counts(2, 0, num_objects=5) == [5, 5]
    with pytest.raises(ValueError, match="unknown style"):
        object_counts(1, 0, style="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct"):
        object_counts(1, 0, num_objects=(1, 25))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"style": "iclevr", "num_objects": 25}, "distinct"),
        ({"style": "clevr", "num_objects": 40}, "fewer objects"),
        ({"style": "clevr", "num_objects": (5, 3)}, "swap"),
        ({"style": "clevr", "num_objects": 0}, ">= 1"),
        ({"style": "clevr", "min_visible_pixels": 10**6}, "smaller value"),
        ({"style": "nope"}, "unknown style"),
        ({"max_tries": 0}, "max_tries"),
    ],
)
def test_impossible_requests_fail_fast(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_scene(np.random.default_rng(0), **kwargs)


def test_gives_up_with_a_fix() -> None:
    # Feasible on paper but never met: 50,000 px for each of three large objects.
    with pytest.raises(ValueError, match="max_restarts"):
        sample_scene(np.random.default_rng(0), num_objects=3, min_visible_pixels=50_000, max_restarts=2)
    with pytest.raises(ValueError, match="n must be"):
        sample_scenes(-1, seed=0)


def test_visible_pixel_counts_cover_every_object_pixel() -> None:
    assert visible_pixel_counts(Scene()) == []
    scene = sample_scenes(1, seed=0)[0]
    ids = object_id_map(scene, backdrop=False)
    assert sum(visible_pixel_counts(scene)) == int((ids >= 0).sum())


@pytest.mark.slow
def test_sample_scenes_in_worker_processes_gives_the_same_scenes() -> None:
    assert sample_scenes(4, seed=3, workers=2) == sample_scenes(4, seed=3)
    with pytest.raises(ValueError, match="workers"):
        sample_scenes(2, seed=3, workers=0)
