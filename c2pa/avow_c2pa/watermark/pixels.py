"""Pixel helpers shared by embedder and detector, and the detector's preparation of a picture:
a bounded-size luma copy, whitened and locally normalised."""

from __future__ import annotations

import math

import numpy as np

from .coding import DETECT_MIN_SIDE, DETECT_SIDE

_WHITEN_BINS = 4  # half-width of the spectral smoothing that whitening divides by
_LOCAL_RADIUS = 4  # half-width of the local energy normalisation, detector pixels
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(rgb: np.ndarray, finite: bool = False) -> np.ndarray:
    """``finite``: the caller vouches there is no NaN or infinity (the embedder's clipped bands),
    which spares a pass."""
    image = np.asarray(rgb)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] == 0:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    scale = 1.0 / 255 if image.dtype == np.uint8 else (1.0 / 65535 if image.dtype == np.uint16 else 1.0)
    if image.dtype == np.float32 and image.shape[2] == 3 and image.flags.c_contiguous:
        # One BLAS product over the interleaved pixels (the embedder's strips): 1/6 of the CPU of
        # three strided passes, on one BLAS thread (see ``avow/__init__``).
        luma = (image.reshape(-1, 3) @ _LUMA_WEIGHTS).reshape(image.shape[:2])
    elif image.shape[2] >= 3:
        luma = image[..., 0] * np.float32(0.299 * scale)
        luma += image[..., 1] * np.float32(0.587 * scale)
        luma += image[..., 2] * np.float32(0.114 * scale)
    else:
        luma = image[..., 0].astype(np.float32) * np.float32(scale)
    luma = luma.astype(np.float32, copy=False)
    return luma if finite else np.nan_to_num(luma, nan=0.0, posinf=1.0, neginf=0.0)



