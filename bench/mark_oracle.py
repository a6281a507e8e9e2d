"""The mark measured where it is known to be: an attacked copy read at its true period and position
(the attack's geometry known), with the detector's own statistics but no search, so no multiple
testing to pay for. The search can only find less: a copy the oracle misses needs a stronger
mark, not a better search."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from avow_c2pa.watermark import FOUND_FALSE_POSITIVE, coding, embedding, measure, pixels, search

#: A single test's score for the detector's found threshold: no multiple testing to pay for.
ORACLE_Z = NormalDist().inv_cdf(1 - FOUND_FALSE_POSITIVE)

Geometry = tuple[tuple[float, float], tuple[float, float]]  # rows, columns: output pixel = s * pixel + c


def oracle_found(image: np.ndarray, output_shape: tuple[int, int], source_size: tuple[int, int],
                 geometry: Geometry, payload: int) -> tuple[bool, float]:
    """Whether the oracle finds the mark (pilot >= ORACLE_Z, or the payload read there), and its score.
    The position is searched over +-1 pixel of ``image`` about the true one: resamplers differ in
    where they put pixel centres."""
    layout = coding._layout(coding.DEFAULT_KEY)
    luma = pixels._working_luma(image)
    white = pixels._whiten(luma)
    if white is None:
        return False, float("nan")
    period = embedding._period(*output_shape, source_size)
    origins, periods, pixel = [], [], []
    for axis, (s, c) in enumerate(geometry):
        block = image.shape[axis] / luma.shape[axis]  # working pixel j covers image pixels about block * j + (block - 1) / 2
        cropped = (luma.shape[axis] - white.shape[axis]) // 2  # whitening keeps the centre
        q = period / s / block
        origins.append(((-c / s - (block - 1) / 2) / block - cropped) / q % 1)
        periods.append(q)
        pixel.append(1 / (q * block))
    qy, qx = periods
    if not search._measurable(white, qx, qy):
        return False, float("nan")
    reduced = search._Resolutions(white).at(max(qx, qy))
    exact, _, _ = measure._block_dft(reduced, layout, qx * reduced.shape[1] / white.shape[1],
                                     qy * reduced.shape[0] / white.shape[0], 1, 1)
    coefficients = exact[0, 0]
    grid = np.linspace(-1, 1, 9)
    ty, tx = (t.ravel() for t in np.meshgrid(origins[0] + grid * pixel[0], origins[1] + grid * pixel[1], indexing="ij"))
    scores = measure._pilot_sums(coefficients, layout, tx, ty) / math.sqrt(layout.pilot.sum() / 2)
    best = int(np.argmax(scores))
    read = measure._decode(coefficients, layout, tx[best], ty[best])
    return bool(scores[best] >= ORACLE_Z or read == payload), float(scores[best])
