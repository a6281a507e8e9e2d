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
  the lattice coefficients for every candidate period from its FFT (between bins) and correlates
  their *phases* with the pilot over every translation: a coherent search, far more sensitive
  than looking for the lattice's energy (which misses a weak mark on a text page). Staged, since
  most pictures verified carry no mark: every period is read from the whitened image's own
  spectrum (between its bins, no zero-padded transform) and correlated over a 64 x 64 grid of
  translations; only a candidate whose score could become a finding is refined (x and y
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
  (a phone's rotate, a mirrored repost) at no extra pass over the pixels; the same periods with
  the lattice turned by up to 2.5 degrees (a straightened horizon) are read from the spectrum,
  and the best angle measured exactly on the image turned back. Each of the four searches
  (native, turned, rotated, scan) is charged for its own tries.
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
* **Fast, light detection.** A luma copy between ``DETECT_MIN_SIDE`` and ``DETECT_SIDE`` pixels
  long (block means, area resampling only when needed; a JPEG is decoded at the reduced DCT scale
  that gives it); the embedder makes the tile large enough that the band stays below that copy's
  Nyquist limit for any resize of the output. No scipy, no torch; figures in the README.

Limits (measured in the benchmark, stated in its report): it is not an adversarially robust mark
(anyone with the public key can estimate and subtract it; rotation beyond 2.5 degrees, warping, or
a quarter turn combined with a resize defeat it), and
pictures with almost nowhere to hide it (flat synthetic gradients, black text on pure white,
very dark scenes) or with very few input pixels (x4 from under ~150 px) carry a weak mark that
heavy recompression can erase.
"""

from .coding import (
    DEFAULT_KEY,
    DETECT_MIN_SIDE,
    DETECT_SIDE,
    FOUND_FALSE_POSITIVE,
    PAYLOAD_BITS,
    WATERMARK_ALG,
    WATERMARK_ALG_NAME,
)
from .embedding import embed, embed_in_place
from .search import Detection, claimed_reduction, detect, detect_claimed

__all__ = [
    "DEFAULT_KEY", "DETECT_MIN_SIDE", "DETECT_SIDE", "FOUND_FALSE_POSITIVE", "PAYLOAD_BITS", "WATERMARK_ALG",
    "WATERMARK_ALG_NAME",
    "Detection", "claimed_reduction", "detect", "detect_claimed", "embed", "embed_in_place",
]
