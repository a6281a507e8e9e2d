"""Where ``engine.synthesize`` puts the marked output as it is made, a band of rows at a time.

The engine never holds the whole output as float: each band from the tiler is marked and handed
here, and the canvas keeps it in the form its user needs. ``PngCanvas`` (PNG, Avow's usual
output) quantises each band with its mark and writes it to the file at once: no full-size
buffer. For the other formats ``LevelsCanvas`` quantises each band
(with its mark, in one pass) straight into the buffer the encoder writes from: an 8-bit RGB
picture is a Pillow image filled band by band (Pillow keeps RGB in 4 bytes a pixel), every other
layout a numpy array of levels (8-bit RGBA and grey are wrapped by Pillow without a copy). So a
64 MP output peaks near its own size in levels, not 6x it. ``FloatCanvas`` keeps float planes for
an editor, which takes float pixels back.

The alpha plane (run through the model as grey) comes first, the colour after it, so colour
bands can be stored whole.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

import numpy as np
from PIL import Image

from avow_c2pa.watermark.embedding import add_mark

from .errors import ImageError
from .images import ALPHA_FORMATS, PNG_COMPRESSION, SIXTEEN_BIT_FORMATS, BandThumbnail, Levels, Picture
from .pngstream import PngStream


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


class _Layout:
    """The levels ``fmt`` gets from ``picture`` upscaled by ``scale``, and the quantiser into them.

    A JPEG target is refused before any work when the input has transparency it cannot keep."""

    def __init__(self, picture: Picture, scale: int, fmt: str) -> None:
        keep_alpha = picture.alpha is not None and fmt in ALPHA_FORMATS
        if picture.alpha is not None and not keep_alpha and picture.alpha.min() < 1.0:
            raise ImageError("JPEG cannot keep the input's transparency; write .png, .webp or .tiff instead")
        self.fmt, self.icc, self.keep_alpha = fmt, picture.icc_profile, keep_alpha
        self.colors = 1 if picture.grayscale else 3
        self.height, self.width = picture.color.shape[0] * scale, picture.color.shape[1] * scale
        sixteen = picture.bit_depth == 16 and fmt in SIXTEEN_BIT_FORMATS
        self.top_level = np.float32(65535.0 if sixteen else 255.0)
        self.dtype = np.dtype(np.uint16 if sixteen else np.uint8)

    def _marked(self, unmarked: np.ndarray, delta: np.ndarray, out: np.ndarray) -> None:
        """``out`` (levels) = the rows with their mark, quantised."""
        band = np.empty((*delta.shape, self.colors), np.float32)
        add_mark(unmarked, delta, band, clip=False)  # quantised with the mark added: the clip is the quantiser's
        self._quantise(band, out)

    def _quantise(self, band: np.ndarray, out: np.ndarray) -> None:
        """``out`` = ``np.rint(np.clip(band, 0, 1) * top)`` (the levels the float path gives),
        ``band`` used as scratch. Rounding first lets the clip write the integers out directly."""
        band *= self.top_level
        np.rint(band, out=band)
        np.clip(band, 0.0, self.top_level, out=out, casting="unsafe")


class LevelsCanvas(_Layout):
    """The output quantised for ``fmt`` as it arrives: ``levels()`` is what the encoder writes."""

    def __init__(self, picture: Picture, scale: int, fmt: str) -> None:
        super().__init__(picture, scale, fmt)
        channels = self.colors + self.keep_alpha
        self.image: Image.Image | None = None
        self.array: np.ndarray | None = None
        if self.dtype == np.uint8 and channels == 3:
            self.image = Image.new("RGB", (self.width, self.height))
        else:
            self.array = np.empty((self.height, self.width, channels), self.dtype)

    def put_alpha(self, top: int, band: np.ndarray) -> None:
        if self.keep_alpha:
            assert self.array is not None
            self._quantise(np.mean(band, axis=2), self.array[top : top + len(band), :, -1])

    def put(self, top: int, unmarked: np.ndarray, delta: np.ndarray) -> None:
        if self.array is not None:
            self._marked(unmarked, delta, self.array[top : top + len(delta), :, : self.colors])
            return
        assert self.image is not None
        levels = np.empty((*delta.shape, 3), np.uint8)
        self._marked(unmarked, delta, levels)
        # Unpacked straight into the image's rows (what Pillow's file loaders do), not via a band image.
        decoder = Image._getdecoder("RGB", "raw", ("RGB", 0, 1))
        decoder.setimage(self.image.im, (0, top, self.image.width, top + len(levels)))
        decoder.decode(levels.data.cast("B"))

    def levels(self) -> Levels:
        pixels = self.image if self.image is not None else self.array
        assert pixels is not None
        return Levels(pixels, self.fmt, self.icc)


class PngCanvas(_Layout):
    """A PNG output written to ``handle`` as it arrives (``pngstream``): each strip's rows go out
    as soon as they are marked and quantised, and the C2PA thumbnail is reduced from them as they
    pass, so no full-size colour buffer exists. The alpha plane, which comes first, is kept as
    levels (a third of the RGB size at most) and interleaved into the rows. ``close`` ends the
    file and gives the thumbnail (JPEG)."""

    def __init__(self, picture: Picture, scale: int, handle: BinaryIO, thumbnail_edge: int) -> None:
        super().__init__(picture, scale, "png")
        self.alpha = np.empty((self.height, self.width), self.dtype) if self.keep_alpha else None
        self.stream = PngStream(handle, self.width, self.height, self.colors + self.keep_alpha,
                                8 * self.dtype.itemsize, self.icc, PNG_COMPRESSION)
        self.thumbnail = BandThumbnail(self.height, self.width, self.colors, thumbnail_edge)

    def put_alpha(self, top: int, band: np.ndarray) -> None:
        if self.alpha is not None:
            self._quantise(np.mean(band, axis=2), self.alpha[top : top + len(band)])

    def put(self, top: int, unmarked: np.ndarray, delta: np.ndarray) -> None:
        levels = np.empty((*delta.shape, self.colors + self.keep_alpha), self.dtype)
        self._marked(unmarked, delta, levels[..., : self.colors])
        if self.alpha is not None:
            levels[..., -1] = self.alpha[top : top + len(delta)]
        self.thumbnail.add(levels[..., : self.colors])
        self.stream.write(levels)

    def close(self) -> bytes:
        self.stream.close()
        return self.thumbnail.jpeg()
