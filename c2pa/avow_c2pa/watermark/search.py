"""Detection: the native, turned, rotated and scan searches over a prepared picture, lazily, and the verdict."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .calibration import (
    _CANDIDATES,
    _MAX_ROTATION,
    _NATIVE_SCALES,
    _REFINE,
    _REFINE_FROM,
    _TURNED_DECODE,
    _TURNS,
    _Found,
)
from .coding import (
    DEFAULT_KEY,
    FOUND_FALSE_POSITIVE,
    K_HI,
    _Layout,
    _layout,
    _period_at_scale,
    _points,
)
from .measure import (
    _LONGEST_PERIOD_PER_SIDE,
    _SHORTEST_PERIOD,
    _block_dft,
    _candidates,
    _centred,
    _decimate,
    _decode,
    _peak,
    _peaks,
    _pilot_surfaces,
    _retune,
    _scan,
    _surfaces,
)
from .pixels import _rfft2, _whiten, _working_luma


@dataclass(frozen=True)
class Detection:
    found: bool
    score: float  # pilot correlation, in standard deviations of its no-mark distribution
    false_positive_probability: float  # probability that an unmarked image scores this high
    payload: int | None  # the decoded identifier when found and its CRC checks



class _Resolutions:
    """The whitened image at the coarsest resolution that still holds the band of a period:
    measuring there is cheaper, and exact (band-limited resampling of the spectrum)."""

    def __init__(self, white: np.ndarray):
        self.white = white
        self._spectrum: np.ndarray | None = None
        self._centred: np.ndarray | None = None
        self._images: dict[int, np.ndarray] = {}

    @property
    def spectrum(self) -> np.ndarray:
        if self._spectrum is None:
            self._spectrum = _rfft2(self.white)
        return self._spectrum

    @property
    def centred(self) -> np.ndarray:
        if self._centred is None:
            self._centred = _centred(self.spectrum, *self.white.shape)
        return self._centred

    def at(self, period: float) -> np.ndarray:
        factor = _decimation(period)
        if factor == 1:
            return self.white
        if factor not in self._images:
            height, width = self.white.shape
            self._images[factor] = _decimate(self.spectrum, height, width, factor)
        return self._images[factor]


def _decimation(period: float) -> int:
    """How many times coarser than its own pixels an image may be sampled for a period of
    ``period`` of them: the band's top stays below 0.42 cycle per sample."""
    return max(1, int(period * 0.42 / K_HI))


def _measure(image: np.ndarray, layout: _Layout, qx: float, qy: float, search: str) -> _Found:
    exact, _, _ = _block_dft(image, layout, qx, qy, 1, 1)
    z, tx, ty = _peak(exact[0, 0], layout)
    return _Found(z, exact[0, 0], tx, ty, search)


_CLAIMED_PERIODS = 3  # periods a side of the centre a claimed period is first measured on (_claimed_windows)

# Outputs of inputs up to 384 px upscaled x4 (issue 17's small inputs) are at most 1536 x 1536.
_SMALL_PICTURE = 1536 * 1536


