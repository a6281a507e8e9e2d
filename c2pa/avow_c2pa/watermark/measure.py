"""Measuring the lattice: the scale scan, exact DTFTs at a period (per block, retunable), the
pilot's phase-only correlation over every translation, and the payload's decoding."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .coding import _CODED_BITS, K_HI, PAYLOAD_BITS, _crc, _harmonics, _Layout, _viterbi

# Periods the detector can measure, in its pixels: the band's top below Nyquist, and at most about
# one period per side (the coherent DTFT copes with that).
_SHORTEST_PERIOD = K_HI / 0.48
_LONGEST_PERIOD_PER_SIDE = 1.1


@lru_cache(maxsize=16)
def _scan_periods(height: int, width: int) -> np.ndarray:
    """Every period from the smallest the band allows to about one period per side, isotropic, in
    steps of one bin at the band's top frequency: with each lattice point read between bins
    (``_pilot_surfaces``), a true period half a step away loses less than the nearest-bin reads
    of half-bin steps did, for half the periods (small inputs, x0.6 + crop 70 % + JPEG q70: 38
    of 42 photographs found, against 36 with half-bin steps and the nearest bin). Kept per size,
    read-only: a folder's pictures mostly share a few sizes, and the loop costs half a millisecond."""
    longest = max(height, width)
    q_min, q_max = _SHORTEST_PERIOD, min(height, width) * _LONGEST_PERIOD_PER_SIDE
    periods = [q_min]
    while periods[-1] < q_max:
        periods.append(periods[-1] * (1 + periods[-1] / (K_HI * longest)))
    out = np.array(periods)
    out.flags.writeable = False
    return out


