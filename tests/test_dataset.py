"""Tests for ClevrDataset on tiny hand-made i-CLEVR folders."""

from __future__ import annotations

import importlib.resources
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clevr_diffusion.data import ClevrDataset, DatasetError
from clevr_diffusion.labels import Vocabulary

LABELS = {
    "CLEVR_train_000002_0.png": ["yellow sphere"],
    "CLEVR_train_000000_0.png": ["red cube"],
    "CLEVR_train_000000_1.png": ["red cube", "Blue Cylinder"],
    "CLEVR_train_000001_0.png": ["gray sphere", "green cube", "cyan cylinder"],
}
COLOURS = {  # one solid RGBA colour per image, so items can be told apart
    "CLEVR_train_000002_0.png": (255, 0, 0, 255),
    "CLEVR_train_000000_0.png": (0, 255, 0, 255),
    "CLEVR_train_000000_1.png": (0, 0, 255, 255),
    "CLEVR_train_000001_0.png": (255, 255, 255, 255),
}


def _png(path: Path, rgba: tuple[int, int, int, int], size: tuple[int, int] = (32, 24)) -> None:
    Image.new("RGBA", size, rgba).save(path, format="PNG")


def _solid(name: str, height: int, width: int) -> torch.Tensor:
    """The expected item for one of the solid-colour images, (3, H, W) in [-1, 1]."""
    colour = torch.tensor(COLOURS[name][:3], dtype=torch.float32) / 127.5 - 1.0
    return colour[:, None, None].expand(3, height, width)


