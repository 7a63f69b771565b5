"""Shared helpers: atomic writes, JSON configs, image grids, plots."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from clevr_diffusion import TrainerConfig
from clevr_diffusion.models.serialization import save_safetensors
from clevr_diffusion.utils.config import JsonConfig
from clevr_diffusion.utils.images import make_grid, save_grid, to_pil, to_uint8
from clevr_diffusion.utils.io import atomic_path, atomic_write_json, atomic_write_text
from clevr_diffusion.utils.plotting import PALETTE, plot_bars, plot_curve, plot_lines


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "sub" / "a.txt", "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["a.txt"]  # no temporary left behind


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert path.read_text().strip().startswith("{") and '"x": 1' in path.read_text()
    assert os.listdir(tmp_path) == ["a.json"]


@dataclass
class Nested(JsonConfig):
    size: tuple[int, int] = (3, 4)
    name: str | None = None


@dataclass
class Outer(JsonConfig):
    inner: Nested = field(default_factory=Nested)
    values: tuple[float, ...] = (1.0,)
    rate: float = 0.5


@settings(max_examples=30, deadline=None)
@given(
    size=st.tuples(st.integers(-5, 5), st.integers(0, 9)),
    name=st.none() | st.text(max_size=5),
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=4).map(tuple),
    rate=st.integers(0, 3),
)
def test_nested_config_round_trip(size: tuple[int, int], name: str | None, values: tuple[float, ...], rate: int) -> None:
    config = Outer(Nested(size, name), values, float(rate))
    loaded = Outer.from_json(config.to_json())
    assert loaded == config
    assert isinstance(loaded.inner, Nested) and isinstance(loaded.inner.size, tuple)
    assert isinstance(loaded.rate, float)


def test_config_file_knows_its_class(tmp_path: Path) -> None:
    path = TrainerConfig(max_steps=7, adam_betas=(0.8, 0.9)).save(tmp_path / "c.json")
    loaded = TrainerConfig.load(path)
    assert loaded.max_steps == 7 and loaded.adam_betas == (0.8, 0.9)
    with pytest.raises(ValueError, match="holds a TrainerConfig"):
        Nested.load(path)
    with pytest.raises(FileNotFoundError):
        TrainerConfig.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{\n  "max_steps": 7,\n  "seed": }', r"is not valid JSON \(Expecting value at line 3, column 11\); .*again"),
        ('{"max_steps": 7', r"is not valid JSON \(.* at line 1, column \d+\)"),
        ("[1, 2]", r"must hold a JSON object \{\.\.\.\}, got an array"),
        ("null", r"must hold a JSON object \{\.\.\.\}, got null"),
    ],
)
def test_corrupt_config_file_names_the_file_position_and_fix(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path)) + " " + match):
        TrainerConfig.load(path)


def test_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"max_steps": "\xff"}')
    with pytest.raises(ValueError, match=r"config\.json is not UTF-8 text \(invalid start byte at byte 15\)"):
        TrainerConfig.load(path)


def test_trainer_config_validation_and_schedule() -> None:
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainerConfig(mixed_precision="fp8")
    config = TrainerConfig(learning_rate=1.0, warmup_steps=4, max_steps=14, lr_schedule="cosine")
    rates = [config.learning_rate_at(s) for s in range(15)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert rates[4] == pytest.approx(1.0) and rates[9] == pytest.approx(0.5) and rates[14] == pytest.approx(0.0)


def test_uint8_and_pil_conversion() -> None:
    images = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert to_uint8(images)[0, 0].flatten().tolist() == [0, 128, 255, 255]
    pil = to_pil(images)[0]
    assert pil.mode == "RGB" and pil.size == (2, 2) and pil.getpixel((1, 0)) == (128, 128, 128)


def test_grid_layout(tmp_path: Path) -> None:
    images = torch.stack([torch.full((3, 4, 4), v) for v in torch.linspace(-1, 1, 10)])
    grid = make_grid(images, nrow=4, padding=1, pad_value=1.0)
    assert grid.shape == (3, 3 * 5 + 1, 4 * 5 + 1)
    assert torch.equal(grid[:, 1:5, 1:5], images[0])
    assert torch.equal(grid[:, 6:10, 6:10], images[5])  # row 1, column 1
    path = save_grid(images, tmp_path / "g.png", nrow=4, upscale=2)
    assert Image.open(path).size == (4 * 8 + 2 * 5, 3 * 8 + 2 * 4)  # 8 px tiles, 2 px borders


def test_plot_curve_writes_png(tmp_path: Path) -> None:
    path = plot_curve(list(range(1, 101)), [1 / s for s in range(1, 101)], tmp_path / "loss.png")
    image = Image.open(path)
    assert image.size == (640, 400)
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 2  # something was drawn


def _has_colour(image: Image.Image, colour: tuple[int, int, int]) -> bool:
    return any(c == colour for _, c in image.convert("RGB").getcolors(maxcolors=1 << 18) or [])


def test_plot_lines_draws_every_series_in_its_colour(tmp_path: Path) -> None:
    series = {f"s{i}": ([10, 20, 50], [0.1 * i, 0.2, 0.3]) for i in range(3)}
    image = Image.open(plot_lines(series, tmp_path / "l.png", "t", "steps", "acc", log_x=True, y_range=(0, 1)))
    assert image.size == (720, 440)
    assert all(_has_colour(image, PALETTE[i]) for i in range(3))
    assert not _has_colour(image, PALETTE[3])


def test_plot_lines_error_bars_span_the_given_half_widths(tmp_path: Path) -> None:
    series = {"a": ([1, 2], [0.5, 0.5])}
    plain = Image.open(plot_lines(series, tmp_path / "p.png", y_range=(0, 1))).convert("RGB")
    barred = Image.open(plot_lines(series, tmp_path / "e.png", y_range=(0, 1), errors={"a": [0.0, 0.25]})).convert("RGB")

    def rows_in_colour(image: Image.Image, x: int) -> list[int]:
        return [y for y in range(image.height) if image.getpixel((x, y)) == PALETTE[0]]

    # The second point sits at the right edge of the plot area (x = width - right margin).
    x = plain.width - 170
    assert max(rows_in_colour(plain, x)) - min(rows_in_colour(plain, x)) <= 8  # the dot only
    rows = rows_in_colour(barred, x)
    plot_height = barred.height - 28 - 40
    assert abs((max(rows) - min(rows)) - 0.5 * plot_height) <= 2  # +-0.25 of a 0..1 axis


def test_plot_lines_legend_makes_room_for_long_names(tmp_path: Path) -> None:
    long = "noise.beta_schedule=squaredcos_cap_v2"
    image = Image.open(plot_lines({long: ([1, 2], [0.1, 0.2])}, tmp_path / "l.png"))
    assert image.size == (720 + len(long) * 6 + 50 - 170, 440)


def test_plot_bars_lengths_follow_values(tmp_path: Path) -> None:
    image = Image.open(plot_bars({"a": 4.0, "b": 1.0}, tmp_path / "b.png", "t", "s")).convert("RGB")
    assert image.size == (720, 60 + 2 * 26)

    def bar_length(colour: tuple[int, int, int]) -> int:
        row = [image.getpixel((x, y)) for y in range(image.height) for x in range(image.width)]
        return sum(1 for c in row if c == colour)

    ratio = bar_length(PALETTE[0]) / bar_length(PALETTE[1])
    assert 3.5 < ratio < 4.5  # bar areas scale with the values


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        # safetensors writes its file anew, with mkstemp's owner-only mode.
        weights = save_safetensors({"w": torch.zeros(2)}, tmp_path / "w.safetensors")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert weights.stat().st_mode & 0o777 == 0o644


def test_as_saved_png_is_what_the_png_reads_back(tmp_path: Path) -> None:
    from clevr_diffusion.utils.images import as_saved_png, save_images

    torch.manual_seed(0)
    images = torch.rand(3, 3, 8, 8) * 2.2 - 1.1  # a little outside [-1, 1] too: clamped like the PNG
    save_images(images, tmp_path)
    read = torch.stack([
        torch.from_numpy(np.array(Image.open(tmp_path / f"{i}.png"))).permute(2, 0, 1).float() / 127.5 - 1 for i in range(3)
    ])  # fmt: skip
    assert torch.equal(as_saved_png(images), read)
    assert torch.equal(to_uint8(images), ((read + 1) * 127.5).round().to(torch.uint8))
