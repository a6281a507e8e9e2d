"""Avow's pixel watermark: the disclosure that survives metadata stripping (numpy only).

``embed`` adds an imperceptible, keyed, 32-bit-payload mark to a synthesized output before it is
quantised; ``detect`` finds it in any copy (resized, cropped, recompressed, tone-shifted,
screenshotted) and reports a score with a calibrated false-positive probability.

Why this method
---------------
* **A periodic tile at the *input's* resolution, in a mid band.** The mark is a sum of sinusoids
  with whole numbers of cycles per tile (8 to 24 per ``TILE_SOURCE_PX`` = 64 input pixels, i.e.
  1/8 to 3/8 cycle per input pixel), so scaling the output back down to the input's size, the
  cheapest way to launder an upscale, keeps every one of them below the new Nyquist limit: it
  removes what the upscaler invented, not the mark. Measured per frequency, the upper part of the
  band is where a photograph leaves the most room (its spectrum falls as 1/f) and where the eye
  is less sensitive; going higher would not survive that downscale plus JPEG. Periodicity makes
  the mark crop-proof (any window of about a period holds the whole tile; a crop is a phase shift
  of every coefficient) and lets the detector find the scale without a separate template.
* **Coherent search for the scale, phase-only correlation for a calibrated score.** A quarter of
  the tile's coefficients carry key-derived phases (the pilot). The detector whitens the luma
  (flat spectrum), normalises its local energy (flat regions count as much as busy ones), reads
  the lattice coefficients for every candidate period from one zero-padded FFT and correlates
  their *phases* with the pilot over every translation (64 x 64 FFTs): a coherent search, far
  more sensitive than looking for the lattice's energy. The best few periods are refined (x and y
  separately) with exact DTFTs by matrix products. With phases only, under "no mark" every term
  is the cosine of a uniformly random angle whatever the picture is, so the statistic's null
  distribution is known up to the number of effectively independent tries, which is fitted on
  unmarked pictures (see ``bench/bench_watermark.py``) and turned into the reported
  false-positive probability.
* **Avow's own periods first.** Most copies keep their size (a re-save, recompression, tone
  change, screenshot or crop) or are shrunk back to the input's. The periods Avow gives x1 to x4
  outputs of that size are tried exactly before the scan: four periods instead of a few thousand,
  so the same score is far more significant there, and a weaker mark is still found. The same
  measurement, its coefficients permuted, also tests the seven turned or mirrored orientations
  (a phone's rotate, a mirrored repost) at no extra pass over the pixels. Each of the three
  searches (native, turned, scan) is charged for its own tries.
* **Payload with strong soft-decision error correction.** 32 identifier bits + a keyed CRC-24,
  rate-1/3 constraint-length-7 convolutional code (133, 171, 165 octal), ~6 chips per coded
  bit over the other three quarters of the coefficients, soft Viterbi decoding. The CRC is an
  independent second test: a payload that checks multiplies the false-positive probability by
  2^-24, so a weak but readable mark is still reported with confidence. The
  key (``DEFAULT_KEY`` is public on purpose, so that anyone's ``avow verify`` detects Avow output)
  fixes pilot, phases and interleaving through SHAKE-256, not numpy's generators, so every
  install derives exactly the same pattern.
* **Luma only, perceptually masked, capped.** The same value is added to R, G and B (no colour
  shift; survives chroma subsampling). Its amplitude follows a just-noticeable-difference model
  computed at the input's scale: a small floor proportional to brightness on flat areas and
  gradients (dark skies get least), more where there is texture in the mark's band, with the
  texture required to surround the pixel (so the paper next to a letter or the sky next to a
  roof stays quiet); then capped so that no 7 x 7 window loses more than 2 % SSIM and the
  whole image stays above 40 dB PSNR.
* **Fast, light detection.** A luma copy at most ``DETECT_SIDE`` pixels long (area resampling);
  the embedder makes the tile large enough that the band stays below that copy's Nyquist limit
  for any resize of the output. About 0.1 s per 0.5 MP picture and under 0.5 s for 12 MP on one
  core; no scipy, no torch.

Limits (measured in the benchmark, stated in its report): it is not an adversarially robust mark
(anyone with the public key can estimate and subtract it; rotation by other angles, warping, or
a quarter turn combined with a resize defeat it), and
pictures with almost nowhere to hide it (flat synthetic gradients, black text on pure white,
very dark scenes) or with very few input pixels (x4 from under ~150 px) carry a weak mark that
heavy recompression can erase.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "DEFAULT_KEY", "FOUND_FALSE_POSITIVE", "PAYLOAD_BITS", "WATERMARK_ALG", "WATERMARK_ALG_NAME",
    "Detection", "detect", "embed",
]

#: The documented public key of Avow's mark: anyone's ``avow verify`` can detect Avow output with it.
DEFAULT_KEY = "avow.dev/watermark/v1/public"
#: Identifier bits carried (e.g. the first 32 bits of a hash recorded in the manifest).
PAYLOAD_BITS = 32
#: The soft-binding algorithm name in C2PA manifests: reverse DNS under Avow's own domain, since
#: this is not one of the algorithms registered with the C2PA.
WATERMARK_ALG = "dev.avow.watermark.1"
WATERMARK_ALG_NAME = f"Avow pixel watermark v1 (not a registered C2PA soft-binding algorithm; public key {DEFAULT_KEY})"
#: ``found`` when the calibrated false-positive probability is at most this.
FOUND_FALSE_POSITIVE = 1e-6

TILE_SOURCE_PX = 64  # one period of the mark, in pixels of the upscaler's input
K_LO, K_HI = 8, 24  # band, in cycles per period (radius): 1/8 .. 3/8 cycle per input pixel
DETECT_SIDE = 1024  # detection runs on a luma copy at most this many pixels on its longer side
F_MAX_DETECT = 0.35  # highest mark frequency (cycles/px) allowed at the detector's resolution
ASSUMED_SCALE = 2.0  # source_size unknown: assume a x2 upscale, so a x0.5 resize keeps the mark
PILOT_FRACTION = 0.25
_WHITEN_BINS = 4  # half-width of the spectral smoothing that whitening divides by
_LOCAL_RADIUS = 4  # half-width of the local energy normalisation, detector pixels
# Periods the detector can measure, in its pixels: the band's top below Nyquist, and at most about
# one period per side (the coherent DTFT copes with that).
_SHORTEST_PERIOD = K_HI / 0.48
_LONGEST_PERIOD_PER_SIDE = 1.1

_CRC_BITS = 24
_INFO_BITS = PAYLOAD_BITS + _CRC_BITS
_TAIL = 6
_CODED_BITS = 3 * (_INFO_BITS + _TAIL)
_GENERATORS = (0o133, 0o171, 0o165)

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


@dataclass(frozen=True)
class Detection:
    found: bool
    score: float  # pilot correlation, in standard deviations of its no-mark distribution
    false_positive_probability: float  # probability that an unmarked image scores this high
    payload: int | None  # the decoded identifier when found and its CRC checks


# --------------------------------------------------------------------------- key material


@dataclass(frozen=True)
class _Layout:
    kx: np.ndarray  # lattice points of the half plane, cycles per period
    ky: np.ndarray
    pilot: np.ndarray  # bool, per point
    phase: np.ndarray  # unit complex, per point
    chip_point: np.ndarray  # for each payload chip: its point index
    chip_imag: np.ndarray  # bool: the chip rides on the imaginary part
    chip_bit: np.ndarray  # coded bit it repeats
    crc_mask: int


def _stream(key: str, label: str, count: int) -> np.ndarray:
    digest = hashlib.shake_256(f"avow-watermark-v1\0{label}\0{key}".encode()).digest(8 * count)
    return np.frombuffer(digest, dtype="<u8").copy()


def _points() -> tuple[np.ndarray, np.ndarray]:
    ky, kx = np.mgrid[0 : K_HI + 1, -K_HI : K_HI + 1]
    kx, ky = kx.ravel(), ky.ravel()
    radius = np.hypot(kx, ky)
    half = (ky > 0) | ((ky == 0) & (kx > 0))
    keep = half & (radius >= K_LO) & (radius <= K_HI)
    return kx[keep], ky[keep]


@lru_cache(maxsize=8)
def _layout(key: str) -> _Layout:
    if not isinstance(key, str) or not key:
        raise ValueError("watermark key must be a non-empty string")
    kx, ky = _points()
    count = kx.size
    order = np.argsort(_stream(key, "points", count), kind="stable")
    pilot = np.zeros(count, bool)
    pilot[order[: round(PILOT_FRACTION * count)]] = True
    phase = np.exp(2j * np.pi * (_stream(key, "phase", count) >> np.uint64(11)) / float(1 << 53))
    payload_points = np.flatnonzero(~pilot)
    chips = 2 * payload_points.size
    chip_point = np.repeat(payload_points, 2)
    chip_imag = np.tile([False, True], payload_points.size)
    shuffle = np.argsort(_stream(key, "interleave", chips), kind="stable")
    chip_bit = np.empty(chips, np.int64)
    chip_bit[shuffle] = np.arange(chips) % _CODED_BITS
    crc_mask = int(_stream(key, "crc", 1)[0]) & ((1 << _CRC_BITS) - 1)
    return _Layout(kx, ky, pilot, phase, chip_point, chip_imag, chip_bit, crc_mask)


# --------------------------------------------------------------------------- payload coding


def _crc(value: int, mask: int) -> int:
    """CRC-24 (OpenPGP polynomial) of the identifier's bytes, XOR a key-derived mask."""
    crc = 0xB704CE
    for byte in value.to_bytes(PAYLOAD_BITS // 8, "big"):
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return (crc & 0xFFFFFF) ^ mask


def _bits(value: int, count: int) -> np.ndarray:
    return np.array([(value >> (count - 1 - i)) & 1 for i in range(count)], np.uint8)


def _parity(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    out = np.zeros_like(values)
    while values.any():
        out ^= values & 1
        values >>= 1
    return out


@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each next state and each of its two predecessors: the predecessor and the 3 code bits."""
    next_states = np.arange(64)
    bit_in = next_states >> 5
    preds = np.stack([((next_states << 1) & 63) | low for low in (0, 1)], axis=1)  # (64, 2)
    registers = (bit_in[:, None] << 6) | preds
    outputs = np.stack([_parity(registers & g) for g in _GENERATORS], axis=2)  # (64, 2, 3)
    return preds, outputs.astype(np.int8), bit_in


def _encode(info: np.ndarray) -> np.ndarray:
    state = 0
    coded = []
    for bit in np.concatenate([info, np.zeros(_TAIL, np.uint8)]):
        register = (int(bit) << 6) | state
        coded += [(register & g).bit_count() & 1 for g in _GENERATORS]
        state = register >> 1
    return np.array(coded, np.uint8)


def _viterbi(soft: np.ndarray) -> np.ndarray:
    """Soft values (positive = bit 0), 3 per step; returns the information bits."""
    preds, outputs, bit_in = _trellis()
    signs = 1.0 - 2.0 * outputs  # (64, 2, 3)
    steps = soft.size // 3
    metric = np.full(64, -np.inf)
    metric[0] = 0.0
    choices = np.empty((steps, 64), np.int8)
    for step in range(steps):
        branch = signs @ soft[3 * step : 3 * step + 3]  # (64, 2)
        candidates = metric[preds] + branch
        choice = np.argmax(candidates, axis=1)
        choices[step] = choice
        metric = candidates[np.arange(64), choice]
    state = 0  # the tail drives the encoder back to zero
    bits = np.empty(steps, np.uint8)
    for step in range(steps - 1, -1, -1):
        bits[step] = bit_in[state]
        state = preds[state, choices[step, state]]
    return bits[: steps - _TAIL]


def _coefficients(layout: _Layout, payload: int) -> np.ndarray:
    info = np.concatenate([_bits(payload, PAYLOAD_BITS), _bits(_crc(payload, layout.crc_mask), _CRC_BITS)])
    chips = 1.0 - 2.0 * _encode(info).astype(np.float64)[layout.chip_bit]
    values = np.ones(layout.kx.size, np.complex128)
    re = np.zeros(layout.kx.size)
    im = np.zeros(layout.kx.size)
    np.add.at(re, layout.chip_point[~layout.chip_imag], chips[~layout.chip_imag])
    np.add.at(im, layout.chip_point[layout.chip_imag], chips[layout.chip_imag])
    payload_points = ~layout.pilot
    values[payload_points] = (re[payload_points] + 1j * im[payload_points]) / math.sqrt(2)
    return values * layout.phase


# --------------------------------------------------------------------------- embedding


def _luma(rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(rgb)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] == 0:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    scale = 1.0 / 255 if image.dtype == np.uint8 else (1.0 / 65535 if image.dtype == np.uint16 else 1.0)
    if image.shape[2] >= 3:
        luma = image[..., 0] * np.float32(0.299 * scale)
        luma += image[..., 1] * np.float32(0.587 * scale)
        luma += image[..., 2] * np.float32(0.114 * scale)
    else:
        luma = image[..., 0].astype(np.float32) * np.float32(scale)
    return np.nan_to_num(luma.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)


def _period(height: int, width: int, source_size: tuple[int, int] | None) -> float:
    """The tile's period in output pixels (the same along both axes: the detector's scan is isotropic)."""
    if source_size is None:
        return _period_at_scale(height, width, ASSUMED_SCALE)
    w0, h0 = (int(v) for v in source_size)
    if w0 <= 0 or h0 <= 0:
        raise ValueError(f"invalid source_size {source_size!r}")
    return _period_at_scale(height, width, max(width / w0, height / h0, 1.0))  # the coarser axis: both survive the downscale


def _period_at_scale(height: int, width: int, scale: float) -> float:
    # The detector resamples to DETECT_SIDE; the band must stay below its Nyquist limit there.
    needed = K_HI * max(height, width) / (F_MAX_DETECT * DETECT_SIDE)
    return max(TILE_SOURCE_PX * scale, needed)


def _pattern(rows: range, width: int, period: float, coefficients: np.ndarray, layout: _Layout) -> np.ndarray:
    """sum_k Re(c_k exp(2 pi i (kx x / px + ky y / py))) on ``rows``, unit RMS, by two separable
    matrix products."""
    grid = np.zeros((K_HI + 1, 2 * K_HI + 1), np.complex128)
    grid[layout.ky, layout.kx + K_HI] = coefficients
    ex = np.exp(2j * np.pi * np.outer(np.arange(-K_HI, K_HI + 1), np.arange(width)) / period)  # (2K+1, W)
    ey = np.exp(2j * np.pi * np.outer(np.arange(rows.start, rows.stop), np.arange(K_HI + 1)) / period)  # (R, K+1)
    columns = grid @ ex  # (K+1, W)
    pattern = ey.real @ columns.real - ey.imag @ columns.imag
    pattern *= 1.0 / math.sqrt(np.sum(np.abs(coefficients) ** 2) / 2)
    return pattern.astype(np.float32)


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated; O(n) by cumulative sums."""
    if radius < 1:
        return image.astype(np.float32, copy=False)
    size = 2 * radius + 1
    out = np.asarray(image, np.float32)
    for axis in (0, 1):
        moved = np.moveaxis(out, axis, 0)
        n = moved.shape[0]
        if radius <= 4:  # a few shifted additions beat a cumulative sum
            padded = np.concatenate([np.repeat(moved[:1], radius, axis=0), moved, np.repeat(moved[-1:], radius, axis=0)])
            window = padded[:n].copy()
            for shift in range(1, size):
                window += padded[shift : shift + n]
        else:
            padded = np.concatenate([np.repeat(moved[:1], radius + 1, axis=0), moved, np.repeat(moved[-1:], radius, axis=0)])
            summed = np.cumsum(padded, axis=0, dtype=np.float64)
            window = (summed[size:] - summed[:-size]).astype(np.float32)
        window *= np.float32(1.0 / size)
        out = np.ascontiguousarray(np.moveaxis(window, 0, axis))
    return out


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
        luma = _luma(np.clip(rgb[top * step : bottom * step, : w * step, :3], 0.0, 1.0))
        small[top:bottom] = luma.reshape(bottom - top, step, w, step).mean(axis=(1, 3), dtype=np.float32)
    return small


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
    """
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected float pixels in [0, 1], got {image.dtype}")
    payload = int(payload)
    if not 0 <= payload < (1 << PAYLOAD_BITS):
        raise ValueError(f"payload must fit in {PAYLOAD_BITS} bits")
    layouts = [_layout(k) for k in ((key,) if isinstance(key, str) else tuple(dict.fromkeys(key)))]
    if not layouts:
        raise ValueError("at least one watermark key is needed")
    height, width = image.shape[:2]
    out = image.astype(np.float32, copy=True)
    if height == 0 or width == 0:
        return out.astype(image.dtype, copy=False)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    period = _period(height, width, source_size)
    coefficients = [_coefficients(layout, payload) for layout in layouts]
    step = max(1, min(round(period / TILE_SOURCE_PX), height, width))
    coarse = _coarse_amplitude(_block_means(out, step))
    # Bands of rows keep the working memory to the output plus one float per pixel, whatever the size.
    delta = np.empty((height, width), np.float32)
    for top in range(0, height, _STRIP_ROWS):
        rows = range(top, min(height, top + _STRIP_ROWS))
        above, below = min(top, _SSIM_RADIUS), min(height - rows.stop, _SSIM_RADIUS)
        luma = _luma(np.clip(out[top - above : rows.stop + below, :, :3], 0.0, 1.0))
        limit = _ssim_limit(luma)[above : above + len(rows)]
        pattern = sum(_pattern(rows, width, period, c, layout) for c, layout in zip(coefficients, layouts))
        pattern *= np.float32(1 / math.sqrt(len(layouts)))  # independent keys: unit RMS again
        delta[top : rows.stop] = np.minimum(_upsample(coarse, rows, width, step), limit) * pattern
    rms = float(np.sqrt(np.mean(np.square(delta, dtype=np.float64))))
    if rms > _MAX_RMS:
        delta *= np.float32(_MAX_RMS / rms)
    out[..., :3] += delta[..., None]
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(image.dtype, copy=False)


# --------------------------------------------------------------------------- detection


def _fast_size(n: int) -> int:
    """Largest 5-smooth number <= n (fast FFT lengths)."""
    best = 1
    p2 = 1
    while p2 <= n:
        p3 = p2
        while p3 <= n:
            p5 = p3
            while p5 <= n:
                best = max(best, p5)
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return best


def _area_resize_axis(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    length = image.shape[axis]
    if size >= length:
        return image
    summed = np.cumsum(image, axis=axis, dtype=np.float64)
    summed = np.concatenate([np.zeros_like(np.take(summed, [0], axis=axis)), summed], axis=axis)
    edges = np.arange(size + 1) * (length / size)
    low = np.floor(edges).astype(np.int64)
    frac = edges - low
    low = np.minimum(low, length)
    high = np.minimum(low + 1, length)
    shape = [1, 1]
    shape[axis] = size + 1
    frac = frac.reshape(shape)
    at = np.take(summed, low, axis=axis) * (1 - frac) + np.take(summed, high, axis=axis) * frac
    return (np.diff(at, axis=axis) * (size / length)).astype(np.float32)


def _working_luma(rgb: np.ndarray) -> np.ndarray:
    """Luma at most DETECT_SIDE pixels long: block means in strips (bounded memory, any size),
    then an exact area resample; the same factor on both axes."""
    image = np.asarray(rgb)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    height, width = image.shape[:2]
    block = max(1, max(height, width) // DETECT_SIDE)
    if block == 1:
        luma = _luma(image)
    else:
        h, w = height // block, width // block
        luma = np.empty((h, w), np.float32)
        rows = max(1, (1 << 20) // (w * block * block))  # output rows per strip: ~1 M input pixels
        for start in range(0, h, rows):
            stop = min(h, start + rows)
            strip = _luma(image[start * block : stop * block, : w * block])
            luma[start:stop] = strip.reshape(stop - start, block, w, block).mean(axis=(1, 3), dtype=np.float32)
    longest = max(luma.shape)
    if longest > DETECT_SIDE:
        factor = DETECT_SIDE / longest
        luma = _area_resize_axis(luma, max(1, round(luma.shape[0] * factor)), 0)
        luma = _area_resize_axis(luma, max(1, round(luma.shape[1] * factor)), 1)
    return luma


def _smooth_spectrum(power: np.ndarray, radius: int) -> np.ndarray:
    """Box mean of a half-plane spectrum: wraps along the full axis, reflects along the half one."""
    padded = np.pad(power, ((radius, radius), (0, 0)), mode="wrap")
    padded = np.pad(padded, ((0, 0), (radius, radius)), mode="reflect")
    out = padded
    for axis in (0, 1):
        summed = np.cumsum(out, axis=axis, dtype=np.float64)
        zero = np.zeros_like(np.take(summed, [0], axis=axis))
        summed = np.concatenate([zero, summed], axis=axis)
        n = summed.shape[axis] - 1 - 2 * radius
        upper = np.take(summed, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lower = np.take(summed, np.arange(0, n), axis=axis)
        out = (upper - lower) / (2 * radius + 1)
    return out


def _whiten(luma: np.ndarray) -> np.ndarray | None:
    """Luma with a flat spectrum (global whitening) and unit local energy (local normalisation).

    Whitening turns the picture's 1/f spectrum into white noise against which the mark's lattice
    stands out; local normalisation then lets flat regions (weak host, weak mark) count as much
    as busy ones (strong host, strong mark), instead of being drowned by them.
    """
    height, width = _fast_size(luma.shape[0]), _fast_size(luma.shape[1])
    if min(height, width) < 48:
        return None
    top, left = (luma.shape[0] - height) // 2, (luma.shape[1] - width) // 2
    luma = luma[top : top + height, left : left + width].astype(np.float64)
    luma = luma - luma.mean()
    if float(np.abs(luma).max()) < 1e-5:
        return None
    spectrum = np.fft.rfft2(luma)
    power = spectrum.real**2 + spectrum.imag**2
    smooth = np.maximum(_smooth_spectrum(power, _WHITEN_BINS), max(float(power.mean()) * 1e-9, 1e-30))
    spectrum /= np.sqrt(smooth)
    spectrum[0, 0] = 0.0
    white = np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)
    energy = _box(white * white, _LOCAL_RADIUS)
    white /= np.sqrt(energy + np.float32(1e-2) * energy.mean())
    return white


def _scan(white: np.ndarray, layout: _Layout, grid: int = 64, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Pilot correlation (best translation) for every period from the smallest the band allows to
    about one period per side, isotropic, in steps fine enough not to miss it.

    The lattice coefficients are read from one zero-padded FFT (nearest bin, origin at the image
    centre, so a bin off by a quarter costs amplitude, not phase): a coherent search, far more
    sensitive than looking for the lattice's energy, for the price of one FFT and a few thousand
    64 x 64 FFTs.
    """
    height, width = white.shape
    padded = np.zeros((2 * height, 2 * width), np.float32)
    padded[:height, :width] = white
    padded = np.roll(padded, (-(height // 2), -(width // 2)), axis=(0, 1))
    spectrum = np.fft.rfft2(padded)
    longest = max(height, width)
    q_min, q_max = _SHORTEST_PERIOD, min(height, width) * _LONGEST_PERIOD_PER_SIDE
    periods = [q_min]
    while periods[-1] < q_max:  # half a padded bin at the highest frequency per step
        periods.append(periods[-1] * (1 + periods[-1] / (4 * K_HI * longest)))
    periods = np.array(periods)
    pilot = layout.pilot
    kx, ky = layout.kx[pilot].astype(np.float64), layout.ky[pilot].astype(np.float64)
    negative = kx < 0
    reference = np.conj(layout.phase[pilot])
    index = (layout.ky[pilot] % grid) * grid + (layout.kx[pilot] % grid)
    scores = np.empty(periods.size)
    for start in range(0, periods.size, batch):
        q = periods[start : start + batch, None]
        bx = np.rint(kx[None, :] * (2 * width) / q).astype(np.int64)
        by = np.rint(ky[None, :] * (2 * height) / q).astype(np.int64)
        values = spectrum[np.where(negative, -by, by) % (2 * height), np.abs(bx)]  # rfft half plane
        values = np.where(negative, np.conj(values), values)
        planes = np.zeros((q.shape[0], grid * grid), np.complex64)
        planes[:, index] = values / np.maximum(np.abs(values), 1e-30) * reference
        surfaces = np.fft.ifft2(planes.reshape(-1, grid, grid)).real
        scores[start : start + batch] = surfaces.reshape(q.shape[0], -1).max(axis=1)
    return periods, scores * (grid * grid) / math.sqrt(pilot.sum() / 2)


def _decimate(spectrum: np.ndarray, height: int, width: int, factor: int) -> np.ndarray:
    """The whitened image band-limited and resampled by 1/factor, from its spectrum (exact)."""
    if factor == 1:
        return np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)
    h, w = height // factor // 2 * 2, width // factor // 2 * 2
    cropped = np.concatenate([spectrum[: h // 2, : w // 2 + 1], spectrum[height - h // 2 :, : w // 2 + 1]], axis=0)
    return np.fft.irfft2(cropped, s=(h, w)).astype(np.float32)


def _candidates(periods: np.ndarray, scores: np.ndarray, count: int, separation: float) -> list[int]:
    chosen: list[int] = []
    for index in np.argsort(scores)[::-1]:
        if not np.isfinite(scores[index]) or len(chosen) == count:
            break
        if all(abs(math.log(periods[index] / periods[other])) > separation for other in chosen):
            chosen.append(int(index))
    return chosen


def _block_dft(white: np.ndarray, layout: _Layout, qx: float, qy: float, blocks_x: int, blocks_y: int):
    """DTFT of the image at each lattice point k / period, separately for blocks of the image.

    Returns the coefficients (blocks_y, blocks_x, points) and the block centres; summed over the
    blocks they are the whole image's. Per-block values let a small period correction be applied
    as a phase ramp across blocks without another pass over the pixels.
    """
    height, width = white.shape
    angle_x = (-2 * np.pi / qx) * np.outer(np.arange(width), np.arange(-K_HI, K_HI + 1))  # (W, 2K+1)
    cos_x, sin_x = np.cos(angle_x).astype(np.float32), np.sin(angle_x).astype(np.float32)
    ey = np.exp(-2j * np.pi * np.outer(np.arange(K_HI + 1), np.arange(height)) / qy)  # (K+1, H)
    cols = np.array_split(np.arange(width), blocks_x)
    rows = np.array_split(np.arange(height), blocks_y)
    out = np.empty((blocks_y, blocks_x, layout.kx.size), np.complex128)
    for j, col in enumerate(cols):
        part = white[:, col[0] : col[-1] + 1]
        lines = part @ cos_x[col[0] : col[-1] + 1] + 1j * (part @ sin_x[col[0] : col[-1] + 1])  # (H, 2K+1)
        for i, row in enumerate(rows):
            grid = ey[:, row[0] : row[-1] + 1] @ lines[row[0] : row[-1] + 1]
            out[i, j] = grid[layout.ky, layout.kx + K_HI]
    centres_x = np.array([c.mean() for c in cols])
    centres_y = np.array([r.mean() for r in rows])
    return out, centres_x, centres_y


def _retune(blocks, centres_x, centres_y, layout: _Layout, qx: float, qy: float, dx: np.ndarray, dy: np.ndarray):
    """Coefficients at periods qx(1+dx), qy(1+dy) (pairs) from the per-block ones: (pairs, points).

    A relative period error d shifts the phase of lattice point k by 2 pi k x d / q at position x;
    within a block that is taken at the block's centre.
    """
    kx, ky = layout.kx, layout.ky
    ax = np.exp(2j * np.pi * dx[:, None, None] * centres_x[None, :, None] * kx[None, None, :] / qx)  # (n, bx, k)
    ay = np.exp(2j * np.pi * dy[:, None, None] * centres_y[None, :, None] * ky[None, None, :] / qy)  # (n, by, k)
    return np.einsum("nik,ijk,njk->nk", ay, blocks, ax, optimize=True)


def _surfaces(coeffs: np.ndarray, layout: _Layout, grid: int) -> np.ndarray:
    """Pilot correlation over all translations (phase only), for a stack of coefficient sets."""
    pilot = layout.pilot
    unit = coeffs[..., pilot]
    unit = unit / np.maximum(np.abs(unit), 1e-30) * np.conj(layout.phase[pilot])
    stack = unit.reshape(-1, unit.shape[-1])
    planes = np.zeros((stack.shape[0], grid, grid), np.complex128)
    index = (layout.ky[pilot] % grid) * grid + (layout.kx[pilot] % grid)
    planes.reshape(stack.shape[0], -1)[:, index] = stack  # distinct points never collide: |k| < grid / 2
    surfaces = np.fft.ifft2(planes).real * (grid * grid)
    return surfaces.reshape(coeffs.shape[:-1] + (grid, grid))


def _peak(coeffs: np.ndarray, layout: _Layout) -> tuple[float, float, float]:
    """Pilot z-score and translation (in periods) for one coefficient set, with sub-grid refinement."""
    grid = 128
    surface = _surfaces(coeffs, layout, grid)
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)

    def offset(a: float, b: float, c: float) -> float:
        den = a - 2 * b + c
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))

    ty = (iy + offset(surface[(iy - 1) % grid, ix], surface[iy, ix], surface[(iy + 1) % grid, ix])) / grid
    tx = (ix + offset(surface[iy, (ix - 1) % grid], surface[iy, ix], surface[iy, (ix + 1) % grid])) / grid
    pilot = layout.pilot
    unit = coeffs[pilot] / np.maximum(np.abs(coeffs[pilot]), 1e-30) * np.conj(layout.phase[pilot])
    exact = float(np.sum((unit * np.exp(2j * np.pi * (layout.kx[pilot] * tx + layout.ky[pilot] * ty))).real))
    if exact < surface[iy, ix]:
        exact, tx, ty = float(surface[iy, ix]), ix / grid, iy / grid
    return exact / math.sqrt(pilot.sum() / 2), tx, ty


def _decode(coeffs: np.ndarray, layout: _Layout, tx: float, ty: float) -> int | None:
    unit = coeffs / np.maximum(np.abs(coeffs), 1e-30)
    aligned = unit * np.conj(layout.phase) * np.exp(2j * np.pi * (layout.kx * tx + layout.ky * ty))
    chips = np.where(layout.chip_imag, aligned[layout.chip_point].imag, aligned[layout.chip_point].real)
    soft = np.bincount(layout.chip_bit, weights=chips, minlength=_CODED_BITS)
    bits = _viterbi(soft)
    value = int("".join(map(str, bits[:PAYLOAD_BITS])), 2)
    crc = int("".join(map(str, bits[PAYLOAD_BITS:])), 2)
    return value if crc == _crc(value, layout.crc_mask) else None


# Multiple testing. The scan keeps the best of a few thousand periods x every translation, then
# refines the best few: under "no mark" its best score behaves like the maximum of
# _EFFECTIVE_TESTS independent standard normals; fitted on 1,000 unmarked pictures (originals,
# bicubic, Lanczos and model upscales, some JPEG-compressed) x 3 keys: 3.7e6 at the median,
# 2.2e7 at the 99th percentile; twice that, for margin (bench/bench_watermark.py --calibrate-keys).
# The native periods are four periods x every translation: 7.1e4 at the median, 8.8e4 at the 99th
# percentile of 1,000 such pictures x 6 keys; _NATIVE_TESTS is about twice that. The same periods
# turned or mirrored (seven more orientations): _TURNED_TESTS, fitted the same way.
_CANDIDATES = 3
_REFINE = ((1.5, 5), (0.5, 3))  # (half-span in scan steps, points per axis) per refinement pass
_EFFECTIVE_TESTS = 6.0e7
#: Upscale factors whose periods are tried exactly before any scan (see _native_periods).
_NATIVE_SCALES = (1, 2, 3, 4)
_NATIVE_TESTS = 2.0e5
_TURNED_TESTS = 1.4e6
_SEARCH_TESTS = {"scan": _EFFECTIVE_TESTS, "native": _NATIVE_TESTS, "turned": _TURNED_TESTS}
# Every scan and native candidate is decoded, a turned one only when its own score is already
# unusual (its pilot's false-positive probability at most _TURNED_DECODE, which under "no mark"
# lets through fewer than one turned candidate per picture on average: the + 1). Each decoded
# word of an unmarked picture passes the keyed CRC with probability 2^-24, so a pass anywhere has
# probability at most:
_CRC_FALSE_PASS = (_CANDIDATES + len(_NATIVE_SCALES) + 1) * 2.0**-_CRC_BITS
_TURNED_DECODE = 0.5
#: A copy turned by 90, 180 or 270 degrees or mirrored carries the coefficient the mark has at
#: lattice point k at M^T k, for one of these matrices (the identity is the native search).
_TURNS = ((0, -1, 1, 0), (-1, 0, 0, -1), (0, 1, -1, 0), (-1, 0, 0, 1), (1, 0, 0, -1), (0, 1, 1, 0), (0, -1, -1, 0))


def _tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _false_positive(z: float, tests: float) -> float:
    p = _tail(z)
    if p <= 0:
        return 0.0
    return float(-math.expm1(tests * math.log1p(-p))) if p < 1 else 1.0


@dataclass
class _Found:
    z: float
    coefficients: np.ndarray  # at the period found, one per lattice point
    tx: float  # translation, in periods
    ty: float
    search: str  # "native" (the periods Avow embeds, _native_periods), "turned" (the same, turned
    # or mirrored) or "scan"

    def false_positive(self, decoded: bool) -> float:
        """Probability that an unmarked picture gives a candidate this good: its search is charged
        for its own multiple testing, and there are three searches; a payload whose keyed CRC
        checks multiplies that by the chance of a pass in any of the decoded words."""
        probability = min(1.0, len(_SEARCH_TESTS) * _false_positive(self.z, _SEARCH_TESTS[self.search]))
        return probability * _CRC_FALSE_PASS if decoded else probability


class _Resolutions:
    """The whitened image at the coarsest resolution that still holds the band of a period:
    measuring there is cheaper, and exact (band-limited resampling of the spectrum)."""

    def __init__(self, white: np.ndarray):
        self.white = white
        self._spectrum: np.ndarray | None = None
        self._images: dict[int, np.ndarray] = {}

    def at(self, period: float) -> np.ndarray:
        factor = max(1, int(period * 0.42 / K_HI))
        if factor not in self._images:
            if self._spectrum is None:
                self._spectrum = np.fft.rfft2(self.white)
            self._images[factor] = _decimate(self._spectrum, *self.white.shape, factor)
        return self._images[factor]


def _measure(image: np.ndarray, layout: _Layout, qx: float, qy: float, search: str) -> _Found:
    exact, _, _ = _block_dft(image, layout, qx, qy, 1, 1)
    z, tx, ty = _peak(exact[0, 0], layout)
    return _Found(z, exact[0, 0], tx, ty, search)


def _scan_search(resolutions: _Resolutions, layout: _Layout) -> Iterator[_Found]:
    """The best few periods of the scan, each refined (x and y separately)."""
    white = resolutions.white
    height, width = white.shape
    if min(height, width) * _LONGEST_PERIOD_PER_SIDE <= _SHORTEST_PERIOD:
        return
    periods, scores = _scan(white, layout)
    for index in _candidates(periods, scores, _CANDIDATES, 0.015):
        image = resolutions.at(periods[index])
        # Decimation rounds each side separately: the period in its pixels, per axis.
        qx = float(periods[index]) * image.shape[1] / width
        qy = float(periods[index]) * image.shape[0] / height
        blocks_x = max(1, min(8, round(image.shape[1] / qx)))
        blocks_y = max(1, min(8, round(image.shape[0] / qy)))
        blocks, cx, cy = _block_dft(image, layout, qx, qy, blocks_x, blocks_y)
        # The scan's step is a quarter bin at the highest frequency; refine x and y separately
        # (a non-proportional resize) over a few steps, then finer.
        dx = dy = 0.0
        for span, points in _REFINE:
            step_x = span * qx / (4 * K_HI * image.shape[1])
            step_y = span * qy / (4 * K_HI * image.shape[0])
            grid = np.linspace(-1, 1, points)
            gx, gy = np.meshgrid(dx + grid * step_x, dy + grid * step_y)
            surfaces = _surfaces(_retune(blocks, cx, cy, layout, qx, qy, gx.ravel(), gy.ravel()), layout, 64)
            at = int(np.argmax(surfaces.reshape(gx.size, -1).max(axis=1)))
            dx, dy = float(gx.ravel()[at]), float(gy.ravel()[at])
        yield _measure(image, layout, qx * (1 + dx), qy * (1 + dy), "scan")


def _native_periods(height: int, width: int) -> list[float]:
    """The periods, in pixels of an ``height`` x ``width`` picture, that Avow's own x1 to x4
    outputs have when their size is kept (``_period`` with the picture as the output): a re-save,
    recompression, tone change, screenshot or crop. "Back to input size" is the x1 period.
    Tried exactly and first: a handful of periods is a far smaller multiple test than the scan,
    so a weaker mark is still found with confidence."""
    return sorted({_period_at_scale(height, width, scale) for scale in _NATIVE_SCALES})


def _native_search(resolutions: _Resolutions, layout: _Layout, size: tuple[int, int], luma_shape) -> Iterator[_Found]:
    """Each native period, then its seven turns; lazily, so a payload read early ends the search."""
    white = resolutions.white
    for period in _native_periods(*size):
        # In the working luma's pixels (it was resampled by possibly different factors per axis).
        qx, qy = period * luma_shape[1] / size[1], period * luma_shape[0] / size[0]
        if min(qx, qy) < _SHORTEST_PERIOD or max(qx / white.shape[1], qy / white.shape[0]) > _LONGEST_PERIOD_PER_SIDE:
            continue
        image = resolutions.at(max(qx, qy))
        native = _measure(image, layout, qx * image.shape[1] / white.shape[1], qy * image.shape[0] / white.shape[0], "native")
        yield native
        for index, conjugate in _turn_maps():
            coefficients = np.where(conjugate, np.conj(native.coefficients[index]), native.coefficients[index])
            z, tx, ty = _peak(coefficients, layout)
            yield _Found(z, coefficients, tx, ty, "turned")


@lru_cache(maxsize=1)
def _turn_maps() -> list[tuple[np.ndarray, np.ndarray]]:
    """For each turn M: where M^T k lies among the lattice points (or its mirror -M^T k, whose
    coefficient is the conjugate: the picture is real), for every point k."""
    kx, ky = _points()
    where = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(kx, ky))}
    maps = []
    for a, b, c, d in _TURNS:
        jx, jy = a * kx + c * ky, b * kx + d * ky  # M^T k, M = ((a, b), (c, d))
        conjugate = np.array([(int(x), int(y)) not in where for x, y in zip(jx, jy)])
        index = np.array([where[(-x, -y) if flip else (x, y)] for x, y, flip in zip(jx.tolist(), jy.tolist(), conjugate)])
        maps.append((index, conjugate))
    return maps


def _examine(rgb: np.ndarray, layout: _Layout, full_size: tuple[int, int] | None = None) -> Iterator[_Found]:
    """Every candidate of the three searches, the native and turned ones first: the scan, four
    fifths of the work, runs only if asked for more (none when the picture is too small or blank)."""
    image = np.asarray(rgb)
    try:
        luma = _working_luma(image)
    except (ValueError, TypeError):
        return
    white = _whiten(luma)
    if white is None:
        return
    resolutions = _Resolutions(white)
    size = image.shape[:2] if full_size is None else (int(full_size[1]), int(full_size[0]))
    yield from _native_search(resolutions, layout, size, luma.shape)
    yield from _scan_search(resolutions, layout)


def detect(rgb: np.ndarray, key: str = DEFAULT_KEY, *, full_size: tuple[int, int] | None = None) -> Detection:
    """Look for the mark of ``key`` in ``rgb``: float in [0, 1] or uint8 (uint16 too), H x W x 3
    (grey H x W and an alpha channel are accepted), any size: resized, cropped, recompressed.
    ``full_size`` is the picture's (width, height) when ``rgb`` is a reduced decode of it (a JPEG
    decoded at 1/2 to 1/8 scale): the periods Avow embeds are those of the full size.

    ``score`` is the best candidate's pilot correlation in standard deviations of its no-mark
    distribution; ``false_positive_probability`` the probability that an unmarked picture does
    as well (far smaller when the payload's keyed CRC checks); ``found`` when it is at most
    FOUND_FALSE_POSITIVE. ``payload`` is the identifier when found and its CRC checks, else None
    (found with payload None: the mark is there but too damaged to read the identifier).
    """
    layout = _layout(key)
    fpp, best_z, best_payload = 1.0, 0.0, None
    for candidate in _examine(rgb, layout, full_size):
        payload = None
        if candidate.search != "turned" or candidate.false_positive(False) <= _TURNED_DECODE:
            payload = _decode(candidate.coefficients, layout, candidate.tx, candidate.ty)
        candidate_fpp = candidate.false_positive(payload is not None)
        if (candidate_fpp, -candidate.z) < (fpp, -best_z):
            fpp, best_z, best_payload = candidate_fpp, candidate.z, payload
        if payload is not None:
            break  # found, identifier read: a re-saved or cropped output needs no scan
    found = fpp <= FOUND_FALSE_POSITIVE
    return Detection(found, float(best_z), fpp, best_payload if found else None)
