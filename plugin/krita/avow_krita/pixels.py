"""Krita pixel bytes <-> the worker's .npy pixels, with the standard library alone, in bulk.

Krita's Python has no numpy. ``Node.pixelData`` hands over the colour space's native layout:
RGBA U8 and U16 are stored B, G, R, A; RGBA F16 and F32 are R, G, B, A; GRAYA is gray, alpha
(checked in Krita 5.1). The worker takes and returns the layer's own values (uint8, uint16,
float16, float32), colour first, alpha last, and does the arithmetic in numpy; all that happens
here is moving whole channels with C-level strided slices of arrays, never a Python step per value.
"""

from __future__ import annotations

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
# Per depth: the worker's name for the value type, the .npy type, the array typecode that holds one
# value's bits, and those bits for a fully opaque alpha (1.0 as a half float is 0x3C00).
_ENDIAN = "<" if sys.byteorder == "little" else ">"
_DTYPES = {"U8": "uint8", "U16": "uint16", "F16": "float16", "F32": "float32"}
_DESCRS = {"U8": "|u1", "U16": f"{_ENDIAN}u2", "F16": f"{_ENDIAN}f2", "F32": f"{_ENDIAN}f4"}
_TYPECODES = {1: "B", 2: "H", 4: "I" if array("I").itemsize == 4 else "L"}
_OPAQUE = {"U8": 0xFF, "U16": 0xFFFF, "F16": 0x3C00, "F32": 0x3F800000}


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

    @property
    def dtype(self) -> str:
        """The worker's name for the layer's value type (its ``upscale`` answers in it)."""
        return _DTYPES[self.depth]

    @property
    def descr(self) -> str:
        """The .npy type of the layer's values, as Krita stores them (native byte order)."""
        return _DESCRS[self.depth]


def layout_for(model: str, depth: str) -> Layout:
    order = _ORDERS.get((model, depth))
    if order is None:
        raise UnsupportedLayer(
            f"Avow upscales RGB or grayscale layers, 8 or 16-bit integer or 16/32-bit float; this layer is "
            f"{model} {depth}. Convert it first (Image > Convert Image Color Space..., e.g. to RGB/Alpha 16-bit)."
        )
    return Layout(model, depth, order)


def _values(data: bytes, layout: Layout) -> array:
    """The bytes as one array item per value (the bits, whatever the type: nothing is converted)."""
    return array(_TYPECODES[layout.value_size], data)


def _move(values: array, source: tuple, target: tuple, source_channels: int, target_channels: int, count: int) -> array:
    """Interleaved channels moved in bulk: channel k sits at source[k] and goes to target[k]."""
    if source_channels == target_channels:  # a copy, then only the channels that move (R and B of BGRA)
        out = values[:]
        moves = [(src, dst) for src, dst in zip(source, target, strict=True) if src != dst]
    else:
        out = array(values.typecode, bytes(count * target_channels * values.itemsize))
        moves = list(zip(source, target, strict=True))
    for src, dst in moves:
        out[dst::target_channels] = values[src::source_channels]
    return out


def to_native(raw: bytes, layout: Layout, width: int, height: int) -> tuple[bytes, int]:
    """Krita's pixels as the layer's values in canonical channel order (``layout.descr``), and how many channels.

    A fully opaque alpha is left out (one plane fewer for the model to run over); ``from_native``
    puts it back.
    """
    channels, count = layout.channels, width * height
    expected = count * channels * layout.value_size
    if len(raw) != expected:
        raise ValueError(f"Krita gave {len(raw)} bytes for {width}x{height} {layout.model} {layout.depth}, not {expected}")
    values = _values(bytes(raw), layout)
    alpha = values[layout.order[-1] :: channels]
    opaque = alpha.tobytes() == array(values.typecode, [_OPAQUE[layout.depth]]).tobytes() * count
    kept = layout.order[:-1] if opaque else layout.order
    return _move(values, kept, tuple(range(len(kept))), channels, len(kept), count).tobytes(), len(kept)


def from_native(data: bytes, channels: int, layout: Layout, width: int, height: int) -> bytes:
    """The worker's pixels (``channels`` canonical channels of the layer's type) as bytes for ``Node.setPixelData``."""
    full, count = layout.channels, width * height
    if len(data) != count * channels * layout.value_size:
        raise ValueError(f"the worker returned {len(data)} bytes, not {width}x{height}x{channels} {layout.depth} pixels")
    if channels not in (full, full - 1):
        raise ValueError(f"the worker returned {channels} channels for a {layout.model} layer")
    values = _values(data, layout)
    out = _move(values, tuple(range(channels)), layout.order[:channels], channels, full, count)
    if channels < full:  # opaque input: put the alpha back, fully opaque
        out[layout.order[-1] :: full] = array(values.typecode, [_OPAQUE[layout.depth]]) * count
    return out.tobytes()
