"""The band-wise, in-place embed gives exactly the pixels of the one-shot embed it replaced
(the reference below, frozen as it was), for any size, alpha, 16-bit levels, several keys, with the
RMS cap hit or not, and whether the marks are kept between passes or made again."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avow_c2pa import watermark
from avow_c2pa.watermark import embedding
from avow_c2pa.watermark.coding import K_HI, TILE_SOURCE_PX, _coefficients, _layout
from avow_c2pa.watermark.pixels import _luma


def reference_pattern(rows, width, period, coefficients, layout):
    grid = np.zeros((K_HI + 1, 2 * K_HI + 1), np.complex128)
    grid[layout.ky, layout.kx + K_HI] = coefficients
    ex = np.exp(2j * np.pi * np.outer(np.arange(-K_HI, K_HI + 1), np.arange(width)) / period)
    ey = np.exp(2j * np.pi * np.outer(np.arange(rows.start, rows.stop), np.arange(K_HI + 1)) / period)
    columns = grid @ ex
    pattern = ey.real @ columns.real - ey.imag @ columns.imag
    pattern *= 1.0 / math.sqrt(np.sum(np.abs(coefficients) ** 2) / 2)
    return pattern.astype(np.float32)


def reference_embed(rgb, payload, key, source_size):
    """The whole-picture embed as it was before it worked in bands: a float32 copy, a full-size
    delta, a float64 square for the RMS. Returns the marked copy and whether the RMS cap applied."""
    image = np.asarray(rgb)
    layouts = [_layout(k) for k in ((key,) if isinstance(key, str) else tuple(dict.fromkeys(key)))]
    height, width = image.shape[:2]
    out = image.astype(np.float32, copy=True)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    period = embedding._period(height, width, source_size)
    coefficients = [_coefficients(layout, payload) for layout in layouts]
    step = max(1, min(round(period / TILE_SOURCE_PX), height, width))
    coarse = embedding._coarse_amplitude(embedding._block_means(out, step))
    delta = np.empty((height, width), np.float32)
    radius = embedding._SSIM_RADIUS
    for top in range(0, height, embedding._STRIP_ROWS):
        rows = range(top, min(height, top + embedding._STRIP_ROWS))
        above, below = min(top, radius), min(height - rows.stop, radius)
        luma = _luma(np.clip(out[top - above : rows.stop + below, :, :3], 0.0, 1.0))
        limit = embedding._ssim_limit(luma)[above : above + len(rows)]
        pattern = sum(reference_pattern(rows, width, period, c, layout) for c, layout in zip(coefficients, layouts, strict=True))
        pattern *= np.float32(1 / math.sqrt(len(layouts)))
        delta[top : rows.stop] = np.minimum(embedding._upsample(coarse, rows, width, step), limit) * pattern
    rms = float(np.sqrt(np.mean(np.square(delta, dtype=np.float64))))
    if rms > embedding._MAX_RMS:
        delta *= np.float32(embedding._MAX_RMS / rms)
    out[..., :3] += delta[..., None]
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(image.dtype, copy=False), rms > embedding._MAX_RMS


def picture(height: int, width: int, channels: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, (x + y) / (width + height), np.full_like(x, 0.7)][:channels], axis=2)
    base[height // 3 : height // 2, width // 4 : width // 2, :3] = 0.9
    return np.clip(base + rng.normal(0, noise, base.shape).astype(np.float32), 0, 1)


KEYS = (watermark.DEFAULT_KEY, "a user's key")
CASES = {  # picture, source size, key, whether the RMS cap applies
    "smooth-rgb": (picture(300, 420, 3, 0.01, 1), (210, 150), KEYS[0], False),
    "textured-rgb": (picture(530, 611, 3, 0.25, 2), None, KEYS[0], True),
    "rgba-two-keys": (picture(700, 380, 4, 0.05, 3), (95, 175), KEYS, False),
    "16-bit-float64": (np.round(picture(517, 260, 3, 0.03, 4) * 65535) / 65535, (65, 129), KEYS[0], False),
    "one-row-band": (picture(257, 64, 3, 0.1, 5), (32, 128), KEYS[0], True),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("kept", [True, False], ids=["marks-kept", "marks-made-again"])
def test_banded_embed_is_pixel_identical(name, kept, monkeypatch):
    image, source_size, key, cap = CASES[name]
    if not kept:
        monkeypatch.setattr(embedding, "_CACHE_BYTES", 0)
    expected, capped = reference_embed(image, 0x5EED1234, key, source_size)
    marked = watermark.embed(image, 0x5EED1234, key, source_size=source_size)
    assert marked.dtype == image.dtype and np.array_equal(marked, expected)
    if image.dtype == np.float32:
        in_place = image.copy()
        watermark.embed_in_place(in_place, 0x5EED1234, key, source_size=source_size)
        assert np.array_equal(in_place, expected)
    assert capped == cap  # both branches of the RMS cap are covered


def test_in_place_cleans_non_finite_values_as_embed_does():
    image = picture(280, 90, 3, 0.05, 6)
    image[5, 7] = [np.nan, np.inf, -np.inf]
    expected, _ = reference_embed(image, 9, watermark.DEFAULT_KEY, None)
    watermark.embed_in_place(image, 9)
    assert np.array_equal(image, expected)


def test_in_place_refuses_what_it_cannot_mark_in_place():
    with pytest.raises(TypeError):
        watermark.embed_in_place(picture(20, 20, 3, 0.0, 0).astype(np.float64), 1)
    with pytest.raises(ValueError):
        watermark.embed_in_place(np.zeros((20, 20), np.float32), 1)
