"""Embedding: the keyed periodic pattern, shaped by a perceptual mask and capped."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .coding import (
    ASSUMED_SCALE,
    DEFAULT_KEY,
    K_HI,
    PAYLOAD_BITS,
    TILE_SOURCE_PX,
    _coefficients,
    _harmonics,
    _Layout,
    _layout,
    _period_at_scale,
)
from .pixels import _area_resize_axis, _box, _luma

# Perceptual mask: amplitude (RMS of the unit pattern times this) as a fraction of full scale.
_FLOOR = 0.004  # flat areas: RMS amplitude per unit of (0.1 + brightness)
_GAIN = 0.6  # per unit of local texture (luma RMS in the mark's band), see _TEXTURE_EXPONENT
_TEXTURE_REF = 3.0 / 255  # texture masking: linear below this level, texture^exponent above
_TEXTURE_EXPONENT = 0.6
_CAP = 5.0 / 255
_SSIM_LOSS = 0.02  # at most this much local SSIM lost anywhere
_MAX_RMS = 2.4 / 255  # overall cap: PSNR >= 40.5 dB against the unmarked output
_SSIM_RADIUS = 2  # context rows each side of a strip: one 2 x 2 block
_BLOCK_RADIUS = 1  # SSIM windows of 3 x 3 blocks
_CYCLE_BYTES = 32 << 20  # one period of the pattern kept, rather than made again for each strip
_STRIP_ROWS = 128  # embedding works on strips of rows: at 8k pixels wide, 12 MiB of float each


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
    # Times exp(2 pi i k x / period) for k = -K..K, which is row K - k of the harmonics (an exp of
    # each element cost most of the marker's set-up): each coefficient goes in that column.
    grid = np.zeros((K_HI + 1, 2 * K_HI + 1), np.complex128)
    grid[layout.ky, K_HI - layout.kx] = coefficients
    return grid @ _harmonics(width, period)


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, step: int) -> np.ndarray:
    """Bilinear interpolation of a grid whose cells are ``step`` pixels, at pixel positions ``ys`` x ``xs``."""

    def axis_weights(positions: np.ndarray, size: int):
        pos = np.clip((positions + 0.5) / step - 0.5, 0, size - 1)
        low = np.floor(pos).astype(np.int64)
        high = np.minimum(low + 1, size - 1)
        return low, high, (pos - low).astype(np.float32)

    low, high, frac = axis_weights(ys, image.shape[0])
    band = image[low] * (1 - frac[:, None]) + image[high] * frac[:, None]
    low, high, frac = axis_weights(xs, image.shape[1])
    return band[:, low] * (1 - frac[None, :]) + band[:, high] * frac[None, :]


def _min_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Minimum over a (2r+1)^2 window, edges replicated: shifted slices, no index arrays."""
    out = image
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        windows = [padded[(slice(None),) * axis + (slice(shift, shift + out.shape[axis]),)]
                   for shift in range(2 * radius + 1)]
        out = windows[0].copy()
        for window in windows[1:]:
            np.minimum(out, window, out=out)
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
    texture = _min_filter(texture, 3)
    brightness = _box(small, 3)
    # Masking grows linearly with weak texture, then compressively (strong texture hides less
    # per unit, and SSIM would object).
    strong = texture > _TEXTURE_REF
    texture[strong] = _TEXTURE_REF * np.power(texture[strong] / _TEXTURE_REF, _TEXTURE_EXPONENT)
    amplitude = np.sqrt((_FLOOR * (0.1 + brightness)) ** 2 + (_GAIN * texture) ** 2)
    return _box(np.minimum(amplitude, _CAP), 2)


def _halved(luma: np.ndarray) -> np.ndarray:
    """Means of 2 x 2 blocks (an odd last row or column: its own block, doubled)."""
    if len(luma) % 2:
        luma = np.concatenate([luma, luma[-1:]])
    pairs = luma[0::2] + luma[1::2]
    if pairs.shape[1] % 2:
        pairs = np.concatenate([pairs, pairs[:, -1:]], axis=1)
    pairs = pairs[:, 0::2] + pairs[:, 1::2]
    pairs *= np.float32(0.25)
    return pairs


