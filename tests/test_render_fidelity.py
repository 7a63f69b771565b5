"""The fidelity measures (MAE, SSIM, sharpness, object and floor errors) on known images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clevr_diffusion.render.fidelity import difference_image, fidelity_scores, laplacian_energy, ssim


def _image(seed: int, size: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.uniform(60, 200, size=(1, size // 4, size // 4, 3))
    return np.repeat(np.repeat(smooth, 4, axis=1), 4, axis=2).round().astype(np.uint8)


def _ids(size: int = 24) -> np.ndarray:
    ids = np.full((1, size, size), -1)
    ids[0, 8:16, 4:12] = 0  # an 8 x 8 object: 6 x 6 interior pixels
    ids[0, :2] = -2  # a strip of sky
    return ids


def test_identical_images_score_perfectly() -> None:
    img = _image(0)
    (s,) = fidelity_scores(img, img, _ids())
    assert s.mae == 0 and s.object_mae == 0 and s.interior_mae == 0
    assert s.object_off == 0 and s.floor_off == 0
    assert s.ssim == pytest.approx(1.0)
    assert s.sharpness == pytest.approx(1.0)


def test_errors_are_split_by_region() -> None:
    ref = _image(1)
    ids = _ids()
    ours = ref.astype(np.int64)
    ours[0, 8:16, 4:12] += 6  # the object 6 levels too bright
    ours[0, 20:24] += np.array([0, 0, 5])  # 4 floor rows, one channel 5 levels off
    ours[0, 0:2] += 50  # the sky does not count as floor or object
    (s,) = fidelity_scores(ours.clip(0, 255).astype(np.uint8), ref, ids)
    assert s.object_mae == pytest.approx(6.0)
    assert s.interior_mae == pytest.approx(6.0)
    assert s.object_off == 0  # 6 <= 8
    floor = (ids == -1).sum()
    assert s.floor_off == pytest.approx(4 * 24 / floor)  # max channel difference 5 > 4
    total = (64 * 6 * 3 + 4 * 24 * 5 + 2 * 24 * 3 * 50) / (24 * 24 * 3)
    assert s.mae == pytest.approx(total)


def test_interior_excludes_the_outline() -> None:
    ref = _image(2)
    ids = _ids()
    ours = ref.astype(np.int64)
    ours[0, 8, 4:12] += 20  # the object's top row: outline only
    (s,) = fidelity_scores(ours.clip(0, 255).astype(np.uint8), ref, ids)
    assert s.interior_mae == 0
    assert s.object_mae == pytest.approx(20 * 8 / 64)
    assert s.object_off == pytest.approx(8 / 64)


def test_blur_lowers_sharpness_and_ssim() -> None:
    ref = np.zeros((1, 24, 24, 3), dtype=np.uint8)
    ref[0, 8:16, 4:12] = 200  # a hard-edged bright square on black
    blurred = torch.nn.functional.avg_pool2d(
        torch.from_numpy(ref).permute(0, 3, 1, 2).double(), 3, stride=1, padding=1, count_include_pad=False
    )
    blurred = blurred.permute(0, 2, 3, 1).round().to(torch.uint8).numpy()
    (s,) = fidelity_scores(blurred, ref, _ids())
    assert s.sharpness < 0.8
    assert s.ssim < 0.95


def test_laplacian_of_a_checkerboard() -> None:
    board = (np.indices((12, 12)).sum(0) % 2 * 100).astype(np.uint8)
    img = np.repeat(board[None, :, :, None], 3, axis=3)
    inner = np.zeros((1, 12, 12), dtype=bool)
    inner[0, 1:-1, 1:-1] = True
    assert laplacian_energy(img, inner)[0] == pytest.approx(400.0)
    assert laplacian_energy(np.full_like(img, 77), inner)[0] == 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.floats(1.0, 40.0))
def test_ssim_is_symmetric_bounded_and_falls_with_noise(seed: int, noise: float) -> None:
    a = _image(seed)
    rng = np.random.default_rng(seed + 1)
    b = (a + rng.normal(0, noise, a.shape)).clip(0, 255).round().astype(np.uint8)
    c = (a + rng.normal(0, 2 * noise, a.shape)).clip(0, 255).round().astype(np.uint8)
    s_ab, s_ba = ssim(a, b)[0], ssim(b, a)[0]
    assert s_ab == pytest.approx(s_ba)
    assert -1 <= s_ab < 1
    assert ssim(a, c)[0] < s_ab


def test_difference_image_centres_on_grey() -> None:
    a = np.full((1, 4, 4, 3), 100, dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 96  # ours 4 levels brighter there
    d = difference_image(a, b, gain=8)
    assert (d[0, 1:, 1:] == 128).all()
    assert (d[0, 0, 0] == 128 + 32).all()


def test_shape_mismatches_are_refused() -> None:
    with pytest.raises(ValueError, match="must agree"):
        fidelity_scores(_image(0), _image(0)[:, :20], _ids())
    with pytest.raises(ValueError, match="at least 11"):
        ssim(_image(0)[:, :8, :8], _image(0)[:, :8, :8])
