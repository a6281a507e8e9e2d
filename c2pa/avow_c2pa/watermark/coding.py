"""The mark's geometry and key material, and the payload's error-correcting code: what embedder
and detector must agree on, derived from the key alone (SHAKE-256, the same on every install)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

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
#: A working copy (or a reduced JPEG decode) whose longer side is at least this still holds the band
#: below 0.45 cycle/px: the detector may work on it without resampling to DETECT_SIDE.
DETECT_MIN_SIDE = math.ceil(DETECT_SIDE * F_MAX_DETECT / 0.45)
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
    branches = np.einsum("abc,sc->sab", signs, soft[: 3 * steps].reshape(steps, 3))  # every step's, at once
    metric = np.full(64, -np.inf)
    metric[0] = 0.0
    choices = np.empty((steps, 64), np.int8)
    for step in range(steps):
        candidates = metric[preds] + branches[step]
        choice = candidates[:, 1] > candidates[:, 0]  # argmax: the first on a tie
        choices[step] = choice
        metric = np.where(choice, candidates[:, 1], candidates[:, 0])
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



def _harmonics(length: int, period: float) -> np.ndarray:
    """exp(-2 pi i k t / period) for k = -K_HI..K_HI and t < ``length``, (2 K_HI + 1, length), row
    K_HI + k for k: the mark's harmonics along one axis (the embedder's pattern, the detector's
    exact DTFT), as powers of k = 1, a multiplication a row, and their conjugates below k = 0: a
    twentieth of the CPU of a sine and a cosine per element (864 columns: 0.06 against 1.3 ms),
    within 1e-12 of them."""
    out = np.empty((2 * K_HI + 1, length), np.complex128)
    out[K_HI] = 1.0
    out[K_HI + 1] = np.exp(-2j * np.pi * np.arange(length) / period)
    for k in range(K_HI + 2, 2 * K_HI + 1):
        np.multiply(out[k - 1], out[K_HI + 1], out=out[k])
    np.conjugate(out[: K_HI : -1], out=out[:K_HI])
    return out


def _period_at_scale(height: int, width: int, scale: float) -> float:
    # The detector resamples to DETECT_SIDE; the band must stay below its Nyquist limit there.
    needed = K_HI * max(height, width) / (F_MAX_DETECT * DETECT_SIDE)
    return max(TILE_SOURCE_PX * scale, needed)