def _ssim_limit(luma: np.ndarray) -> np.ndarray:
    """Adding noise of variance a^2 where the picture's local variance is s^2 costs SSIM about
    a^2 / (2 s^2 + C2) there: the amplitude that costs _SSIM_LOSS, on the 2 x 2 blocks of ``luma``
    (rows from an even picture row). The variance is taken over 3 x 3 blocks (6 x 6 pixels, SSIM
    uses 7 x 7) from block means of luma and its square, so it is exact for those windows and costs
    a quarter of a full-resolution filter; the smaller window only lowers the limit beside an edge."""
    mean = _box(_halved(luma), _BLOCK_RADIUS)
    variance = np.maximum(_box(_halved(luma * luma), _BLOCK_RADIUS) - mean * mean, 0.0)
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
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Mark ``rgb`` (float H x W x 3 in [0, 1], the synthesized output before quantisation) with
    ``payload`` (an integer of PAYLOAD_BITS bits); returns the same shape and dtype, in [0, 1].

    Several keys (the public one plus a user's own) give superposed marks that share the same
    amplitude budget, each detectable with its key alone, each about 3 dB weaker than one mark.

    ``source_size`` is the (width, height) of the upscaler's input: the mark lives in frequencies
    that survive scaling back down to it (unknown: a x2 upscale is assumed). ``reference`` (see
    ``Marker``): the upscaler's input, whose luma sets the mark's coarse amplitude; by default the
    picture's own. A fourth (alpha) channel is left alone. Deterministic: the same input, key and
    payload give the same pixels. ``embed_in_place`` gives the same pixels without the copy.
    """
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected float pixels in [0, 1], got {image.dtype}")
    out = image.astype(np.float32, copy=True)
    embed_in_place(out, payload, key, source_size, reference)
    return out.astype(image.dtype, copy=False)


def embed_in_place(
    image: np.ndarray,
    payload: int,
    key: str | Sequence[str] = DEFAULT_KEY,
    source_size: tuple[int, int] | None = None,
    reference: np.ndarray | None = None,
) -> None:
    """``embed`` on a writable float32 H x W x C array (C >= 3), in its own memory: ``Marker``
    fed the whole picture as one band, each strip added back where it came from."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {np.shape(image)}")
    if image.dtype != np.float32 or not image.flags.writeable:
        raise TypeError(f"expected a writable float32 array, got {image.dtype}")
    height, width = image.shape[:2]
    for top in range(0, height, _STRIP_ROWS):
        pixels = image[top : top + _STRIP_ROWS]
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN or infinity makes the sum one: one cheap pass
            finite = math.isfinite(np.sum(pixels, dtype=np.float32))
        if not finite:
            np.nan_to_num(pixels, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(pixels, 0.0, 1.0, out=pixels)

    def put(top: int, unmarked: np.ndarray, delta: np.ndarray) -> None:
        add_mark(unmarked, delta, image[top : top + len(delta)])

    marker = Marker(height, width, payload, key, source_size, image if reference is None else reference, put)
    if height and width:
        marker.feed(image)


def add_mark(unmarked: np.ndarray, delta: np.ndarray, out: np.ndarray, clip: bool = True) -> None:
    """``out`` = the marked rows as float in [0, 1] (``out`` may be ``unmarked`` itself; channels
    of ``out`` beyond the third are copied, a grey ``out`` gets the first). ``clip`` False leaves
    values outside [0, 1] to a caller that clips anyway (quantisation). One channel at a time: a
    broadcast over a trailing axis of 3 runs numpy's inner loop 3 elements long, 1.4x slower."""
    colors = min(3, out.shape[2])
    for channel in range(colors):
        np.add(unmarked[..., channel], delta, out=out[..., channel])
    if clip:
        np.clip(out[..., :colors], 0.0, 1.0, out=out[..., :colors])
    if out.shape[2] > 3 and not np.may_share_memory(out, unmarked):
        out[..., 3:] = unmarked[..., 3:]


Put = Callable[[int, np.ndarray, np.ndarray], None]


class Marker:
    """The mark made while the picture arrives as bands of rows, top to bottom, in any sizes.

    It works on strips of ``_STRIP_ROWS`` rows fixed in the picture, so the pixels do not depend on
    how the bands were cut. A strip's SSIM limit reads three rows beyond it on each side, so it is
    made once three rows of the next band have arrived; the rows not yet marked (under a strip
    and three rows) are kept, nothing else. For each strip ``put(top, unmarked, delta)`` gets its
    unmarked rows (float32, C >= 3 channels, in [0, 1]) and the mark to add to each of the first
    three channels (float32 rows x W): the caller adds it where the rows go (``add_mark``, or
    quantised with it in one pass), so no marked float copy of the picture is needed.

    The amplitude's global parts come from ``reference`` before any output exists: the coarse
    amplitude map from its luma (the picture itself, or the upscaler's input: the output's block
    means at the mark's step are an area-resampled input), and the overall RMS cap as a budget per
    strip: what is left of the cap's total, shared among the strips not yet marked in proportion
    to the energy the coarse map predicts for each (so what a strip leaves unused goes to all those
    below it); a strip over its budget is scaled down to it. So the cap holds for the whole picture
    (PSNR >= 40.5 dB against the unmarked output) with no pass over the output.
    """

    def __init__(
        self,
        height: int,
        width: int,
        payload: int,
        key: str | Sequence[str],
        source_size: tuple[int, int] | None,
        reference: np.ndarray,
        put: Put,
    ) -> None:
        payload = int(payload)
        if not 0 <= payload < (1 << PAYLOAD_BITS):
            raise ValueError(f"payload must fit in {PAYLOAD_BITS} bits")
        layouts = _layouts(key)
        self.height, self.width, self.put = height, width, put
        if height == 0 or width == 0:
            return
        self.period = _period(height, width, source_size)
        marks = [(layout, _coefficients(layout, payload)) for layout in layouts]
        # One float32 product per strip: [cos | -sin](rows) @ [Re; Im](columns), summed over the keys.
        parts = [np.concatenate([x.real, x.imag]) / _norm(c) for x, c in ((_columns(width, self.period, c, lay), c)
                                                                        for lay, c in marks)]
        self.columns = np.concatenate(parts).astype(np.float32) * np.float32(1 / math.sqrt(len(layouts)))  # keys: unit RMS again
        self.keys = len(layouts)
        whole = self.period.is_integer() and self.period * width * 4 <= _CYCLE_BYTES
        self.cycle = self._made(range(int(self.period))) if whole and self.period < height else None
        self.step = max(1, min(round(self.period / TILE_SOURCE_PX), height, width))
        self.coarse = _coarse_amplitude(_means(reference, height, width, self.step)).astype(np.float32)
        self.energies = self._energies()
        self.left = _MAX_RMS**2 * height * width  # of the cap's total squared mark
        self.next = 0  # first row not yet marked
        self.received = 0
        self.pending = np.empty((0, width, 3), np.float32)  # unmarked rows up to ``received``, from ``next`` or before
        self.above = np.empty((0, width), np.float32)  # luma of up to _SSIM_RADIUS rows above ``next``

    def _energies(self) -> list[float]:
        """Each strip's predicted share of the mark's energy (the coarse map's, squared)."""
        cells = np.mean(np.square(self.coarse, dtype=np.float64), axis=1)
        rows = cells[np.minimum(np.arange(self.height) // self.step, len(cells) - 1)]
        return [float(e) for e in np.add.reduceat(rows, np.arange(0, self.height, _STRIP_ROWS))]

    def feed(self, band: np.ndarray) -> None:
        """The next rows, unmarked (float32 in [0, 1], C >= 3 channels). Not kept after the call:
        rows still needed are copied."""
        if band.shape[1] != self.width or self.received + len(band) > self.height:
            raise ValueError(f"band of shape {band.shape} does not fit a {self.width}x{self.height} picture")
        start, self.received = self.received, self.received + len(band)
        kept = self.pending[self.next - (start - len(self.pending)) :] if len(self.pending) else band[:0]
        while self.next < self.received:
            stop = min(self.next + _STRIP_ROWS, self.height)
            below = min(stop + _SSIM_RADIUS, self.height)
            if below > self.received:
                break
            if self.next >= start:
                rows = band[self.next - start : below - start]
            else:
                rows = np.concatenate([kept[self.next - (start - len(kept)) :], band[: below - start]])
            self._strip(range(self.next, stop), rows)
        if self.next >= start:
            self.pending = band[self.next - start :].copy()
        else:
            self.pending = np.concatenate([kept[self.next - (start - len(kept)) :], band])

    def _strip(self, rows: range, pixels: np.ndarray) -> None:
        """Mark ``rows`` from ``pixels`` (their unmarked rows and up to _SSIM_RADIUS below). The
        amplitude is made on 2 x 2 blocks (strips start on even rows) and repeated on each block's
        pixels: the pattern carries the mark's detail, the amplitude only shapes it."""
        luma = _luma(pixels[..., :3], finite=True)
        above = len(self.above)
        limit = _ssim_limit(np.concatenate([self.above, luma]))[above // 2 : (above + len(rows) + 1) // 2]
        blocks = 2 * np.arange(limit.shape[0]) + rows.start + 0.5, 2 * np.arange(limit.shape[1]) + 0.5
        amplitude = np.minimum(_bilinear(self.coarse, *blocks, self.step), limit, out=limit)
        columns = np.repeat(amplitude, 2, axis=1)[:, : self.width]
        pattern = self._pattern(rows)
        delta = np.empty_like(pattern)
        pairs = len(rows) // 2  # each row of blocks scales two rows of the pattern: a broadcast, no repeated rows
        np.multiply(pattern[: 2 * pairs].reshape(pairs, 2, self.width), columns[:pairs, None],
                    out=delta[: 2 * pairs].reshape(pairs, 2, self.width))
        if len(rows) % 2:
            np.multiply(pattern[-1], columns[pairs], out=delta[-1])
        squares = float(np.einsum("ij,ij->", delta, delta))  # numpy's own loop: see _pattern
        strip = rows.start // _STRIP_ROWS
        predicted = sum(self.energies[strip:])
        budget = self.left * (self.energies[strip] / predicted if predicted > 0 else 1.0)
        if squares > budget:
            delta *= np.float32(math.sqrt(budget / squares) * (1 - 1e-6))  # float32 rounding stays under
            squares = budget
        self.left = max(0.0, self.left - squares)
        self.above = luma[len(rows) - min(len(rows), _SSIM_RADIUS) : len(rows)]
        self.next = rows.stop
        self.put(rows.start, pixels[: len(rows)], delta)

    def _pattern(self, rows: range) -> np.ndarray:
        """sum_k Re(c_k exp(2 pi i (kx x / px + ky y / py))) on ``rows``, unit RMS (see ``_columns``),
        read-only. A whole number of rows per period (64 input pixels at an integer scale: the usual
        case) repeats the same rows, made once: a view of them where the strip does not wrap."""
        if self.cycle is not None:
            start = rows.start % len(self.cycle)
            if start + len(rows) <= len(self.cycle):
                return self.cycle[start : start + len(rows)]
            return np.take(self.cycle, np.arange(rows.start, rows.stop) % len(self.cycle), axis=0)
        return self._made(rows)

    def _made(self, rows: range) -> np.ndarray:
        phase = 2 * np.pi * np.outer(np.arange(rows.start, rows.stop), np.arange(K_HI + 1)) / self.period
        ey = np.concatenate([np.cos(phase), -np.sin(phase)], axis=1).astype(np.float32)
        return np.tile(ey, self.keys) @ self.columns


def _norm(coefficients: np.ndarray) -> float:
    return math.sqrt(np.sum(np.abs(coefficients) ** 2) / 2)


def _means(reference: np.ndarray, height: int, width: int, step: int) -> np.ndarray:
    """Luma averaged over the mark's step x step cells of a height x width output: the output's
    own block means, or those of an input area-resampled onto the cells."""
    if reference.shape[:2] == (height, width):
        return _block_means(reference, step)
    cells = (height // step, width // step)
    # Clipped after the luma (no clipped copy of the input's planes); fmax/fmin also send NaN to 0.
    luma = _luma(reference[..., :3], finite=True)
    np.fmin(np.fmax(luma, 0.0, out=luma), 1.0, out=luma)
    # The cells cover the output's first cells * step rows and columns: that part of the input.
    covered = [max(1, round(cells[axis] * step * luma.shape[axis] / size)) for axis, size in enumerate((height, width))]
    luma = luma[: covered[0], : covered[1]]
    for axis, size in enumerate(cells):
        if size <= luma.shape[axis]:
            luma = _area_resize_axis(luma, size, axis)
        else:  # finer cells than input pixels (a step below the scale): each takes the pixel it lies in
            luma = np.take(luma, (2 * np.arange(size) + 1) * luma.shape[axis] // (2 * size), axis=axis)
    return np.ascontiguousarray(luma, np.float32)