def _centred(spectrum: np.ndarray, height: int, width: int) -> np.ndarray:
    """The rfft2 spectrum of a ``height`` x ``width`` image with its origin moved to the image's
    centre: read between its bins, a lattice point's value is then a real, sinc-weighted sum of
    its neighbours, and a bin off by a fraction costs amplitude, not phase."""
    row_phase = np.exp(2j * np.pi * np.arange(height) * (height // 2) / height).astype(np.complex64)
    col_phase = np.exp(2j * np.pi * np.arange(width // 2 + 1) * (width // 2) / width).astype(np.complex64)
    return (spectrum * row_phase[:, None] * col_phase[None, :]).astype(np.complex64, copy=False)


def _pilot_surfaces(centred: np.ndarray, shape: tuple[int, int], layout: _Layout, periods: np.ndarray,
                    angles: np.ndarray | None = None) -> np.ndarray:
    """Pilot correlation (phase only), best of a 64 x 64 grid of translations, per period (and
    lattice turned by ``angles``, radians, when given), from the ``_centred`` spectrum of an
    image of ``shape``. Each lattice point k / period is read from its 2 x 2 neighbouring bins,
    weighted by sinc of the offsets (the first terms of the exact interpolation between bins):
    the nearest bin alone kept as little as 0.64 of a point's amplitude (half a bin off), under
    half its signal-to-noise ratio, and so lost the period a resize left on a small picture:
    after x0.6, crop 70 % and JPEG q70 the true period read 3.4-3.8 against an unmarked
    picture's best of 4.5-5, ranked 8th to beyond the 30th, where these reads rank it first or
    second (small inputs, seven such photographs).
    A coarser grid of translations would cost most of a weak mark's score when its translation
    falls between grid points."""
    height, width = shape
    columns = width // 2 + 1
    pilot = layout.pilot
    kx, ky = layout.kx[pilot].astype(np.float32), layout.ky[pilot].astype(np.float32)
    if angles is not None:
        cos, sin = np.cos(angles)[:, None].astype(np.float32), np.sin(angles)[:, None].astype(np.float32)
        kx, ky = kx * cos - ky * sin, kx * sin + ky * cos
    negative = kx < 0  # read at -k, in the stored half plane, and conjugated
    inverse = (1.0 / periods[:, None]).astype(np.float32)
    rows = inverse * np.where(negative, -ky, ky) * np.float32(height)  # fractional bins
    cols = inverse * np.abs(kx) * np.float32(width)
    row0, col0 = np.floor(rows), np.floor(cols)
    row_offset, col_offset = rows - row0, cols - col0  # in [0, 1): to the bin below; 1 - it to the one above
    row_weights = (np.sinc(row_offset), np.sinc(1 - row_offset))
    col_weights = (np.sinc(col_offset), np.sinc(1 - col_offset))
    row0 = row0.astype(np.int64)
    col0 = np.minimum(col0.astype(np.int64), columns - 2)  # the band's top lies below Nyquist
    flat = centred.ravel()
    values = np.zeros(rows.shape, np.complex64)
    for dy in (0, 1):
        base = ((row0 + dy) % height) * columns + col0
        for dx in (0, 1):
            values += (row_weights[dy] * col_weights[dx]) * flat[base + dx]
    values = np.where(negative, np.conj(values), values)
    unit = values / np.maximum(np.abs(values), np.float32(1e-30)) * np.conj(layout.phase[pilot]).astype(np.complex64)
    surfaces = _correlation(unit, layout, 64)  # 64 > 2 K_HI: distinct points never collide
    return surfaces.max(axis=(-2, -1)) / math.sqrt(pilot.sum() / 2)


def _correlation(unit: np.ndarray, layout: _Layout, grid: int) -> np.ndarray:
    """sum_k unit_k exp(2 pi i k.t), real part, for every translation t on a grid x grid lattice
    of one period: (..., grid [ty], grid [tx]) for a stack of pilot values (..., pilots).

    The real part of a transform is the transform of the spectrum's Hermitian part, which a real
    inverse transform takes on half the plane (the pilot points all lie in the half plane ky >= 0):
    half the points at ky > 0, and on the ky = 0 line, whose imaginary part irfft discards, the
    point itself. Four to five times cheaper than the complex transform's real part, same values.
    """
    pilot = layout.pilot
    kx, ky = layout.kx[pilot], layout.ky[pilot]
    stack = unit.reshape(-1, unit.shape[-1])
    half = np.zeros((stack.shape[0], grid, grid // 2 + 1), np.complex64)  # axes: kx, ky (the half one)
    weight = np.where(ky > 0, 0.5, 1.0).astype(np.float32) * np.float32(grid * grid)  # undoes irfft's 1 / grid^2
    half.reshape(stack.shape[0], -1)[:, (kx % grid) * (grid // 2 + 1) + ky] = weight * stack
    surfaces = np.fft.irfft2(half, s=(grid, grid))
    return np.swapaxes(surfaces.reshape(unit.shape[:-1] + (grid, grid)), -1, -2)


def _scan(white: np.ndarray, centred: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Pilot correlation (best translation) for every period of the scan, read from the whitened
    image's own (``_centred``) spectrum: no zero-padded transform (four times the pixels to
    transform); reads between its bins keep the loss small."""
    periods = _scan_periods(*white.shape)
    scores = np.concatenate([_pilot_surfaces(centred, white.shape, layout, periods[start : start + 128])
                             for start in range(0, periods.size, 128)])
    return periods, scores


def _decimate(spectrum: np.ndarray, height: int, width: int, factor: int) -> np.ndarray:
    """The whitened image band-limited and resampled by 1/factor, from its spectrum (exact)."""
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
    x = _harmonics(width, qx)  # (2K+1, W)
    cos_sin = np.concatenate([x.real, x.imag]).T.astype(np.float32)  # (W, 2(2K+1)): one product gives both parts
    ey = _harmonics(height, qy)[K_HI:]  # (K+1, H): k = 0..K
    cols = np.array_split(np.arange(width), blocks_x)
    rows = np.array_split(np.arange(height), blocks_y)
    out = np.empty((blocks_y, blocks_x, layout.kx.size), np.complex128)
    for j, col in enumerate(cols):
        both = white[:, col[0] : col[-1] + 1] @ cos_sin[col[0] : col[-1] + 1]
        lines = both[:, : 2 * K_HI + 1] + 1j * both[:, 2 * K_HI + 1 :]  # (H, 2K+1)
        for i, row in enumerate(rows):
            grid = ey[:, row[0] : row[-1] + 1] @ lines[row[0] : row[-1] + 1]
            out[i, j] = grid[layout.ky, layout.kx + K_HI]
    centres_x = np.array([c.mean() for c in cols])
    centres_y = np.array([r.mean() for r in rows])
    return out, centres_x, centres_y


def _retune(blocks, centres_x, centres_y, layout: _Layout, qx: float, qy: float, dx: np.ndarray, dy: np.ndarray):
    """Coefficients at every period qx(1+dx[j]) x qy(1+dy[i]) from the per-block ones: (i, j, points).

    A relative period error d shifts the phase of lattice point k by 2 pi k x d / q at position x;
    within a block that is taken at the block's centre. The two axes' ramps are separate factors,
    so each is made once per value, not once per pair, and the blocks are summed one axis at a time.
    """
    kx, ky = layout.kx, layout.ky
    ax = np.exp(2j * np.pi * dx[:, None, None] * centres_x[None, :, None] * kx[None, None, :] / qx)  # (j, bx, k)
    ay = np.exp(2j * np.pi * dy[:, None, None] * centres_y[None, :, None] * ky[None, None, :] / qy)  # (i, by, k)
    rows = np.einsum("abk,jbk->jak", blocks, ax)  # (j, by, k): each row of blocks at period qx(1 + dx[j])
    return np.einsum("iak,jak->ijk", ay, rows)


def _surfaces(coeffs: np.ndarray, layout: _Layout, grid: int) -> np.ndarray:
    """Pilot correlation over all translations (phase only), for a stack of coefficient sets."""
    pilot = layout.pilot
    unit = coeffs[..., pilot]
    unit = unit / np.maximum(np.abs(unit), 1e-30) * np.conj(layout.phase[pilot])
    return _correlation(unit, layout, grid)  # distinct points never collide: |k| < grid / 2


def _peak(coeffs: np.ndarray, layout: _Layout) -> tuple[float, float, float]:
    """Pilot z-score and translation (in periods) for one coefficient set (see ``_peaks``)."""
    z, tx, ty = _peaks(coeffs[None], layout)
    return float(z[0]), float(tx[0]), float(ty[0])


def _peaks(stack: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pilot z-score and translation (in periods) for each of a stack (n, points) of coefficient
    sets, with sub-grid refinement (from a 128 grid: on a coarser one a weak mark's translation,
    and so its payload, is lost). One transform for the stack: the seven turned orientations of a
    period cost a fifth of seven calls."""
    grid = 128
    surface = _surfaces(stack, layout, grid).reshape(len(stack), grid, grid)
    rows = np.arange(len(stack))
    iy, ix = np.divmod(surface.reshape(len(stack), -1).argmax(axis=1), grid)
    centre = surface[rows, iy, ix].astype(np.float64)

    def offset(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        a, c = a.astype(np.float64), c.astype(np.float64)
        den = a - 2 * centre + c
        safe = np.where(den < 0, den, -1.0)
        return np.where(den < 0, np.clip(0.5 * (a - c) / safe, -0.5, 0.5), 0.0)

    ty = (iy + offset(surface[rows, (iy - 1) % grid, ix], surface[rows, (iy + 1) % grid, ix])) / grid
    tx = (ix + offset(surface[rows, iy, (ix - 1) % grid], surface[rows, iy, (ix + 1) % grid])) / grid
    exact = _pilot_sums(stack, layout, tx, ty)
    coarse = exact < centre
    exact = np.where(coarse, centre, exact)
    tx, ty = np.where(coarse, ix / grid, tx), np.where(coarse, iy / grid, ty)
    return exact / math.sqrt(layout.pilot.sum() / 2), tx, ty


def _pilot_sums(coeffs: np.ndarray, layout: _Layout, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """The pilot's phase-only correlation (unnormalised) of coefficient sets (..., points) at
    translations ``tx``, ``ty`` (in periods, broadcast against the sets' leading axes), exactly:
    between the grid points of ``_surfaces``."""
    pilot = layout.pilot
    unit = coeffs[..., pilot] / np.maximum(np.abs(coeffs[..., pilot]), 1e-30) * np.conj(layout.phase[pilot])
    turns = np.exp(2j * np.pi * (layout.kx[pilot] * tx[..., None] + layout.ky[pilot] * ty[..., None]))
    return np.sum((unit * turns).real, axis=-1)


def _decode(coeffs: np.ndarray, layout: _Layout, tx: float, ty: float) -> int | None:
    unit = coeffs / np.maximum(np.abs(coeffs), 1e-30)
    aligned = unit * np.conj(layout.phase) * np.exp(2j * np.pi * (layout.kx * tx + layout.ky * ty))
    chips = np.where(layout.chip_imag, aligned[layout.chip_point].imag, aligned[layout.chip_point].real)
    soft = np.bincount(layout.chip_bit, weights=chips, minlength=_CODED_BITS)
    bits = _viterbi(soft)
    value = int("".join(map(str, bits[:PAYLOAD_BITS])), 2)
    crc = int("".join(map(str, bits[PAYLOAD_BITS:])), 2)
    return value if crc == _crc(value, layout.crc_mask) else None
