"""Scene JSON round trips, validation errors, CLEVR import and the camera projection."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from clevr_diffusion.render.camera import Camera, intrinsics
from clevr_diffusion.render.scene import (
    CLEVR_DEFAULT_CAMERA,
    COLOR_ALBEDO,
    Scene,
    SceneError,
    SceneObject,
    load_scenes,
    save_scenes,
)

SCENES_JSON = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "blender" / "scenes.json"


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    if not SCENES_JSON.is_file():
        pytest.skip(f"reference scenes not found at {SCENES_JSON}")
    return json.loads(SCENES_JSON.read_text())


def _entry() -> dict[str, Any]:
    return {
        "camera": [7.0, -6.0, 5.0],
        "lights": {"key": [6.0, -3.0, 4.0], "fill": [-4.0, -4.0, 3.0], "back": [-1.0, 2.0, 6.0]},
        "objects": [
            {
                "shape": "cube",
                "color": "red",
                "size": "large",
                "material": "rubber",
                "3d_coords": [1.0, -2.0, 0.7],
                "rotation": 30.0,
                "pixel_coords": [100, 120, 10.5],
            }
        ],
        "file": "png/000.png",
    }


def test_round_trip_every_reference_entry(entries: list[dict[str, Any]]) -> None:
    assert len(entries) == 38
    for entry in entries:
        scene = Scene.from_dict(entry)
        assert scene.to_dict() == entry
        # Same JSON text too: pixel coordinates stay ints, floats unchanged.
        assert json.dumps(scene.to_dict(), sort_keys=True) == json.dumps(entry, sort_keys=True)


def test_fields_read_as_documented(entries: list[dict[str, Any]]) -> None:
    scene = Scene.from_dict(entries[0])
    obj = scene.objects[0]
    assert scene.camera == tuple(entries[0]["camera"])
    assert scene.lights.key == tuple(entries[0]["lights"]["key"])
    assert obj.center == tuple(entries[0]["objects"][0]["3d_coords"])
    assert obj.scale == entries[0]["objects"][0]["3d_coords"][2]
    assert obj.albedo == COLOR_ALBEDO[obj.color]
    assert scene.extra["kind"] == "iclevr" and scene.extra["visible_pixels"] == [3283]


def test_save_and_load_file(tmp_path: Path, entries: list[dict[str, Any]]) -> None:
    scenes = [Scene.from_dict(e) for e in entries]
    path = save_scenes(scenes, tmp_path / "sub" / "scenes.json")
    assert load_scenes(path) == scenes
    assert json.loads(path.read_text()) == entries
    assert [p.name for p in path.parent.iterdir()] == ["scenes.json"]  # no temporary left


def test_color_albedo_is_linear_rgb_over_255() -> None:
    assert len(COLOR_ALBEDO) == 8
    assert COLOR_ALBEDO["blue"] == (42 / 255, 75 / 255, 215 / 255)
    assert COLOR_ALBEDO["yellow"] == (1.0, 238 / 255, 51 / 255)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("objects", 0, "shape"), "cone", "unknown shape 'cone'"),
        (("objects", 0, "color"), "pink", "unknown color 'pink'"),
        (("objects", 0, "size"), "huge", "unknown size"),
        (("objects", 0, "material"), "wood", "unknown material"),
        (("objects", 0, "3d_coords"), [1.0, 2.0], "3d_coords must be a list of 3 numbers"),
        (("objects", 0, "3d_coords"), [1.0, 2.0, 0.0], "must be > 0"),
        (("objects", 0, "rotation"), "30", "rotation must be a finite number"),
        (("objects", 0, "pixel_coords"), [1.5, 2, 3.0], "whole pixels"),
        (("camera",), [1.0, float("nan"), 2.0], r"camera\[1\] must be a finite number"),
        (("lights", "sun"), [0.0, 0.0, 1.0], "unknown lamp"),
        (("objects",), "cube", "objects must be a list"),
    ],
)
def test_bad_fields_raise_clear_errors(path: tuple[Any, ...], value: Any, message: str) -> None:
    entry = _entry()
    target = entry
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SceneError, match=message):
        Scene.from_dict(entry)


@pytest.mark.parametrize("key", ["shape", "color", "size", "material", "3d_coords", "rotation"])
def test_missing_object_field_is_named(key: str) -> None:
    entry = _entry()
    del entry["objects"][0][key]
    with pytest.raises(SceneError, match=rf"scene\.objects\[0\]: missing field '{key}'"):
        Scene.from_dict(entry)


@pytest.mark.parametrize("key", ["camera", "lights", "objects"])
def test_missing_scene_field_is_named(key: str) -> None:
    entry = _entry()
    del entry[key]
    with pytest.raises(SceneError, match=f"missing field '{key}'"):
        Scene.from_dict(entry)
    assert issubclass(SceneError, ValueError)


def test_load_scenes_names_the_bad_entry(tmp_path: Path) -> None:
    bad = _entry()
    bad["objects"][0]["color"] = "grey"
    path = tmp_path / "s.json"
    path.write_text(json.dumps([_entry(), bad]))
    with pytest.raises(SceneError, match=r"s\.json\[1\]\.objects\[0\]: unknown color 'grey'"):
        load_scenes(path)
    path.write_text(json.dumps(_entry()))
    with pytest.raises(SceneError, match="expected a JSON list"):
        load_scenes(path)


def test_load_scenes_names_a_corrupt_file_and_the_position(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    text = json.dumps([_entry()], indent=2)
    path.write_text(text[: len(text) // 2])  # cut off, as by an interrupted copy
    with pytest.raises(SceneError, match=r"s\.json is not valid JSON \(.* at line \d+, column \d+\); .*save_scenes"):
        load_scenes(path)
    path.write_bytes(b"[\xff]")
    with pytest.raises(SceneError, match=r"s\.json is not UTF-8 text"):
        load_scenes(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_scenes(tmp_path / "missing.json")


def test_direct_construction_is_validated() -> None:
    with pytest.raises(SceneError, match="unknown shape"):
        SceneObject("pyramid", "red", "large", "rubber", (0.0, 0.0), 0.7)
    with pytest.raises(SceneError, match="scale must be > 0"):
        SceneObject("cube", "red", "large", "rubber", (0.0, 0.0), -0.7)


def test_unknown_fields_survive_round_trip() -> None:
    entry = _entry()
    entry["objects"][0]["note"] = "kept"
    entry["anything"] = {"nested": [1, 2]}
    assert Scene.from_dict(copy.deepcopy(entry)).to_dict() == entry


def test_from_clevr_converts_radian_rotation_and_uses_default_views() -> None:
    clevr = {
        "image_index": 3,
        "image_filename": "CLEVR_val_000003.png",
        "objects": [
            {
                "shape": "sphere",
                "color": "cyan",
                "size": "small",
                "material": "metal",
                "3d_coords": [0.5, -1.0, 0.35],
                "rotation": 2.0,  # CLEVR's "degrees", applied by Blender as radians
                "pixel_coords": [150, 130, 10.0],
            },
            {
                "shape": "cube",
                "color": "gray",
                "size": "large",
                "material": "rubber",
                "3d_coords": [-1.0, 1.0, 0.7],
                "rotation": 300.0,
                "pixel_coords": [120, 90, 12.0],
            },
        ],
        "relationships": {"left": [[1], []]},
    }
    scene = Scene.from_clevr(clevr)
    assert scene.objects[0].rotation == pytest.approx(math.degrees(2.0))
    assert scene.objects[1].rotation == pytest.approx(math.degrees(300.0) % 360.0)
    assert 0.0 <= scene.objects[1].rotation < 360.0
    assert scene.camera == CLEVR_DEFAULT_CAMERA
    assert scene.lights.key == (6.447, -2.905, 4.258)
    assert scene.extra["image_index"] == 3 and "relationships" in scene.extra
    # What comes out is the reference format with true degrees.
    assert Scene.from_dict(scene.to_dict()) == scene


def test_projection_reproduces_every_pixel_coord(entries: list[dict[str, Any]]) -> None:
    count = 0
    for entry in entries:
        scene = Scene.from_dict(entry)
        projected = Camera.from_scene(scene).project([o.center for o in scene.objects])
        for obj, (px, py, depth) in zip(scene.objects, projected.tolist(), strict=True):
            assert obj.pixel_coords is not None
            want_x, want_y, want_depth = obj.pixel_coords
            # The file stores round(px), round(py) and depth to 4 decimals.
            assert (round(px), round(py)) == (want_x, want_y), (entry["file"], px, py)
            assert depth == pytest.approx(want_depth, abs=1e-3)
            count += 1
    assert count == 93


def test_camera_basis_and_centre_ray() -> None:
    camera = Camera((7.4811, -6.5076, 5.3437))
    right, up, forward = camera.basis()
    assert torch.allclose(camera.basis() @ camera.basis().T, torch.eye(3), atol=1e-6)
    assert right[2].abs() < 1e-7 and up[2] > 0  # no roll, up is up
    px, py, _ = camera.project([[0.0, 0.0, 0.0]])[0].tolist()
    assert (px, py) == pytest.approx((160.0, 120.0), abs=1e-4)
    with pytest.raises(ValueError, match="on the Z axis"):
        Camera((0.0, 0.0, 5.0))


def test_intrinsics_frames() -> None:
    assert intrinsics(320, 240) == (350.0, 350.0, 160.0, 120.0)
    assert intrinsics(64, 48) == (70.0, 70.0, 32.0, 24.0)
    fx, fy, _, _ = intrinsics(64, 64, "square")
    assert fx == 70.0 and fy == pytest.approx(93.333333)
    # Native frame keeps the horizontal field of view at any aspect.
    assert intrinsics(100, 100)[0] == intrinsics(100, 100)[1] == pytest.approx(109.375)
    with pytest.raises(ValueError, match="unknown frame"):
        intrinsics(64, 64, "wide")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        intrinsics(0, 64)


def test_rays_pixel_centres_and_field_of_view() -> None:
    camera = Camera((7.4811, -6.5076, 5.3437))
    origins, directions = camera.rays(320, 240)
    assert origins.shape == directions.shape == (240, 320, 1, 3)
    assert directions.dtype == torch.float32
    assert torch.allclose(directions.norm(dim=-1), torch.ones(()), atol=1e-6)
    # A point along each ray projects back onto its pixel centre.
    points = origins + 10.0 * directions
    pix = camera.project(points)[..., 0, :2]
    cols, rows = torch.meshgrid(torch.arange(320.0) + 0.5, torch.arange(240.0) + 0.5, indexing="xy")
    assert torch.allclose(pix[..., 0], cols, atol=2e-3) and torch.allclose(pix[..., 1], rows, atol=2e-3)
    # Left and right frame edges are 49.134 degrees apart.
    _, edge = camera.rays(2, 1)
    half = torch.rad2deg(torch.acos((edge[0, 0, 0] * edge[0, 1, 0]).sum())).item()
    full = 2 * math.degrees(math.atan(160 / 350))
    assert full == pytest.approx(49.134, abs=1e-3)
    assert half == pytest.approx(2 * math.degrees(math.atan(80 / 350)), abs=1e-3)


def test_square_frame_matches_squashed_native_frame() -> None:
    camera = Camera((7.0, -6.0, 5.5))
    _, square = camera.rays(64, 64, "square")
    # Square-frame pixel (i, j) looks where native 320x240 coordinate (5 (i+.5), 3.75 (j+.5)) does.
    pix = camera.project(torch.tensor(camera.position) + 5.0 * square[..., 0, :])
    cols, rows = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="xy")
    assert torch.allclose(pix[..., 0], cols * 5.0, atol=5e-3)
    assert torch.allclose(pix[..., 1], rows * 3.75, atol=5e-3)


def test_supersampling_layout_averages_back() -> None:
    camera = Camera((7.0, -6.0, 5.5))
    _, one = camera.rays(8, 6)
    _, many = camera.rays(8, 6, supersample=3)
    assert many.shape == (6, 8, 9, 3)
    # The centre sub-sample of a 3 x 3 grid is the pixel centre; the mean is close to it.
    assert torch.allclose(many[:, :, 4], one[:, :, 0], atol=1e-6)
    assert many.mean(dim=2).shape == (6, 8, 3)
    # Sub-sample order is sub-row major: sample 1 is right of sample 0, sample 3 below it.
    pix = camera.project(torch.tensor(camera.position) + many, 8, 6)
    assert (pix[..., 1, 0] > pix[..., 0, 0]).all() and (pix[..., 3, 1] > pix[..., 0, 1]).all()
    jittered_a = camera.rays(8, 6, supersample=2, jitter=torch.Generator().manual_seed(1))[1]
    jittered_b = camera.rays(8, 6, supersample=2, jitter=torch.Generator().manual_seed(1))[1]
    assert torch.equal(jittered_a, jittered_b)
    offsets = camera.project(torch.tensor(camera.position) + jittered_a, 8, 6)[..., :2]
    cell = torch.stack(torch.meshgrid(torch.arange(6.0), torch.arange(8.0), indexing="ij")[::-1], -1)[:, :, None]
    sub = (offsets - cell) * 2  # sub-cell coordinates in [0, 2)
    assert (sub > -1e-3).all() and (sub < 2 + 1e-3).all()
    assert (sub[..., 0, :] < 1 + 1e-3).all() and (sub[..., 3, :] > 1 - 1e-3).all()
    with pytest.raises(ValueError, match="supersample"):
        camera.rays(8, 6, supersample=0)
