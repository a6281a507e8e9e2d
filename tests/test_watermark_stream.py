"""The streamed embed (``Marker``, fed bands of any size) gives exactly the pixels of ``embed``, and
the mark of the one-shot embed it replaced (the reference below, frozen as it was: its amplitude
made at full resolution) wherever the RMS cap does not bind, for any size, alpha, 16-bit levels and
several keys. Where the cap binds it now holds strip by strip, from budgets predicted before any
output exists: the whole picture stays within it, however the texture is spread."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avow_c2pa import watermark
from avow_c2pa.watermark import embedding
from avow_c2pa.watermark.coding import K_HI, TILE_SOURCE_PX, _coefficients, _layout
from avow_c2pa.watermark.pixels import _box, _luma


def reference_pattern(rows, width, period, coefficients, layout):
    grid = np.zeros((K_HI + 1, 2 * K_HI + 1), np.complex128)
    grid[layout.ky, layout.kx + K_HI] = coefficients
    ex = np.exp(2j * np.pi * np.outer(np.arange(-K_HI, K_HI + 1), np.arange(width)) / period)
    ey = np.exp(2j * np.pi * np.outer(np.arange(rows.start, rows.stop), np.arange(K_HI + 1)) / period)
    columns = grid @ ex
    pattern = ey.real @ columns.real - ey.imag @ columns.imag
    pattern *= 1.0 / math.sqrt(np.sum(np.abs(coefficients) ** 2) / 2)
    return pattern.astype(np.float32)


def reference_upsample(image, rows, width, step):
    def axis_weights(positions, size):
        pos = np.clip((positions + 0.5) / step - 0.5, 0, size - 1)
        low = np.floor(pos).astype(np.int64)
        high = np.minimum(low + 1, size - 1)
        return low, high, (pos - low).astype(np.float32)

    low, high, frac = axis_weights(np.arange(rows.start, rows.stop), image.shape[0])
    band = image[low] * (1 - frac[:, None]) + image[high] * frac[:, None]
    low, high, frac = axis_weights(np.arange(width), image.shape[1])
    return band[:, low] * (1 - frac[None, :]) + band[:, high] * frac[None, :]


def reference_ssim_limit(luma):
    mean = _box(luma, 3)
    variance = np.maximum(_box(luma * luma, 3) - mean * mean, 0.0)
    return np.sqrt(embedding._SSIM_LOSS * (2 * variance + 0.03**2))


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
    radius = 3
    for top in range(0, height, embedding._STRIP_ROWS):
        rows = range(top, min(height, top + embedding._STRIP_ROWS))
        above, below = min(top, radius), min(height - rows.stop, radius)
        luma = _luma(np.clip(out[top - above : rows.stop + below, :, :3], 0.0, 1.0))
        limit = reference_ssim_limit(luma)[above : above + len(rows)]
        pattern = sum(reference_pattern(rows, width, period, c, layout) for c, layout in zip(coefficients, layouts, strict=True))
        pattern *= np.float32(1 / math.sqrt(len(layouts)))
        delta[top : rows.stop] = np.minimum(reference_upsample(coarse, rows, width, step), limit) * pattern
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
def test_embed_is_the_one_shot_reference_below_the_cap_and_holds_the_cap(name):
    image, source_size, key, cap = CASES[name]
    expected, capped = reference_embed(image, 0x5EED1234, key, source_size)
    assert capped == cap  # both sides of the RMS cap are covered
    marked = watermark.embed(image, 0x5EED1234, key, source_size=source_size)
    assert marked.dtype == image.dtype
    if image.dtype == np.float32:
        in_place = image.copy()
        watermark.embed_in_place(in_place, 0x5EED1234, key, source_size=source_size)
        assert np.array_equal(in_place, marked)
    if not cap:  # the same mark, its amplitude now shaped on 2 x 2 blocks
        old, new = (expected - image)[..., :3], (marked - image)[..., :3]
        assert float(np.sum(old * new)) / math.sqrt(float(np.sum(old * old) * np.sum(new * new))) > 0.98
        assert abs(rms(marked, image) / rms(expected, image) - 1) < 0.05
    else:
        assert rms(marked, image) <= embedding._MAX_RMS * 1.0001
        assert rms(marked, image) > embedding._MAX_RMS * 0.8  # capped, not silenced


def rms(marked, image):
    return float(np.sqrt(np.mean(np.square(marked[..., :3].astype(np.float64) - image[..., :3]))))


@pytest.mark.parametrize("name", CASES)
def test_marker_fed_bands_of_any_size_gives_the_embed_pixels(name):
    image, source_size, key, _ = CASES[name]
    clean = image.astype(np.float32)
    out = np.empty_like(clean)

    def put(top, unmarked, delta):
        embedding.add_mark(unmarked, delta, out[top : top + len(delta)])

    marker = embedding.Marker(*clean.shape[:2], 0x5EED1234, key, source_size, clean, put)
    rng, top = np.random.default_rng(len(name)), 0
    while top < len(clean):
        size = int(rng.integers(1, 300))
        band = clean[top : top + size].copy()
        marker.feed(band)
        band[:] = np.nan  # the marker keeps no view of a band it was handed
        top += size
    assert np.array_equal(out, watermark.embed(clean, 0x5EED1234, key, source_size=source_size))


def test_the_rms_cap_holds_on_one_textured_band_in_a_flat_picture():
    """The adversarial case for budgets predicted from the input: all the picture's texture in one
    strip, so the whole mark's energy wants to go there."""
    rng = np.random.default_rng(7)
    source = np.full((150, 200, 3), 0.5, np.float32)
    source[60:72] = rng.random((12, 200, 3), dtype=np.float32)  # an input-sized textured band
    output = source.repeat(4, axis=0).repeat(4, axis=1)  # a x4 "upscale" of it
    for reference in (None, source):
        marked = watermark.embed(output, 0xABCDEF12, source_size=(200, 150), reference=reference)
        assert rms(marked, output) <= embedding._MAX_RMS * 1.0001
        textured = slice(4 * 60, 4 * 72)
        assert rms(marked[textured], output[textured]) > 1.5 * embedding._MAX_RMS  # the energy went where it hides


