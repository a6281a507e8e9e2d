"""Krita's pixel conversion (plugin/krita/avow_krita/pixels.py, stdlib only) with the worker's side of it.

The hook moves Krita's bytes into canonical channel order and the worker does the arithmetic; the
values that reach the model, and those that reach the layer, must be what the hook's former per-value
Python computed: x / 255.0 and x / 65535.0 in double precision rounded to float32, half floats exactly,
and back int(v * max + 0.5) after clamping (NaN as 0), half floats rounded to nearest even. Krita
itself is not needed: pixels.py imports nothing of it (the Krita tests run the same code in Krita).
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from avow.worker import _as_float, _in_dtype

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("avow_krita_pixels", ROOT / "plugin" / "krita" / "avow_krita" / "pixels.py")
assert _spec is not None and _spec.loader is not None
pixels = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = pixels  # dataclasses look their module up
_spec.loader.exec_module(pixels)

NP_TYPES: dict[str, np.dtype] = {"U8": np.dtype("u1"), "U16": np.dtype("<u2"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4")}
TOPS = {"U8": 255, "U16": 65535}


def krita_bytes(depth: str, model: str, width: int, height: int, opaque: bool, seed: int) -> np.ndarray:
    """Canonical-order values (R, G, B, A or gray, A) for a layer; every U8/U16 value appears when the size allows."""
    rng = np.random.default_rng(seed)
    channels = len(pixels.layout_for(model, depth).order)
    shape = (height, width, channels)
    if depth in TOPS:
        values = rng.integers(0, TOPS[depth] + 1, shape).astype(NP_TYPES[depth])
        flat = values.reshape(-1)
        flat[: min(flat.size, TOPS[depth] + 1)] = np.arange(min(flat.size, TOPS[depth] + 1))
    else:
        values = rng.random(shape).astype(NP_TYPES[depth])
        if depth == "F16":  # every finite half float in [0, 1]
            halves = np.arange(0x3C01, dtype="<u2").view("<f2")
            values.reshape(-1)[: halves.size] = halves
    values[..., -1] = (TOPS.get(depth, 1.0) if opaque else values[..., -1])
    return values


def to_memory(canonical: np.ndarray, layout) -> bytes:
    """The canonical values in Krita's memory order (B, G, R, A for integer RGBA)."""
    memory = np.empty_like(canonical)
    for channel, position in enumerate(layout.order):
        memory[..., position] = canonical[..., channel]
    return memory.tobytes()


def reference_float(values: np.ndarray, depth: str) -> np.ndarray:
    """The former per-value Python: each value as a Python float, divided in double precision, stored as float32."""
    if depth in TOPS:
        top = float(TOPS[depth])
        return np.array([v / top for v in values.reshape(-1).tolist()], np.float32).reshape(values.shape)
    return np.array([float(v) for v in values.reshape(-1).tolist()], np.float32).reshape(values.shape)


def reference_levels(floats: np.ndarray, depth: str) -> np.ndarray:
    flat = floats.reshape(-1).tolist()
    if depth == "F32":
        return floats
    if depth == "F16":
        return np.frombuffer(struct.pack(f"<{len(flat)}e", *flat), "<f2").reshape(floats.shape)
    top = float(TOPS[depth])

    def clamp(v: float) -> float:
        return 0.0 if not v > 0.0 else 1.0 if v > 1.0 else v

    return np.array([int(clamp(v) * top + 0.5) for v in flat], NP_TYPES[depth]).reshape(floats.shape)


@pytest.mark.parametrize("model", ["RGBA", "GRAYA"])
@pytest.mark.parametrize("depth", ["U8", "U16", "F16", "F32"])
@pytest.mark.parametrize("opaque", [False, True])
def test_to_the_model_and_back_bit_for_bit(depth, model, opaque):
    layout = pixels.layout_for(model, depth)
    width, height = 160, 140  # 22400 pixels: every U8 value, and every U16 value in an RGBA layer
    canonical = krita_bytes(depth, model, width, height, opaque, seed=len(depth) + len(model))
    raw = to_memory(canonical, layout)

    sent, channels = pixels.to_native(raw, layout, width, height)
    assert channels == layout.channels - opaque
    array = np.frombuffer(sent, NP_TYPES[depth]).reshape(height, width, channels)
    assert np.array_equal(array, canonical[..., :channels])
    floats = _as_float(array)
    assert floats.tobytes() == reference_float(canonical[..., :channels], depth).tobytes()

    # the model's answer, with what a model may produce: out of range, exactly on a rounding edge, NaN
    answer = np.random.default_rng(9).uniform(-0.1, 1.1, (2 * height, 2 * width, channels)).astype(np.float32)
    answer.reshape(-1)[:6] = [0.5 / 255, 1.5 / 255, np.nan, -0.0, 1.0, 254.5 / 255]
    levels = _in_dtype(answer, layout.dtype)
    assert levels.tobytes() == reference_levels(answer, depth).tobytes()
    back = pixels.from_native(levels.tobytes(), channels, layout, 2 * width, 2 * height)
    expected = np.empty((2 * height, 2 * width, layout.channels), NP_TYPES[depth])
    expected[..., :channels] = levels
    if opaque:
        expected[..., -1] = TOPS.get(depth, 1.0)
    assert back == to_memory(expected, layout)


def test_wrong_sizes_are_refused():
    layout = pixels.layout_for("RGBA", "U16")
    with pytest.raises(ValueError, match="Krita gave"):
        pixels.to_native(b"\0" * 10, layout, 2, 2)
    with pytest.raises(ValueError, match="channels"):
        pixels.from_native(b"\0" * 8, 2, layout, 1, 2)
