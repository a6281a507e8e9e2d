"""Embedding: the keyed periodic pattern, shaped by a perceptual mask and capped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np

from .coding import (
    ASSUMED_SCALE,
    DEFAULT_KEY,
    K_HI,
    PAYLOAD_BITS,
    TILE_SOURCE_PX,
    _coefficients,
    _Layout,
    _layout,
    _period_at_scale,
)
from .pixels import _box, _luma

# Perceptual mask: amplitude (RMS of the unit pattern times this) as a fraction of full scale.
_FLOOR = 0.004  # flat areas: RMS amplitude per unit of (0.1 + brightness)
_GAIN = 0.6  # per unit of local texture (luma RMS in the mark's band), see _TEXTURE_EXPONENT
_TEXTURE_REF = 3.0 / 255  # texture masking: linear below this level, texture^exponent above
_TEXTURE_EXPONENT = 0.6
_CAP = 5.0 / 255
_SSIM_LOSS = 0.02  # at most this much local SSIM lost anywhere
_MAX_RMS = 2.4 / 255  # overall cap: PSNR >= 40.5 dB against the unmarked output
_SSIM_RADIUS = 3
_STRIP_ROWS = 256  # embedding works on bands of rows
_CACHE_BYTES = 64 << 20  # marks kept between the passes rather than made again


def _period(height: int, width: int, source_size: tuple[int, int] | None) -> float:
    """The tile's period in output pixels (the same along both axes: the detector's scan is isotropic)."""
    if source_size is None:
        return _period_at_scale(height, width, ASSUMED_SCALE)
    w0, h0 = (int(v) for v in source_size)
    if w0 <= 0 or h0 <= 0:
        raise ValueError(f"invalid source_size {source_size!r}")
    return _period_at_scale(height, width, max(width / w0, height / h0, 1.0))  # the coarser axis: both survive the downscale



def _columns(width: int, period: float, coefficients: np.ndarray, layout: _Layout) -> np.ndarray:
    """The pattern's x part, (K+1) x W complex: the same for every band of rows, so made once."""
    grid = np.zeros((K_HI + 1, 2 * K_HI + 1), np.complex128)
    grid[layout.ky, layout.kx + K_HI] = coefficients
    ex = np.exp(2j * np.pi * np.outer(np.arange(-K_HI, K_HI + 1), np.arange(width)) / period)  # (2K+1, W)
    return grid @ ex