def test_the_coarse_amplitude_from_the_input_is_the_outputs_own_when_block_means_are_the_input():
    """At the mark's step (here 2 output pixels, a x2 upscale) the output's block means are the
    input for a nearest-neighbour upscale: the mark made from either is the same."""
    source = picture(150, 210, 3, 0.02, 1)
    output = source.repeat(2, axis=0).repeat(2, axis=1)
    assert embedding.Marker(300, 420, 1, watermark.DEFAULT_KEY, (210, 150), output, print).step == 2
    own = watermark.embed(output, 1, source_size=(210, 150))
    assert np.array_equal(own, watermark.embed(output, 1, source_size=(210, 150), reference=source))


def test_in_place_cleans_non_finite_values_as_embed_does():
    image = picture(280, 90, 3, 0.05, 6)
    image[5, 7] = [np.nan, np.inf, -np.inf]
    expected, _ = reference_embed(image, 9, watermark.DEFAULT_KEY, None)
    watermark.embed_in_place(image, 9)
    assert np.isfinite(image).all() and rms(image, expected) < 0.2 / 255


def test_in_place_refuses_what_it_cannot_mark_in_place():
    with pytest.raises(TypeError):
        watermark.embed_in_place(picture(20, 20, 3, 0.0, 0).astype(np.float64), 1)
    with pytest.raises(ValueError):
        watermark.embed_in_place(np.zeros((20, 20), np.float32), 1)


def test_the_kept_period_of_the_pattern_is_the_pattern():
    """An integer period (64 input pixels at x2: 128 rows) is made once and its rows repeated."""
    marker = embedding.Marker(600, 310, 5, KEYS, (155, 300), picture(300, 155, 3, 0.05, 7), print)
    assert marker.period == 128 and marker.cycle is not None
    rows = range(250, 520)
    assert float(np.abs(marker._pattern(rows) - marker._made(rows)).max()) < 1e-4