def _box(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated; O(n) by cumulative sums."""
    if radius < 1:
        return image.astype(np.float32, copy=False)
    size = 2 * radius + 1
    out = np.asarray(image, np.float32)
    for axis in (0, 1):
        n = out.shape[axis]
        if radius <= 4:  # a few shifted additions beat a cumulative sum; slices along the axis, no transposes
            first, last = np.take(out, [0], axis), np.take(out, [n - 1], axis)
            padded = np.concatenate([np.repeat(first, radius, axis), out, np.repeat(last, radius, axis)], axis=axis)
            window = padded[(slice(None),) * axis + (slice(0, n),)].copy()
            for shift in range(1, size):
                window += padded[(slice(None),) * axis + (slice(shift, shift + n),)]
            window *= np.float32(1.0 / size)
            out = window
            continue
        moved = np.moveaxis(out, axis, 0)
        padded = np.concatenate([np.repeat(moved[:1], radius + 1, axis=0), moved, np.repeat(moved[-1:], radius, axis=0)])
        summed = np.cumsum(padded, axis=0, dtype=np.float64)
        window = (summed[size:] - summed[:-size]).astype(np.float32)
        window *= np.float32(1.0 / size)
        out = np.ascontiguousarray(np.moveaxis(window, 0, axis))
    return out



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
    """Exact area resampling along ``axis`` to ``size`` samples: each output sample is the mean of
    the input interval it covers, a weighted sum of the few input samples it overlaps."""
    length = image.shape[axis]
    if size >= length:
        return image
    ratio = length / size
    start = np.arange(size) * ratio
    low = np.floor(start).astype(np.int64)
    shape = [1, 1]
    shape[axis] = size
    out = np.zeros(tuple(size if a == axis else n for a, n in enumerate(image.shape)), np.float32)
    for tap in range(math.ceil(ratio) + 1):
        index = low + tap
        weight = (np.minimum(start + ratio, index + 1) - np.maximum(start, index)).clip(0) / ratio
        out += np.take(image, np.minimum(index, length - 1), axis=axis) * weight.astype(np.float32).reshape(shape)
    return out


def _working_luma(rgb: np.ndarray, block: int = 1) -> np.ndarray:
    """Luma at most DETECT_SIDE pixels long: block means in strips (bounded memory, any size), as
    coarse as DETECT_MIN_SIDE allows (or ``block``, when the caller knows the band allows more),
    then an exact area resample if still longer; the same factor on both axes."""
    image = np.asarray(rgb)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    height, width = image.shape[:2]
    block = max(1, block, max(height, width) // DETECT_MIN_SIDE)
    finite = image.dtype.kind in "uib"  # whole numbers are never NaN or infinite: no pass to replace them
    if block == 1:
        luma = _luma(image, finite)
    else:
        h, w = height // block, width // block
        luma = np.empty((h, w), np.float32)
        rows = max(1, (1 << 20) // (w * block * block))  # output rows per strip: ~1 M input pixels
        for start in range(0, h, rows):
            stop = min(h, start + rows)
            strip = _luma(image[start * block : stop * block, : w * block], finite)
            mean = luma[start:stop]
            mean[:] = strip[::block, ::block]
            for offset in range(1, block * block):  # strided sums: ten times a mean over reshaped axes
                mean += strip[offset // block :: block, offset % block :: block]
            mean *= np.float32(1.0 / (block * block))
    longest = max(luma.shape)
    if longest > DETECT_SIDE:
        factor = DETECT_SIDE / longest
        luma = _area_resize_axis(luma, max(1, round(luma.shape[0] * factor)), 0)
        luma = _area_resize_axis(luma, max(1, round(luma.shape[1] * factor)), 1)
    return luma


def _rfft2(image: np.ndarray) -> np.ndarray:
    """``np.fft.rfft2(image)``, computed as the "forward"-normalised transform times the image's
    size: the same spectrum, but numpy 2's pocketfft runs a transform that scales its output two
    to four times faster than one that does not (0.5 MP: 10 -> 5 ms; 0.75 MP: 20 -> 6 ms)."""
    return np.fft.rfft2(image, norm="forward") * np.float32(image.size)


def _smooth_spectrum(power: np.ndarray, radius: int) -> np.ndarray:
    """Box mean of a half-plane spectrum: wraps along the full axis, reflects along the half one.
    Shifted additions, not cumulative sums: a photograph's power spans many decades, which
    differences of running sums would lose in single precision."""
    out = np.pad(power, ((radius, radius), (0, 0)), mode="wrap")
    out = np.pad(out, ((0, 0), (radius, radius)), mode="reflect")
    size = 2 * radius + 1
    return _window_sums(_window_sums(out, size, 0), size, 1) * np.float32(1.0 / (size * size))


def _window_sums(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sums of ``size`` consecutive samples along ``axis`` (n - size + 1 of them) by doubling:
    sums of 1, 2, 4 ... samples, each from two of the previous, the ones ``size`` needs added
    up; about log2(size) passes instead of size - 1 shifted additions."""
    def part(array: np.ndarray, start: int, length: int) -> np.ndarray:
        return array[(slice(None),) * axis + (slice(start, start + length),)]

    count = values.shape[axis] - size + 1
    total: np.ndarray | None = None
    sums, width, offset = values, 1, 0  # sums of ``width`` samples
    while True:
        if size & width:
            piece = part(sums, offset, count)
            total = piece.copy() if total is None else np.add(total, piece, out=total)
            offset += width
        if 2 * width > size:
            assert total is not None  # size >= 1 has a set bit
            return total
        length = sums.shape[axis] - width
        sums, width = part(sums, 0, length) + part(sums, width, length), 2 * width


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
    luma = luma[top : top + height, left : left + width].astype(np.float32)
    luma = luma - np.float32(luma.mean(dtype=np.float64))
    if float(np.abs(luma).max()) < 1e-5:
        return None
    spectrum = _rfft2(luma)
    power = spectrum.real**2 + spectrum.imag**2
    smooth = np.maximum(_smooth_spectrum(power, _WHITEN_BINS), max(float(power.mean(dtype=np.float64)) * 1e-9, 1e-30))
    parts = spectrum.view(np.float32).reshape(*spectrum.shape, 2)  # real and imaginary: a real scale, no complex division
    parts *= (1 / np.sqrt(smooth))[..., None]
    spectrum[0, 0] = 0.0
    white = np.fft.irfft2(spectrum, s=(height, width))
    energy = _box(white * white, _LOCAL_RADIUS)
    white /= np.sqrt(energy + np.float32(1e-2) * energy.mean())
    return white
