"""Reading and writing pictures without losing what the user had: alpha, 16-bit depth, ICC profile
and orientation.

Pillow has no 16-bit RGB mode (it silently reads a 48-bit PNG as 8-bit), so 16-bit PNG goes
through pypng and 16-bit TIFF through tifffile; everything else through Pillow. Pixels are
handed to the model as float32 in [0, 1], so a 16-bit image keeps its precision end to end.
The EXIF orientation is applied to the pixels, so the output is upright with no orientation tag
(its EXIF is written from scratch by the disclosure step).
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import png
import tifffile
from PIL import Image, UnidentifiedImageError

from avow_c2pa.formats import OUTPUT_SUFFIXES

from .errors import ImageError
from .pngstream import PngStream

# Pillow's format names for the same formats (Avow reads what it writes): its names are Avow's, upper-cased.
INPUT_FORMATS = {fmt.upper(): fmt for fmt in OUTPUT_SUFFIXES.values()}
SIXTEEN_BIT_FORMATS = {"png", "tiff"}
ALPHA_FORMATS = {"png", "webp", "tiff"}
# zlib's fastest level, as OpenCV (and so Real-ESRGAN) writes PNG: on a 2 MP upscale 4x faster
# than Pillow's default 6 for a 20 % larger file; the pixels are the same.
PNG_COMPRESSION = 1

# Pillow's own bomb check, tightened to what Avow will ever upscale; the real budget (input x
# scale²) is checked by the caller from the header, before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = 200_000_000


@dataclass(frozen=True)
class Picture:
    color: np.ndarray  # float32, H x W x 3, in [0, 1]
    alpha: np.ndarray | None  # float32, H x W, in [0, 1]
    grayscale: bool
    bit_depth: int  # 8 or 16
    icc_profile: bytes | None
    source_format: str  # jpeg | png | webp | tiff

    @property
    def size(self) -> tuple[int, int]:
        return self.color.shape[1], self.color.shape[0]


@dataclass(frozen=True)
class Header:
    """What can be known about an input before decoding its pixels."""

    format: str
    width: int
    height: int


def output_format(path: Path) -> str:
    fmt = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path.name}: output format must be one of {', '.join(OUTPUT_SUFFIXES)} (from the extension)")
    return fmt


def read_header(path: Path) -> Header:
    with _open(path) as image:
        return Header(_input_format(image), *image.size)


def read_picture(path: Path) -> Picture:
    with _open(path) as image:
        fmt = _input_format(image)
        try:  # getexif() too may read to the end of a PNG
            icc = image.info.get("icc_profile") or None
            orientation = image.getexif().get(0x0112, 1)
            pixels, depth = _decode(path, image, fmt)
        except ImageError:
            raise
        except Exception as exc:  # decoders raise anything from OSError to struct.error on damaged data
            raise ImageError(f"{path.name}: damaged or truncated image ({exc})") from exc
    return dataclasses.replace(from_array(_upright(pixels, orientation), fmt, depth), icc_profile=icc)


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory") from None
    except UnidentifiedImageError:
        size = path.stat().st_size
        what = "empty file (0 bytes)" if size == 0 else "not an image Avow can read"
        raise ImageError(f"{path.name}: {what}; JPEG, PNG, WebP or TIFF expected") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path.name}: refused, declared dimensions are too large ({exc})") from None
    except OSError as exc:
        raise ImageError(f"{path.name}: cannot open ({exc})") from None
    if image.format not in INPUT_FORMATS:
        image.close()
        raise ImageError(f"{path.name}: {image.format} input is not supported; JPEG, PNG, WebP or TIFF expected")
    return image


def _input_format(image: Image.Image) -> str:
    """Avow's name for the format ``_open`` accepted (so never None)."""
    return INPUT_FORMATS[image.format or ""]


