"""make_dataset / make-dataset: a rendered i-CLEVR folder that ClevrDataset reads unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clevr_diffusion import ClevrDataset
from clevr_diffusion.cli import main
from clevr_diffusion.render import make_dataset

SMALL = dict(num_scenes=2, width=32, height=24, supersample=1, progress=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("rendered"), **SMALL)


def test_folder_layout_and_nested_labels(rendered: Path) -> None:
    labels = json.loads((rendered / "train.json").read_text())
    assert sorted(labels) == [f"CLEVR_train_{i:06d}_{k}.png" for i in range(2) for k in range(3)]
    for i in range(2):
        frames = [labels[f"CLEVR_train_{i:06d}_{k}.png"] for k in range(3)]
        assert [len(f) for f in frames] == [1, 2, 3]
        assert frames[1][:1] == frames[0] and frames[2][:2] == frames[1]
    image = Image.open(rendered / "CLEVR_train_000000_0.png")
    assert image.mode == "RGBA" and image.size == (32, 24)
    assert (np.array(image)[..., 3] == 255).all()
    scenes = json.loads((rendered / "scenes.json").read_text())
    assert [s["file"] for s in scenes] == sorted(labels)
    assert all(len(s["objects"]) == len(labels[s["file"]]) for s in scenes)


def test_clevr_dataset_reads_it(rendered: Path) -> None:
    dataset = ClevrDataset(rendered, image_size=16)
    image, label = dataset[5]
    assert len(dataset) == 6 and image.shape == (3, 16, 16) and label.sum() == 3


def test_resume_gives_the_same_bytes(rendered: Path, tmp_path: Path) -> None:
    again = make_dataset(tmp_path, **SMALL)
    (again / "CLEVR_train_000001_2.png").unlink()
    (again / "train.json").unlink()
    make_dataset(tmp_path, **SMALL)
    for name in json.loads((rendered / "train.json").read_text()):
        assert (again / name).read_bytes() == (rendered / name).read_bytes()


def test_a_finished_folder_is_returned_without_drawing_scenes(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clevr_diffusion.render import dataset_writer

    def no_drawing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished data set should not draw its scenes again")

    monkeypatch.setattr(dataset_writer, "sample_scene", no_drawing)
    before = (rendered / "train.json").stat().st_mtime_ns
    assert make_dataset(rendered, **SMALL) == rendered
    assert (rendered / "train.json").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="other settings"):  # the settings are still checked first
        make_dataset(rendered, **dict(SMALL, seed=1))


def test_other_settings_in_the_same_folder_fail(rendered: Path) -> None:
    with pytest.raises(ValueError, match="other settings"):
        make_dataset(rendered, **dict(SMALL, seed=1))


def test_command_line(tmp_path: Path) -> None:
    assert main(["make-dataset", str(tmp_path), "--scenes", "1", "--width", "32", "--height", "24",
                 "--supersample", "1", "--not-nested", "--max-objects", "2", "--min-objects", "2"]) == 0
    labels = json.loads((tmp_path / "train.json").read_text())
    assert list(labels) == ["CLEVR_train_000000_0.png"] and len(labels["CLEVR_train_000000_0.png"]) == 2