def _scan_search(resolutions: _Resolutions, layout: _Layout, size: tuple[int, int]) -> Iterator[_Found]:
    """The best few periods of the scan whose score could become a finding, each refined (x and
    y separately). On a picture of up to _SMALL_PICTURE pixels the best one is refined whatever
    its score: a resize and crop leave a small input's weak mark at 4-6 there, like an unmarked
    picture's best, yet mostly first, and refined it reads 6-8 with its payload (small inputs,
    photographs, x0.6 + crop 70 % + JPEG q70: found in 38 of 42, then JPEG q75 in 37; all three
    refined found one more, for 20 CPU ms more on an unmarked 0.5 MP picture)."""
    white = resolutions.white
    height, width = white.shape
    if min(height, width) * _LONGEST_PERIOD_PER_SIDE <= _SHORTEST_PERIOD:
        return
    periods, scores = _scan(white, resolutions.centred, layout)
    small = size[0] * size[1] <= _SMALL_PICTURE
    for rank, index in enumerate(_candidates(periods, scores, _CANDIDATES, 0.015)):
        if scores[index] < _REFINE_FROM and not (small and rank == 0):
            break
        image = resolutions.at(periods[index])
        # Decimation rounds each side separately: the period in its pixels, per axis.
        qx = float(periods[index]) * image.shape[1] / width
        qy = float(periods[index]) * image.shape[0] / height
        blocks_x = max(1, min(8, round(image.shape[1] / qx)))
        blocks_y = max(1, min(8, round(image.shape[0] / qy)))
        blocks, cx, cy = _block_dft(image, layout, qx, qy, blocks_x, blocks_y)
        # The scan's step is a bin at the highest frequency; refine x and y separately (a
        # non-proportional resize) over a few quarter bins, then finer.
        dx = dy = 0.0
        for span, points in _REFINE:
            step_x = span * qx / (4 * K_HI * image.shape[1])
            step_y = span * qy / (4 * K_HI * image.shape[0])
            grid = np.linspace(-1, 1, points)
            gx, gy = dx + grid * step_x, dy + grid * step_y
            surfaces = _surfaces(_retune(blocks, cx, cy, layout, qx, qy, gx, gy), layout, 64)
            at_y, at_x = np.unravel_index(int(np.argmax(surfaces.max(axis=(-2, -1)))), (gy.size, gx.size))
            dx, dy = float(gx[at_x]), float(gy[at_y])
        yield _measure(image, layout, qx * (1 + dx), qy * (1 + dy), "scan")


def _native_periods(height: int, width: int) -> list[float]:
    """The periods, in pixels of an ``height`` x ``width`` picture, that Avow's own x1 to x4
    outputs have when their size is kept (``_period`` with the picture as the output): a re-save,
    recompression, tone change, screenshot or crop. "Back to input size" is the x1 period.
    Tried exactly and first: a handful of periods is a far smaller multiple test than the scan,
    so a weaker mark is still found with confidence."""
    return sorted({_period_at_scale(height, width, scale) for scale in _NATIVE_SCALES})


def _working_periods(white: np.ndarray, size: tuple[int, int], luma_shape) -> Iterator[tuple[float, float]]:
    """The native periods the whitened image can hold, in its pixels per axis (the working luma
    was resampled by possibly different factors per axis)."""
    for period in _native_periods(*size):
        qx, qy = period * luma_shape[1] / size[1], period * luma_shape[0] / size[0]
        if _measurable(white, qx, qy):
            yield qx, qy


def _measurable(white: np.ndarray, qx: float, qy: float) -> bool:
    return min(qx, qy) >= _SHORTEST_PERIOD and max(qx / white.shape[1], qy / white.shape[0]) <= _LONGEST_PERIOD_PER_SIDE


def _native_search(resolutions: _Resolutions, layout: _Layout, size: tuple[int, int], luma_shape) -> Iterator[_Found]:
    """Each native period, then its seven turns; lazily, so a payload read early ends the search."""
    white = resolutions.white
    for qx, qy in _working_periods(white, size, luma_shape):
        image = resolutions.at(max(qx, qy))
        native = _measure(image, layout, qx * image.shape[1] / white.shape[1], qy * image.shape[0] / white.shape[0], "native")
        yield native
        turned = np.stack([np.where(conjugate, np.conj(native.coefficients[index]), native.coefficients[index])
                           for index, conjugate in _turn_maps()])
        for coefficients, z, tx, ty in zip(turned, *_peaks(turned, layout), strict=True):
            yield _Found(float(z), coefficients, float(tx), float(ty), "turned")