def _decode(path: Path, image: Image.Image, fmt: str) -> tuple[np.ndarray, int]:
    """Pixels as float32 H x W x C (C in 1..4, alpha last) and the source bit depth."""
    if fmt == "png" and _png_bit_depth(path) == 16:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        array: np.ndarray = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, info["planes"])
        return array.astype(np.float32) / 65535.0, 16
    if fmt == "tiff" and _tiff_bit_depth(path) == 16:
        return _tiff16(path), 16
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image.load()
    mode = image.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in image.info else "RGB"
    elif mode in ("1", "L", "I;16", "I"):
        mode = "L"
    elif mode in ("PA", "La"):
        mode = "RGBA"
    elif mode not in ("LA", "RGB", "RGBA"):
        raise ImageError(f"{path.name}: {image.mode} images are not supported; convert to RGB first")
    array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    return (array[..., None] if array.ndim == 2 else array), 8


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as handle:
        header = handle.read(25)
    return header[24] if len(header) == 25 else 8


def _tiff_bit_depth(path: Path) -> int:
    with tifffile.TiffFile(path) as tiff:
        return tiff.pages.first.bitspersample


def _tiff16(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        if page.photometric not in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.MINISBLACK):
            # tifffile leaves a value outside its PHOTOMETRIC enum a plain int
            photometric = page.photometric
            kind = photometric.name if isinstance(photometric, tifffile.PHOTOMETRIC) else f"photometric {photometric}"
            raise ImageError(f"{path.name}: 16-bit {kind} TIFF is not supported; RGB or grey expected")
        array = page.asarray()
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] > 4:
        raise ImageError(f"{path.name}: unsupported TIFF layout {array.shape}")
    return array.astype(np.float32) / 65535.0


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to H x W x C pixels."""
    if orientation in (2, 4, 5, 7):
        pixels = pixels[:, ::-1]
    rotations = {3: 2, 4: 2, 5: 1, 6: 3, 7: 3, 8: 1}.get(orientation, 0)
    return np.rot90(pixels, rotations) if rotations else pixels


def from_array(array: np.ndarray, source_format: str, bit_depth: int = 16) -> Picture:
    """A picture from float H x W x C pixels in [0, 1] (C: grey, grey+alpha, RGB, RGBA), as editors hand them over."""
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4 or min(array.shape[:2]) < 1:
        raise ImageError(f"pixels must be H x W x C with 1 to 4 channels, not {array.shape}")
    if not np.isfinite(array).all():
        raise ImageError("pixels contain NaN or infinite values")
    pixels = np.clip(array.astype(np.float32, copy=False), 0.0, 1.0)
    channels = pixels.shape[2]
    grayscale = channels in (1, 2)
    alpha = pixels[..., -1] if channels in (2, 4) else None
    color = pixels[..., :1].repeat(3, axis=2) if grayscale else pixels[..., :3]
    return Picture(np.ascontiguousarray(color), alpha, grayscale, bit_depth, None, source_format)


def to_array(picture: Picture, keep_alpha: bool = True) -> np.ndarray:
    """The picture's planes stacked as H x W x C float32, alpha last: the inverse of ``from_array``."""
    return np.concatenate(_planes(picture, keep_alpha), axis=2)


def _planes(picture: Picture, keep_alpha: bool) -> list[np.ndarray]:
    planes = [picture.color[..., :1]] if picture.grayscale else [picture.color]
    if keep_alpha and picture.alpha is not None:
        planes.append(picture.alpha[..., None])
    return planes


@dataclass(frozen=True)
class Levels:
    """A picture quantised for its output format: what the encoder writes, without the float planes
    (``canvas.LevelsCanvas`` makes it band by band)."""

    pixels: np.ndarray | Image.Image  # 8-bit RGB: the Pillow image; else H x W x C uint8 or uint16, alpha last
    fmt: str
    icc_profile: bytes | None


def write_levels(levels: Levels, path: Path) -> None:
    pixels = levels.pixels
    if isinstance(pixels, np.ndarray) and pixels.dtype == np.uint16:
        _write16(pixels, levels.fmt, path, levels.icc_profile)
    else:
        _write8(_pillow(pixels), levels.fmt, path, levels.icc_profile)


def _pillow(pixels: np.ndarray | Image.Image) -> Image.Image:
    """8-bit levels as a Pillow image: RGBA and grey share the array's memory (Pillow's own layout)."""
    if isinstance(pixels, Image.Image):
        return pixels
    height, width, channels = pixels.shape
    mode = {1: "L", 4: "RGBA"}.get(channels)
    if mode is not None and pixels.flags.c_contiguous:
        return Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels)