def _pattern(rows: range, period: float, columns: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """sum_k Re(c_k exp(2 pi i (kx x / px + ky y / py))) on ``rows``, unit RMS, by two separable
    matrix products (``columns`` from ``_columns``)."""
    ey = np.exp(2j * np.pi * np.outer(np.arange(rows.start, rows.stop), np.arange(K_HI + 1)) / period)  # (R, K+1)
    pattern = ey.real @ columns.real - ey.imag @ columns.imag
    pattern *= 1.0 / math.sqrt(np.sum(np.abs(coefficients) ** 2) / 2)
    return pattern.astype(np.float32)


def _upsample(image: np.ndarray, rows: range, width: int, step: int) -> np.ndarray:
    """Bilinear interpolation of a grid whose cells are ``step`` pixels, on ``rows`` x ``width``."""

    def axis_weights(positions: np.ndarray, size: int):
        pos = np.clip((positions + 0.5) / step - 0.5, 0, size - 1)
        low = np.floor(pos).astype(np.int64)
        high = np.minimum(low + 1, size - 1)
        return low, high, (pos - low).astype(np.float32)

    low, high, frac = axis_weights(np.arange(rows.start, rows.stop), image.shape[0])
    band = image[low] * (1 - frac[:, None]) + image[high] * frac[:, None]
    low, high, frac = axis_weights(np.arange(width), image.shape[1])
    return band[:, low] * (1 - frac[None, :]) + band[:, high] * frac[None, :]


def _max_filter(image: np.ndarray, radius: int) -> np.ndarray:
    out = image
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        size = out.shape[axis]
        result = np.take(padded, np.arange(0, size), axis=axis)
        for shift in range(1, 2 * radius + 1):
            result = np.maximum(result, np.take(padded, np.arange(shift, shift + size), axis=axis))
        out = result
    return out


def _coarse_amplitude(small: np.ndarray) -> np.ndarray:
    """Amplitude the mark may have, a just-noticeable-difference model on the luma at about the
    input's resolution (where the mark lives).

    Flat areas get a floor proportional to brightness (in sRGB code values the visibility
    threshold grows roughly with the value, so dark skies get least); texture in the mark's own
    band (a high-pass, so smooth gradients do not count as texture) raises it; the texture must
    surround a pixel (a minimum filter), so the paper next to a letter or the sky next to a roof
    keeps the flat allowance.
    """
    detail = small - _box(small, 2)
    texture = np.sqrt(_box(detail * detail, 3))
    texture = -_max_filter(-texture, 3)
    brightness = _box(small, 3)
    # Masking grows linearly with weak texture, then compressively (strong texture hides less
    # per unit, and SSIM would object).
    strong = texture > _TEXTURE_REF
    texture[strong] = _TEXTURE_REF * np.power(texture[strong] / _TEXTURE_REF, _TEXTURE_EXPONENT)
    amplitude = np.sqrt((_FLOOR * (0.1 + brightness)) ** 2 + (_GAIN * texture) ** 2)
    return _box(np.minimum(amplitude, _CAP), 2)


def _ssim_limit(luma: np.ndarray) -> np.ndarray:
    """Adding noise of variance a^2 where the picture's local variance is s^2 costs SSIM about
    a^2 / (2 s^2 + C2) there: the amplitude that costs _SSIM_LOSS (7 x 7 windows, as SSIM)."""
    mean = _box(luma, _SSIM_RADIUS)
    variance = np.maximum(_box(luma * luma, _SSIM_RADIUS) - mean * mean, 0.0)
    return np.sqrt(_SSIM_LOSS * (2 * variance + 0.03**2))


def _block_means(rgb: np.ndarray, step: int) -> np.ndarray:
    """Luma averaged over step x step cells (the input's scale), a band of rows at a time."""
    h, w = rgb.shape[0] // step, rgb.shape[1] // step
    small = np.empty((h, w), np.float32)
    cells = max(1, _STRIP_ROWS // step)
    for top in range(0, h, cells):
        bottom = min(h, top + cells)
        luma = _luma(np.clip(rgb[top * step : bottom * step, : w * step, :3], 0.0, 1.0), finite=True)
        small[top:bottom] = luma.reshape(bottom - top, step, w, step).mean(axis=(1, 3), dtype=np.float32)
    return small


def _layouts(key: str | Sequence[str]) -> list[_Layout]:
    layouts = [_layout(k) for k in ((key,) if isinstance(key, str) else tuple(dict.fromkeys(key)))]
    if not layouts:
        raise ValueError("at least one watermark key is needed")
    return layouts


def embed(
    rgb: np.ndarray,
    payload: int,
    key: str | Sequence[str] = DEFAULT_KEY,
    source_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Mark ``rgb`` (float H x W x 3 in [0, 1], the synthesized output before quantisation) with
    ``payload`` (an integer of PAYLOAD_BITS bits); returns the same shape and dtype, in [0, 1].

    Several keys (the public one plus a user's own) give superposed marks that share the same
    amplitude budget, each detectable with its key alone, each about 3 dB weaker than one mark.

    ``source_size`` is the (width, height) of the upscaler's input: the mark lives in frequencies
    that survive scaling back down to it (unknown: a x2 upscale is assumed). A fourth (alpha)
    channel is left alone. Deterministic: the same input, key and payload give the same pixels.
    ``embed_in_place`` gives the same pixels without the copy.
    """
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected float pixels in [0, 1], got {image.dtype}")
    out = image.astype(np.float32, copy=True)
    embed_in_place(out, payload, key, source_size)
    return out.astype(image.dtype, copy=False)


def embed_in_place(
    image: np.ndarray,
    payload: int,
    key: str | Sequence[str] = DEFAULT_KEY,
    source_size: tuple[int, int] | None = None,
) -> None:
    """``embed`` on a writable float32 H x W x C array (C >= 3), in its own memory.

    The mark's amplitude depends on the whole picture (the coarse amplitude map, the overall RMS
    cap), so this works in passes over bands of rows, with a working set of a few bands whatever
    the size: block means; the mark band by band for its RMS; then the mark again, scaled, added
    in place. A band's mark reads three rows beyond it on each side, so each band is marked only
    after the next band's mark is made from still unmarked pixels. Up to ``_CACHE_BYTES`` of
    marks are kept from the second pass rather than made again (all of them up to ~16 MP)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {np.shape(image)}")
    if image.dtype != np.float32 or not image.flags.writeable:
        raise TypeError(f"expected a writable float32 array, got {image.dtype}")
    payload = int(payload)
    if not 0 <= payload < (1 << PAYLOAD_BITS):
        raise ValueError(f"payload must fit in {PAYLOAD_BITS} bits")
    layouts = _layouts(key)
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        return
    bands = [range(top, min(height, top + _STRIP_ROWS)) for top in range(0, height, _STRIP_ROWS)]
    for rows in bands:
        pixels = image[rows.start : rows.stop]
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN or infinity makes the sum one: one cheap pass
            finite = math.isfinite(np.sum(pixels, dtype=np.float32))
        if not finite:
            np.nan_to_num(pixels, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    period = _period(height, width, source_size)
    marks = [(layout, _coefficients(layout, payload)) for layout in layouts]
    columns = [_columns(width, period, c, layout) for layout, c in marks]
    step = max(1, min(round(period / TILE_SOURCE_PX), height, width))
    coarse = _coarse_amplitude(_block_means(image, step))

    def delta(rows: range) -> np.ndarray:
        above, below = min(rows.start, _SSIM_RADIUS), min(height - rows.stop, _SSIM_RADIUS)
        luma = _luma(np.clip(image[rows.start - above : rows.stop + below, :, :3], 0.0, 1.0), finite=True)
        limit = _ssim_limit(luma)[above : above + len(rows)]
        pattern = cast(np.ndarray, sum(_pattern(rows, period, x, c) for x, (_, c) in zip(columns, marks, strict=True)))
        pattern *= np.float32(1 / math.sqrt(len(layouts)))  # independent keys: unit RMS again
        return np.minimum(_upsample(coarse, rows, width, step), limit) * pattern

    cached: dict[int, np.ndarray] = {}
    squares = 0.0
    for index, rows in enumerate(bands):
        band = delta(rows)
        squares += float(np.sum(np.square(band, dtype=np.float64)))
        if (len(cached) + 1) * band.nbytes <= _CACHE_BYTES:
            cached[index] = band
    rms = math.sqrt(squares / (height * width))
    gain = np.float32(_MAX_RMS / rms) if rms > _MAX_RMS else None

    def made(index: int) -> np.ndarray:
        return cached.pop(index) if index in cached else delta(bands[index])

    following = made(0)
    for index, rows in enumerate(bands):
        band = following
        if index + 1 < len(bands):
            following = made(index + 1)  # from pixels this band's marking is about to change
        if gain is not None:
            band *= gain
        pixels = image[rows.start : rows.stop]
        pixels[..., :3] += band[..., None]
        np.clip(pixels, 0.0, 1.0, out=pixels)
