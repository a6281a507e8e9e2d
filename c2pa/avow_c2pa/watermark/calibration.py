"""The false-positive probability of a candidate: each search's effective number of independent
tests (fitted on unmarked pictures by bench/bench_watermark.py) and the keyed CRC's chance pass."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .coding import _CRC_BITS

# Multiple testing. The scan keeps the best of a few thousand periods x every translation, then
# refines the best few: under "no mark" its best score behaves like the maximum of
# _EFFECTIVE_TESTS independent standard normals; fitted on 1,000 unmarked pictures (originals,
# bicubic, Lanczos and model upscales, some JPEG-compressed) x 3 keys: 3.7e6 at the median,
# 2.2e7 at the 99th percentile; twice that, for margin (bench/bench_watermark.py --calibrate-keys).
# With the scan's reads between bins: 3.5e5 and 4.1e6 (1,000 pictures x 2 keys).
# The native periods are four periods x every translation: 7.1e4 at the median, 8.8e4 at the 99th
# percentile of 1,000 such pictures x 6 keys; _NATIVE_TESTS is about twice that. The same periods
# turned or mirrored (seven more orientations): _TURNED_TESTS, fitted the same way.
_CANDIDATES = 3
# Per refinement pass: half-span in quarter bins at the band's top, points per axis. The scan's
# step is a bin there, so a true period lies within half a bin of one scanned; a first pass of
# +-0.625 bin on 7 points found fewer (small inputs, 42 photographs after x0.6 + crop 70 % +
# JPEG q70, alone and then JPEG q75: 37 and 36 against 38 and 38).
_REFINE = ((1.5, 5), (0.5, 3))
# A scan or rotated candidate of a picture over _SMALL_PICTURE is measured exactly only from
# this score (as the scan reads it): unmarked pictures' best reads 4.8 at the median and 5.5 at
# the 99th percentile (200 of bench_watermark's unmarked pictures), while outputs found after a
# resize had 7.6 and above (bicubic upscales of 768-1536 px, x0.6 / x0.8 / x1.3, with and
# without JPEG q75). Refinement adds about a third; what is not measured is not charged, so the
# probabilities stay conservative.
_REFINE_FROM = 5.0
_EFFECTIVE_TESTS = 6.0e7
#: Upscale factors whose periods are tried exactly before any scan (see _native_periods).
_NATIVE_SCALES = (1, 2, 3, 4)
_NATIVE_TESTS = 2.0e5
_TURNED_TESTS = 1.4e6
# The native periods turned by small angles (up to _MAX_ROTATION degrees, a few dozen angles),
# the best measured exactly: charged as 50 native searches, an upper bound (neighbouring angles
# are strongly correlated); fitted on 1,000 unmarked pictures x 2 keys it is 3.6e4 at the median,
# 2.0e5 at the 99th percentile (2.1e4 and 6.6e4 when the angles were read from the nearest bin),
# so the probabilities it reports are conservative.
_MAX_ROTATION = 2.5
_ROTATED_TESTS = 50 * _NATIVE_TESTS
_SEARCH_TESTS = {"scan": _EFFECTIVE_TESTS, "native": _NATIVE_TESTS, "turned": _TURNED_TESTS, "rotated": _ROTATED_TESTS}
# Every scan and native candidate is decoded, a turned one only when its own score is already
# unusual (its pilot's false-positive probability at most _TURNED_DECODE, which under "no mark"
# lets through fewer than one turned candidate per picture on average: the + 1). Each decoded
# word of an unmarked picture passes the keyed CRC with probability 2^-24, so a pass anywhere has
# probability at most (the last + 2: the period a manifest's scale names, tried first when it gives one, on
# the picture's centre and then whole):
_CRC_FALSE_PASS = (_CANDIDATES + 2 * len(_NATIVE_SCALES) + 1 + 2) * 2.0**-_CRC_BITS  # scan, native, rotated, turned, hinted
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
    # or mirrored), "rotated" (the same, turned by a small angle) or "scan"

    def false_positive(self, decoded: bool) -> float:
        """Probability that an unmarked picture gives a candidate this good: its search is charged
        for its own multiple testing, and there are four searches; a payload whose keyed CRC
        checks multiplies that by the chance of a pass in any of the decoded words."""
        probability = min(1.0, len(_SEARCH_TESTS) * _false_positive(self.z, _SEARCH_TESTS[self.search]))
        return probability * _CRC_FALSE_PASS if decoded else probability