def thumbnail(levels: Levels, edge: int) -> bytes:
    """A JPEG of the levels at most ``edge`` pixels long, from memory (see ``manifest.sign_file``):
    an integer box reduction to within twice the size, then Pillow's bicubic thumbnail."""
    pixels = levels.pixels
    height, width = (pixels.height, pixels.width) if isinstance(pixels, Image.Image) else pixels.shape[:2]
    factor = _thumbnail_factor(height, width, edge)
    if isinstance(pixels, np.ndarray) and pixels.dtype == np.uint16:  # a strided sample first: no 8-bit copy of it all
        pixels = (pixels[factor // 2 :: factor, factor // 2 :: factor] >> 8).astype(np.uint8)
        factor = 1
    image = _pillow(pixels)
    return _jpeg_thumbnail(image.reduce(factor) if factor > 1 else image, edge)


class BandThumbnail:
    """``thumbnail`` made from the colour levels as they pass, band by band, top to bottom (for a
    streamed output): each band's whole blocks of rows are box-reduced by the same factor (Pillow's
    ``reduce``), the rows short of a block carried to the next band, so nothing of full size is kept."""

    def __init__(self, height: int, width: int, colors: int, edge: int) -> None:
        self.width, self.edge, self.mode = width, edge, "L" if colors == 1 else "RGB"
        self.factor = _thumbnail_factor(height, width, edge)
        self.blocks: list[np.ndarray] = []  # reduced rows
        self.carry = np.empty((0, width, colors), np.uint8)

    def add(self, levels: np.ndarray) -> None:
        """The next rows: H x W x colours, uint8 or uint16."""
        if levels.dtype == np.uint16:
            levels = (levels >> 8).astype(np.uint8)
        rows = np.concatenate([self.carry, levels]) if len(self.carry) else levels
        full = len(rows) - len(rows) % self.factor
        if full:
            self.blocks.append(self._reduced(rows[:full]))
        self.carry = rows[full:].copy()

    def _reduced(self, rows: np.ndarray) -> np.ndarray:
        image = Image.frombuffer(self.mode, (self.width, len(rows)), np.ascontiguousarray(rows), "raw", self.mode, 0, 1)
        return np.asarray(image.reduce(self.factor))

    def jpeg(self) -> bytes:
        blocks = self.blocks + ([self._reduced(self.carry)] if len(self.carry) else [])
        return _jpeg_thumbnail(Image.fromarray(np.concatenate(blocks)), self.edge)


def _thumbnail_factor(height: int, width: int, edge: int) -> int:
    """An integer box reduction: to at most ``edge`` where that keeps three quarters of it (no
    resampling after it: a third of the thumbnail's CPU on a 4 MP output), else to within twice
    the thumbnail's size (Pillow's bicubic does the rest)."""
    longest = max(height, width)
    within = -(-longest // edge)
    return within if -(-longest // within) >= edge * 3 // 4 else max(1, longest // edge)


def _jpeg_thumbnail(image: Image.Image, edge: int) -> bytes:
    image = image.convert("RGB")
    image.thumbnail((edge, edge))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _write8(image: Image.Image, fmt: str, path: Path, icc: bytes | None) -> None:
    options: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if fmt in ("jpeg", "webp"):
        options["quality"] = 95
    if fmt == "tiff":
        options["compression"] = "tiff_adobe_deflate"
    if fmt == "png":
        options["compress_level"] = PNG_COMPRESSION
    image.save(path, format=fmt.upper(), **options)


def _write16(pixels: np.ndarray, fmt: str, path: Path, icc: bytes | None) -> None:
    height, width, planes = pixels.shape
    if fmt == "tiff":
        tifffile.imwrite(
            path,
            pixels if planes > 1 else pixels[..., 0],
            photometric="rgb" if planes >= 3 else "minisblack",
            extrasamples=["unassalpha"] if planes in (2, 4) else None,
            iccprofile=icc,
            compression="zlib",
        )
        return
    with open(path, "wb") as handle:
        stream = PngStream(handle, width, height, planes, 16, icc, PNG_COMPRESSION)
        stream.write(pixels)
        stream.close()