def _objects_json() -> bytes:
    bundled = importlib.resources.files("clevr_diffusion") / "resources" / "iclevr"
    return (bundled / "objects.json").read_bytes()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A 4-image i-CLEVR folder with two extra images that train.json does not list."""
    root = tmp_path / "iclevr"
    root.mkdir()
    for name, rgba in COLOURS.items():
        _png(root / name, rgba)
    _png(root / "CLEVR_train_009999_0.png", (1, 2, 3, 255))
    _png(root / "unlisted.png", (9, 9, 9, 255))
    (root / "train.json").write_text(json.dumps(LABELS))
    (root / "objects.json").write_bytes(_objects_json())
    return root


def test_reads_listed_images_in_order(folder: Path) -> None:
    ds = ClevrDataset(folder, image_size=16)
    assert len(ds) == 4
    assert ds.files == list(LABELS)
    assert ds.label_lists[2] == ["red cube", "blue cylinder"]  # normalised
    assert ds.skipped == []
    for i, name in enumerate(LABELS):
        image, label = ds[i]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        assert label.shape == (24,) and label.dtype == torch.float32
        assert Vocabulary.default().decode(label) == sorted(
            ds.label_lists[i], key=Vocabulary.default().names.index
        )
        assert torch.equal(image, _solid(name, 16, 16))
    assert torch.equal(ds[0][0][:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.equal(ds.labels, torch.stack([ds[i][1] for i in range(4)]))
    assert ds[-1][0][0, 0, 0] == 1.0  # negative index: the white image
    with pytest.raises(IndexError):
        ds[4]
    assert "images=4" in repr(ds)


def test_value_range_and_resize_of_a_gradient(folder: Path) -> None:
    gradient = np.zeros((24, 32, 4), dtype=np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 32, dtype=np.uint8)[None, :]
    gradient[..., 3] = 255
    Image.fromarray(gradient).save(folder / "CLEVR_train_000000_0.png")
    ds = ClevrDataset(folder, image_size=(12, 20))
    image, _ = ds[1]
    assert image.shape == (3, 12, 20)
    assert image.min() >= -1.0 and image.max() <= 1.0
    # Bilinear resize keeps a left-to-right ramp increasing.
    assert torch.all(image[0, 0, 1:] >= image[0, 0, :-1]) and image[0, 0, -1] > image[0, 0, 0]
    # Same pixels as PIL's own bilinear resize of the RGB image.
    reference = Image.fromarray(gradient).convert("RGB").resize((20, 12), Image.BILINEAR)
    expected = torch.from_numpy(np.array(reference)).permute(2, 0, 1).float() / 127.5 - 1.0
    assert torch.equal(image, expected)


@pytest.mark.parametrize("big_endian", [False, True])
def test_16_bit_grayscale_png_is_scaled_to_8_bits(folder: Path, big_endian: bool) -> None:
    """A 16-bit grayscale PNG (Pillow mode I;16) reads as its gray levels, not as all white."""
    levels = np.linspace(0, 65535, 32).round().astype(np.uint16)
    wide = np.broadcast_to(levels, (24, 32))
    image = Image.fromarray(np.ascontiguousarray(wide))
    if big_endian:  # the same pixels in Pillow's other 16-bit layout
        image = Image.frombytes("I;16B", (32, 24), np.ascontiguousarray(wide).astype(">u2").tobytes())
    image.save(folder / "CLEVR_train_000000_0.png")
    with Image.open(folder / "CLEVR_train_000000_0.png") as reread:
        assert reread.mode.startswith("I")  # really a 16-bit file
    ds = ClevrDataset(folder, image_size=(24, 32))
    item, _ = ds[1]
    expected = torch.from_numpy(np.rint(levels / 257.0)).float() / 127.5 - 1.0
    for channel in item:
        assert torch.equal(channel, expected.expand(24, 32))


def test_images_subfolder_layout(folder: Path) -> None:
    (folder / "images").mkdir()
    for name in list(LABELS)[1:]:
        (folder / name).rename(folder / "images" / name)
    ds = ClevrDataset(folder, image_size=8)
    assert len(ds) == 4
    assert torch.equal(ds[3][0][:, 0, 0], torch.ones(3))


def test_preload_matches_lazy_loading(folder: Path) -> None:
    lazy = ClevrDataset(folder, image_size=(6, 10))
    eager = ClevrDataset(folder, image_size=(6, 10), preload=True)
    for i in range(len(lazy)):
        assert torch.equal(lazy[i][0], eager[i][0]) and torch.equal(lazy[i][1], eager[i][1])
    # Served from memory: deleting the files no longer matters.
    for name in LABELS:
        (folder / name).unlink()
    assert torch.equal(eager[2][0], _solid(list(LABELS)[2], 6, 10))


def test_gather_stacks_the_items_and_needs_preloading(folder: Path) -> None:
    lazy = ClevrDataset(folder, image_size=(6, 10))
    assert not lazy.can_gather
    with pytest.raises(RuntimeError, match="preload=True"):
        lazy.gather(torch.tensor([0]))
    lazy.make_resident("cpu")  # decodes now
    assert lazy.can_gather
    images, labels = lazy.gather(torch.tensor([3, 0, 3]))
    assert images.shape == (3, 3, 6, 10) and labels.shape == (3, 24)
    for row, index in enumerate([3, 0, 3]):
        item = ClevrDataset(folder, image_size=(6, 10))[index]
        assert torch.equal(images[row], item[0]) and torch.equal(labels[row], item[1])


def test_pickle_round_trip(folder: Path) -> None:
    ds = ClevrDataset(folder, image_size=8)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.files == ds.files and torch.equal(copy[1][0], ds[1][0])


def test_missing_train_json(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"train.json not found.*i-CLEVR folder holds"):
        ClevrDataset(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        ClevrDataset(tmp_path / "nowhere")


def test_missing_image_is_named(folder: Path) -> None:
    (folder / "CLEVR_train_000000_1.png").unlink()
    pattern = r"1 of 4 images.*CLEVR_train_000000_1.png: missing.*skip_broken=True"
    with pytest.raises(DatasetError, match=pattern):
        ClevrDataset(folder)


def test_truncated_and_garbage_images_are_named(folder: Path) -> None:
    data = (folder / "CLEVR_train_000000_0.png").read_bytes()
    (folder / "CLEVR_train_000000_0.png").write_bytes(data[: len(data) // 2])
    (folder / "CLEVR_train_000001_0.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError) as info:
        ClevrDataset(folder)
    message = str(info.value)
    assert "2 of 4 images" in message
    assert "CLEVR_train_000000_0.png: unreadable" in message
    assert "CLEVR_train_000001_0.png: unreadable" in message


def test_skip_broken(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    (folder / "CLEVR_train_000000_1.png").unlink()
    (folder / "CLEVR_train_000001_0.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="clevr_diffusion.data.dataset"):
        ds = ClevrDataset(folder, skip_broken=True, image_size=4)
    assert len(ds) == 2
    assert ds.files == ["CLEVR_train_000002_0.png", "CLEVR_train_000000_0.png"]
    skipped = [name for name, _ in ds.skipped]
    assert skipped == ["CLEVR_train_000000_1.png", "CLEVR_train_000001_0.png"]
    assert ds.labels.shape == (2, 24)
    assert "skipping 2 of 4 images" in caplog.text


def test_check_images_false_still_checks_existence(folder: Path) -> None:
    (folder / "CLEVR_train_000001_0.png").write_bytes(b"garbage")
    ds = ClevrDataset(folder, check_images=False)  # garbage passes: no verify pass
    assert len(ds) == 4
    with pytest.raises(DatasetError, match=r"cannot read image .*CLEVR_train_000001_0.png"):
        ds[3]
    (folder / "CLEVR_train_000000_0.png").unlink()
    with pytest.raises(DatasetError, match="CLEVR_train_000000_0.png: missing"):
        ClevrDataset(folder, check_images=False)


def test_objects_json_mismatch(folder: Path) -> None:
    mapping = json.loads(_objects_json())
    # Different indices, same names: fine (labels are encoded by name).
    (folder / "objects.json").write_text(json.dumps({n: 23 - i for n, i in mapping.items()}))
    assert ClevrDataset(folder).labels[1].nonzero().flatten().tolist() == [1]
    mapping["pink cube"] = mapping.pop("red cube")
    (folder / "objects.json").write_text(json.dumps(mapping))
    pattern = r"not in the vocabulary: \['pink cube'\].*lacks: \['red cube'\]"
    with pytest.raises(DatasetError, match=pattern):
        ClevrDataset(folder)


def test_bad_labels_name_the_entry(folder: Path) -> None:
    labels = dict(LABELS, **{"CLEVR_train_000000_1.png": ["red cube", "pink cube"]})
    (folder / "train.json").write_text(json.dumps(labels))
    pattern = r"entry 'CLEVR_train_000000_1.png': unknown object 'pink cube'.*'purple cube'"
    with pytest.raises(DatasetError, match=pattern):
        ClevrDataset(folder)


def test_bad_image_size(folder: Path) -> None:
    with pytest.raises(DatasetError, match="image_size"):
        ClevrDataset(folder, image_size=(64,))
    with pytest.raises(DatasetError, match="positive"):
        ClevrDataset(folder, image_size=0)