def _rotated_search(resolutions: _Resolutions, layout: _Layout, size: tuple[int, int], luma_shape) -> Iterator[_Found]:
    """The native periods, their lattice turned by small angles (a straightened horizon, a tilted
    scan or screenshot): every angle up to _MAX_ROTATION, read from the spectrum; the best (period,
    angle) measured exactly on the image turned back. On a picture of up to _SMALL_PICTURE pixels
    whatever its score: there a weak mark's best angle reads 4-5 from the spectrum's bins, no more
    than an unmarked picture's, yet measured exactly its payload reads (small inputs: found after
    a 0.5-2 degree rotation and JPEG in 37 of 42 photographs with a threshold, 40 of 42 without). A larger
    picture holds more periods, so its mark reads above _REFINE_FROM there, and a camera-size
    picture with no mark is spared the rotation. One exact measurement at most, counted in
    _ROTATED_TESTS (every angle of every native period)."""
    white = resolutions.white
    longest = max(white.shape)
    best: tuple[float, float, float, float] | None = None  # score read from the bins, qx, qy, angle
    for qx, qy in _working_periods(white, size, luma_shape):
        period = math.sqrt(qx * qy)
        step = period / (K_HI * longest)  # radians: the band's top moves by a bin
        angles = np.arange(step, math.radians(_MAX_ROTATION) + step / 2, step)
        angles = np.concatenate([angles, -angles])
        scores = _pilot_surfaces(resolutions.centred, white.shape, layout, np.full(angles.size, period), angles)
        top = int(np.argmax(scores))
        if best is None or scores[top] > best[0]:
            best = (float(scores[top]), qx, qy, float(angles[top]))
    if best is not None and (size[0] * size[1] <= _SMALL_PICTURE or best[0] >= _REFINE_FROM):
        _, qx, qy, angle = best
        image = _rotate(resolutions.at(max(qx, qy)), angle)
        yield _measure(image, layout, qx * image.shape[1] / white.shape[1], qy * image.shape[0] / white.shape[0], "rotated")


def _rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """``image`` turned about its centre so that a lattice found turned by ``angle`` (radians) is
    upright again; bilinear, zero outside (the whitened image's mean). The source positions are
    an outer sum of a row and a column term, and the four neighbours are read with flat indices
    into the image padded by two (a position off the picture reads only padding): a third of the
    CPU of 2-D fancy indexing over a full coordinate grid."""
    height, width = image.shape
    y = np.arange(height, dtype=np.float32) - np.float32((height - 1) / 2)
    x = np.arange(width, dtype=np.float32) - np.float32((width - 1) / 2)
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    sx = (cos * x + np.float32((width - 1) / 2))[None, :] - (sin * y)[:, None]
    sy = (sin * x)[None, :] + (cos * y + np.float32((height - 1) / 2))[:, None]
    x0, y0 = np.floor(sx), np.floor(sy)
    sx -= x0  # the fractions
    sy -= y0
    stride = width + 4
    flat = np.clip(y0 + 2, 0, height + 2).astype(np.int64) * stride + np.clip(x0 + 2, 0, width + 2).astype(np.int64)
    padded = np.pad(image, 2).ravel()
    top = padded.take(flat)
    top += (padded.take(flat + 1) - top) * sx
    flat += stride
    bottom = padded.take(flat)
    bottom += (padded.take(flat + 1) - bottom) * sx
    bottom -= top
    bottom *= sy
    top += bottom
    return top


@lru_cache(maxsize=1)
def _turn_maps() -> list[tuple[np.ndarray, np.ndarray]]:
    """For each turn M: where M^T k lies among the lattice points (or its mirror -M^T k, whose
    coefficient is the conjugate: the picture is real), for every point k."""
    kx, ky = _points()
    where = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(kx, ky, strict=True))}
    maps = []
    for a, b, c, d in _TURNS:
        jx, jy = a * kx + c * ky, b * kx + d * ky  # M^T k, M = ((a, b), (c, d))
        conjugate = np.array([(int(x), int(y)) not in where for x, y in zip(jx, jy, strict=True)])
        turned = zip(jx.tolist(), jy.tolist(), conjugate, strict=True)
        index = np.array([where[(-x, -y) if flip else (x, y)] for x, y, flip in turned])
        maps.append((index, conjugate))
    return maps


