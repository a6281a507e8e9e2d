"""Where ``engine.synthesize`` puts the marked output as it is made, a band of rows at a time.

The engine never holds the whole output as float: each band from the tiler is marked and handed
here, and the canvas keeps it in the form its user needs. ``LevelsCanvas`` quantises each band
(with its mark, in one pass) straight into the buffer the encoder writes from: an 8-bit RGB
picture is a Pillow image filled band by band (Pillow keeps RGB in 4 bytes a pixel), every other
layout a numpy array of levels (8-bit RGBA and grey are wrapped by Pillow without a copy). So a
64 MP output peaks near its own size in levels, not 6x it. ``FloatCanvas`` keeps float planes for
an editor, which takes float pixels back.

The alpha plane (run through the model as grey) comes first, the colour after it, so colour
bands can be stored whole.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from avow_c2pa.watermark.embedding import add_mark

from .errors import ImageError
from .images import ALPHA_FORMATS, SIXTEEN_BIT_FORMATS, Levels, Picture


class Canvas(Protocol):
    def put_alpha(self, top: int, band: np.ndarray) -> None:
        """Rows of the upscaled alpha plane (float32 rows x W x 3, the grey run of the model)."""

    def put(self, top: int, unmarked: np.ndarray, delta: np.ndarray) -> None:
        """Rows of colour (float32 rows x W x 3 in [0, 1]) and the mark to add to each channel."""


class FloatCanvas:
    """The output as float planes, for an editor: ``picture()`` once the run is done."""

    def __init__(self, picture: Picture, scale: int) -> None:
        height, width = picture.color.shape[0] * scale, picture.color.shape[1] * scale
        self.source = picture
        self.color = np.empty((height, width, 3), np.float32)
        self.alpha = np.empty((height, width), np.float32) if picture.alpha is not None else None

    def put_alpha(self, top: int, band: np.ndarray) -> None:
        assert self.alpha is not None
        np.mean(band, axis=2, out=self.alpha[top : top + len(band)])

    def put(self, top: int, unmarked: np.ndarray, delta: np.ndarray) -> None:
        add_mark(unmarked, delta, self.color[top : top + len(delta)])

    def picture(self) -> Picture:
        return Picture(self.color, self.alpha, self.source.grayscale, self.source.bit_depth,
                       self.source.icc_profile, self.source.source_format)


class LevelsCanvas:
    """The output quantised for ``fmt`` as it arrives: ``levels()`` is what the encoder writes.

    A JPEG target is refused before any work when the input has transparency it cannot keep."""

    def __init__(self, picture: Picture, scale: int, fmt: str) -> None:
        keep_alpha = picture.alpha is not None and fmt in ALPHA_FORMATS
        if picture.alpha is not None and not keep_alpha and picture.alpha.min() < 1.0:
            raise ImageError("JPEG cannot keep the input's transparency; write .png, .webp or .tiff instead")
        self.fmt, self.icc = fmt, picture.icc_profile
        self.colors = 1 if picture.grayscale else 3
        height, width = picture.color.shape[0] * scale, picture.color.shape[1] * scale
        sixteen = picture.bit_depth == 16 and fmt in SIXTEEN_BIT_FORMATS
        self.top_level = np.float32(65535.0 if sixteen else 255.0)
        self.dtype = np.uint16 if sixteen else np.uint8
        channels = self.colors + keep_alpha
        self.image: Image.Image | None = None
        self.array: np.ndarray | None = None
        if not sixteen and channels == 3:
            self.image = Image.new("RGB", (width, height))
        else:
            self.array = np.empty((height, width, channels), self.dtype)
        self.keep_alpha = keep_alpha

    def put_alpha(self, top: int, band: np.ndarray) -> None:
        if self.keep_alpha:
            assert self.array is not None
            self._quantise(np.mean(band, axis=2), self.array[top : top + len(band), :, -1])

    def put(self, top: int, unmarked: np.ndarray, delta: np.ndarray) -> None:
        band = np.empty((*delta.shape, self.colors), np.float32)
        add_mark(unmarked, delta, band, clip=False)  # quantised with the mark added: the clip is the quantiser's
        if self.array is not None:
            self._quantise(band, self.array[top : top + len(delta), :, : self.colors])
            return
        assert self.image is not None
        levels = np.empty_like(band, np.uint8)
        self._quantise(band, levels)
        # Unpacked straight into the image's rows (what Pillow's file loaders do), not via a band image.
        decoder = Image._getdecoder("RGB", "raw", ("RGB", 0, 1))
        decoder.setimage(self.image.im, (0, top, self.image.width, top + len(levels)))
        decoder.decode(levels.data.cast("B"))

    def _quantise(self, band: np.ndarray, out: np.ndarray) -> None:
        """``out`` = ``np.rint(np.clip(band, 0, 1) * top)`` (the levels the float path gives),
        ``band`` used as scratch. Rounding first lets the clip write the integers out directly."""
        band *= self.top_level
        np.rint(band, out=band)
        np.clip(band, 0.0, self.top_level, out=out, casting="unsafe")

    def levels(self) -> Levels:
        pixels = self.image if self.image is not None else self.array
        assert pixels is not None
        return Levels(pixels, self.fmt, self.icc)
