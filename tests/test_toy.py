"""Tests for the toy i-CLEVR generator (clevr_diffusion.data.toy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clevr_diffusion.data import ClevrDataset, DatasetError, make_toy_dataset
from clevr_diffusion.labels import OBJECT_NAMES

SMALL = {"num_scenes": 6, "width": 64, "height": 48, "progress": False}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), seed=3, **SMALL)


def test_loads_as_clevr_dataset(toy: Path) -> None:
    ds = ClevrDataset(toy, image_size=32)
    labels = json.loads((toy / "train.json").read_text())
    assert len(ds) == len(labels) >= 6
    assert ds.files == list(labels)
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and label.shape == (24,)
    assert image.min() >= -1 and image.max() <= 1 and image.std() > 0.05  # not blank
    with Image.open(toy / ds.files[0]) as png:
        assert png.mode == "RGBA" and png.size == (64, 48)
        assert np.all(np.asarray(png)[..., 3] == 255)


def test_nested_frames(toy: Path) -> None:
    labels = json.loads((toy / "train.json").read_text())
    scenes: dict[int, list[list[str]]] = {}
    for name, names in labels.items():
        scene, frame = (int(part) for part in name.removesuffix(".png").split("_")[2:])
        assert len(scenes.setdefault(scene, [])) == frame  # frames 0..n-1 in order
        scenes[scene].append(names)
    assert sorted(scenes) == list(range(6))
    for frames in scenes.values():
        for k, names in enumerate(frames):
            assert len(names) == k + 1 and len(set(names)) == len(names)
            assert all(n in OBJECT_NAMES for n in names)
            if k:
                assert names[:k] == frames[k - 1]  # each frame adds one object


def test_frames_add_an_object_to_the_same_picture(toy: Path) -> None:
    labels = json.loads((toy / "train.json").read_text())
    scene = next(name[:18] for name, names in labels.items() if len(names) == 2)
    first = np.asarray(Image.open(toy / f"{scene}_0.png"), dtype=np.int16)
    second = np.asarray(Image.open(toy / f"{scene}_1.png"), dtype=np.int16)
    changed = np.abs(first - second).max(axis=2) > 0
    # The new object (and its shadow) changes a small part of the picture, the rest stays.
    assert 0.01 < changed.mean() < 0.3


def test_colours_are_clevr_colours(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path, seed=4, min_objects=1, max_objects=1, **SMALL)
    checked = 0
    for name, names in json.loads((root / "train.json").read_text()).items():
        if names[0].split()[0] in ("red", "blue", "yellow"):
            pixels = np.asarray(Image.open(root / name).convert("RGB"), dtype=np.float64)
            saturation = pixels.max(axis=2) - pixels.min(axis=2)
            object_pixels = pixels[saturation > 60]
            assert len(object_pixels) > 30  # a visible, colourful object
            channel = {"red": 0, "blue": 2, "yellow": 0}[names[0].split()[0]]
            assert np.median(object_pixels.argmax(axis=1)) == channel
            checked += 1
    assert checked >= 2  # the seed is chosen so that this test has something to check


def test_flat_mode_one_image_per_scene(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path, seed=0, nested=False, min_objects=2, **SMALL)
    labels = json.loads((root / "train.json").read_text())
    assert list(labels) == [f"CLEVR_train_{i:06d}_0.png" for i in range(6)]
    assert all(2 <= len(names) <= 3 for names in labels.values())


def test_deterministic_for_a_seed(tmp_path: Path, toy: Path) -> None:
    again = make_toy_dataset(tmp_path / "again", seed=3, **SMALL)
    other = make_toy_dataset(tmp_path / "other", seed=4, **SMALL)
    assert _snapshot(again) == _snapshot(toy)
    assert _snapshot(other) != _snapshot(toy)


def test_resumable(tmp_path: Path, toy: Path) -> None:
    root = make_toy_dataset(tmp_path / "resume", seed=3, **SMALL)
    (root / "train.json").unlink()
    victim = root / "CLEVR_train_000002_0.png"
    victim.unlink()
    kept = root / "CLEVR_train_000000_0.png"
    kept.write_bytes(b"marker")  # proves existing images are not redrawn
    make_toy_dataset(root, seed=3, **SMALL)
    assert kept.read_bytes() == b"marker"
    kept.write_bytes((toy / kept.name).read_bytes())
    assert _snapshot(root) == _snapshot(toy)


def test_refuses_to_mix_data_sets(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "a", seed=0, **SMALL)
    with pytest.raises(DatasetError, match="other settings.*seed"):
        make_toy_dataset(root, seed=1, **SMALL)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "train.json").write_text("{}")
    with pytest.raises(DatasetError, match="not made by make_toy_dataset"):
        make_toy_dataset(tmp_path / "real", **SMALL)


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="min_objects <= max_objects"):
        make_toy_dataset(tmp_path, min_objects=3, max_objects=2, **SMALL)
    with pytest.raises(DatasetError, match="at least 16 pixels"):
        make_toy_dataset(tmp_path, num_scenes=1, width=8, height=8, progress=False)