def _examine(rgb: np.ndarray, layout: _Layout, full_size: tuple[int, int] | None = None) -> Iterator[_Found]:
    """Every candidate of the four searches, the native and turned ones first: the scan, four
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
    yield from _rotated_search(resolutions, layout, size, luma.shape)
    yield from _scan_search(resolutions, layout, size)


def claimed_reduction(full_size: tuple[int, int], scale: int) -> int:
    """How many times smaller than its full (width, height) a picture may be decoded to look for
    the period Avow gives a ``scale`` output of that size: its band stays below the Nyquist limit."""
    width, height = full_size
    return _decimation(_period_at_scale(height, width, scale)) if scale in _NATIVE_SCALES else 1


def detect_claimed(rgb: np.ndarray, key: str = DEFAULT_KEY, *, scale: int,
                   full_size: tuple[int, int] | None = None) -> Detection | None:
    """The mark found at the one period Avow gives a ``scale`` output of this size (what a manifest
    or XMP claims), or None. That period alone, on a luma copy block-averaged as far as its band
    allows (a x2 output: a quarter of the pixels to whiten): a file whose records say what it is
    costs a fraction of the full search. Only a payload read there counts; None otherwise, and
    the caller runs ``detect`` as if nothing had been claimed: a claim decides nothing."""
    image = np.asarray(rgb)
    if scale not in _NATIVE_SCALES or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        return None
    size = (image.shape[0], image.shape[1]) if full_size is None else (int(full_size[1]), int(full_size[0]))
    if min(size) < 1:
        return None
    ratio = min(image.shape[0] / size[0], image.shape[1] / size[1])  # a reduced decode's
    try:
        luma = _working_luma(image, max(1, int(claimed_reduction((size[1], size[0]), scale) * ratio)))
    except (ValueError, TypeError):
        return None
    period = _period_at_scale(size[0], size[1], scale)
    qx, qy = period * luma.shape[1] / size[1], period * luma.shape[0] / size[0]
    layout = _layout(key)
    for window in _claimed_windows(luma, qx, qy):
        white = _whiten(window)
        if white is None or not _measurable(white, qx, qy):
            continue
        candidate = _measure(white, layout, qx, qy, "native")
        payload = _decode(candidate.coefficients, layout, candidate.tx, candidate.ty)
        fpp = candidate.false_positive(True)
        if payload is not None and fpp <= FOUND_FALSE_POSITIVE:
            return Detection(True, float(candidate.z), fpp, payload)
    return None


def _claimed_windows(luma: np.ndarray, qx: float, qy: float) -> Iterator[np.ndarray]:
    """Where a claimed period is measured: first the centre, _CLAIMED_PERIODS periods a side,
    when that is at most half the picture, then the whole picture. A file as Avow wrote it reads
    its payload in the centre alone at a third of the cost (model upscales of 768-1536 px, JPEG
    q90: 16 of 18; bench/bench_verify.py's signed outputs: 10 of 10); a weaker copy costs one
    small measurement more, and is measured whole as before."""
    height, width = min(luma.shape[0], math.ceil(_CLAIMED_PERIODS * qy)), min(luma.shape[1], math.ceil(_CLAIMED_PERIODS * qx))
    if 2 * height * width <= luma.size:
        top, left = (luma.shape[0] - height) // 2, (luma.shape[1] - width) // 2
        yield luma[top : top + height, left : left + width]
    yield luma


def detect(rgb: np.ndarray, key: str = DEFAULT_KEY, *, full_size: tuple[int, int] | None = None,
           scale: int | None = None) -> Detection:
    """Look for the mark of ``key`` in ``rgb``: float in [0, 1] or uint8 (uint16 too), H x W x 3
    (grey H x W and an alpha channel are accepted), any size: resized, cropped, recompressed.
    ``full_size`` is the picture's (width, height) when ``rgb`` is a reduced decode of it (a JPEG
    decoded at 1/2 to 1/8 scale): the periods Avow embeds are those of the full size.

    ``score`` is the best candidate's pilot correlation in standard deviations of its no-mark
    distribution; ``false_positive_probability`` the probability that an unmarked picture does
    as well (far smaller when the payload's keyed CRC checks); ``found`` when it is at most
    FOUND_FALSE_POSITIVE. ``payload`` is the identifier when found and its CRC checks, else None
    (found with payload None: the mark is there but too damaged to read the identifier).

    ``scale``: the upscale factor a record (a manifest, XMP) claims for the picture: its period is
    tried first (``detect_claimed``); the pixels still decide.
    """
    claimed = None if scale is None else detect_claimed(rgb, key, scale=scale, full_size=full_size)
    if claimed is not None:
        return claimed
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
