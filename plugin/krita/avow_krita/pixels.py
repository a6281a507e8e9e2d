"""Krita pixel bytes <-> the worker's float32 pixels, with the standard library alone.

Krita's Python has no numpy. ``Node.pixelData`` hands over the colour space's native layout:
RGBA U8 and U16 are stored B, G, R, A; RGBA F16 and F32 are R, G, B, A; GRAYA is gray, alpha
(checked in Krita 5.1). The worker wants float32 in [0, 1], H x W x C, colour first, alpha last.
Everything here is per-value work done through C-level slicing and ``map`` over lookup tables,
in chunks so memory stays bounded.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

# Memory position of each canonical channel (R, G, B, A or gray, A) for each supported space.
_ORDERS = {
    ("RGBA", "U8"): (2, 1, 0, 3),
    ("RGBA", "U16"): (2, 1, 0, 3),
    ("RGBA", "F16"): (0, 1, 2, 3),
    ("RGBA", "F32"): (0, 1, 2, 3),
    ("GRAYA", "U8"): (0, 1),
    ("GRAYA", "U16"): (0, 1),
    ("GRAYA", "F16"): (0, 1),
    ("GRAYA", "F32"): (0, 1),
}
_SIZES = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}
_CHUNK = 1 << 20  # values per conversion chunk
_BIG_ENDIAN = sys.byteorder == "big"


class UnsupportedLayer(ValueError):
    """A colour model or depth Avow does not upscale; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    model: str  # RGBA or GRAYA
    depth: str  # U8, U16, F16, F32
    order: tuple  # memory position of each canonical channel

    @property
    def channels(self) -> int:
        return len(self.order)

    @property
    def value_size(self) -> int:
        return _SIZES[self.depth]


def layout_for(model: str, depth: str) -> Layout:
    order = _ORDERS.get((model, depth))
    if order is None:
        raise UnsupportedLayer(
            f"Avow upscales RGB or grayscale layers, 8 or 16-bit integer or 16/32-bit float; this layer is "
            f"{model} {depth}. Convert it first (Image > Convert Image Color Space..., e.g. to RGB/Alpha 16-bit)."
        )
    return Layout(model, depth, order)


def _decode(raw: bytes, depth: str):
    """The raw values as a flat sequence: bytes for U8, array('H') for U16, array('f') for floats."""
    if depth == "U8":
        return bytearray(raw)
    if depth == "U16":
        values = array("H", raw)
        if _BIG_ENDIAN:
            values.byteswap()
        return values
    if depth == "F32":
        values = array("f", raw)
        if _BIG_ENDIAN:
            values.byteswap()
        return values
    values = array("f")  # F16: struct knows IEEE half floats
    step = _CHUNK * 2
    for start in range(0, len(raw), step):
        piece = raw[start : start + step]
        values.extend(struct.unpack(f"<{len(piece) // 2}e", piece))
    return values


def _reorder(values, source_order, target_order, channels: int):
    """Move interleaved channels: channel k sits at source_order[k] and goes to target_order[k]."""
    out = values[:]  # same type, same length
    for src, dst in zip(source_order, target_order, strict=True):
        out[dst::channels] = values[src::channels]
    return out


_U8_TO_FLOAT = [i / 255.0 for i in range(256)]
_U16_TO_FLOAT: list = []


def _u16_table() -> list:
    if not _U16_TO_FLOAT:
        _U16_TO_FLOAT.extend(i / 65535.0 for i in range(65536))
    return _U16_TO_FLOAT


def to_float(raw: bytes, layout: Layout, width: int, height: int) -> tuple[bytes, int]:
    """Krita's pixels as float32 little-endian canonical channels, and how many channels.

    A fully opaque alpha is left out (one plane fewer for the model to run over); ``from_float``
    puts it back.
    """
    channels = layout.channels
    expected = width * height * channels * layout.value_size
    if len(raw) != expected:
        raise ValueError(f"Krita gave {len(raw)} bytes for {width}x{height} {layout.model} {layout.depth}, not {expected}")
    values = _decode(bytes(raw), layout.depth)
    canonical = _reorder(values, layout.order, range(channels), channels)
    if layout.depth == "U8":
        floats = array("f", map(_U8_TO_FLOAT.__getitem__, canonical))
    elif layout.depth == "U16":
        floats = array("f", map(_u16_table().__getitem__, canonical))
    else:
        floats = canonical
    alpha = floats[channels - 1 :: channels]
    if min(alpha, default=1.0) >= 1.0:
        colour_channels = channels - 1
        opaque = array("f", bytes(4 * width * height * colour_channels))
        for k in range(colour_channels):
            opaque[k::colour_channels] = floats[k::channels]
        floats, channels = opaque, colour_channels
    if _BIG_ENDIAN:
        floats.byteswap()
    return floats.tobytes(), channels


def _q8(value: float) -> int:
    return int(value * 255.0 + 0.5)


def _q16(value: float) -> int:
    return int(value * 65535.0 + 0.5)


def _clamp(value: float) -> float:
    return 0.0 if not value > 0.0 else 1.0 if value > 1.0 else value  # NaN -> 0


def _quantize(floats: array, depth: str):
    if depth == "F32":
        return floats
    if depth == "F16":
        out = bytearray()
        for start in range(0, len(floats), _CHUNK):
            piece = floats[start : start + _CHUNK]
            out += struct.pack(f"<{len(piece)}e", *piece)
        values = array("H", bytes(out))  # half floats as 16-bit words, so they reorder like U16
        if _BIG_ENDIAN:
            values.byteswap()
        return values
    quantizer = _q8 if depth == "U8" else _q16
    out = bytearray() if depth == "U8" else array("H")
    for start in range(0, len(floats), _CHUNK):
        piece = floats[start : start + _CHUNK]
        try:
            out.extend(bytes(map(quantizer, piece)) if depth == "U8" else array("H", map(quantizer, piece)))
        except (ValueError, OverflowError):  # out of range or NaN: clamp this chunk, the slow way
            clamped = map(_clamp, piece)
            out.extend(bytes(map(quantizer, clamped)) if depth == "U8" else array("H", map(quantizer, clamped)))
    return out


def from_float(data: bytes, channels: int, layout: Layout, width: int, height: int) -> bytes:
    """The worker's float32 pixels (``channels`` canonical channels) as bytes for ``Node.setPixelData``."""
    count = width * height
    if len(data) != count * channels * 4:
        raise ValueError(f"the worker returned {len(data)} bytes, not {width}x{height}x{channels} float32 pixels")
    if channels not in (layout.channels, layout.channels - 1):
        raise ValueError(f"the worker returned {channels} channels for a {layout.model} layer")
    floats = array("f", data)
    if _BIG_ENDIAN:
        floats.byteswap()
    values = _quantize(floats, layout.depth)
    full = layout.channels
    if channels < full:  # opaque input: put the alpha back, fully opaque
        opaque = {"U8": b"\xff", "U16": array("H", [65535]), "F16": array("H", [0x3C00]), "F32": array("f", [1.0])}[
            layout.depth
        ]
        if layout.depth == "U8":
            padded = bytearray(count * full)
        else:
            padded = array(values.typecode, bytes(count * full * values.itemsize))
        for k in range(channels):
            padded[k::full] = values[k::channels]
        padded[full - 1 :: full] = opaque * count
        values = padded
    ordered = _reorder(values, range(full), layout.order, full)
    if isinstance(ordered, array):
        if _BIG_ENDIAN:
            ordered.byteswap()
        return ordered.tobytes()
    return bytes(ordered)
