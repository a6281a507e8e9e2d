"""Krita's pixel conversion, both ways, for a 12 MP RGBA layer per depth (goal: <= 1 s each way, hook side).

The hook (plugin/krita/avow_krita/pixels.py, stdlib only) moves bytes into the worker's .npy order
and back; the worker converts with numpy (avow.worker). ``--baseline OLD_PIXELS.py`` times a former
pixels.py's ``to_float``/``from_float`` (the per-value Python loops) beside it, on the same layer.
Run: python bench/bench_krita_pixels.py [--megapixels 12] [--baseline old_pixels.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from avow.worker import _as_float, _in_dtype

ROOT = Path(__file__).resolve().parents[1]
NP_TYPES: dict[str, np.dtype] = {"U8": np.dtype("u1"), "U16": np.dtype("<u2"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4")}


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timed(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--depths", default="U8,U16,F16,F32")
    args = parser.parse_args()
    pixels = load(ROOT / "plugin" / "krita" / "avow_krita" / "pixels.py", "bench_pixels")
    old = load(args.baseline, "bench_old_pixels") if args.baseline else None
    width = 4000
    height = int(args.megapixels * 1e6) // width
    rng = np.random.default_rng(0)
    print(f"{width}x{height} RGBA layer ({width * height / 1e6:.1f} MP), median of {args.repeats}; hook side (stdlib), "
          "worker side (numpy)" + (", former per-value hook" if old else ""))
    for depth in args.depths.split(","):
        if depth in ("U8", "U16"):
            values = rng.integers(0, 256 if depth == "U8" else 65536, (height, width, 4)).astype(NP_TYPES[depth])
        else:
            values = rng.random((height, width, 4)).astype(NP_TYPES[depth])
        print(bench_depth(pixels, old, depth, values.tobytes(), width, height, args.repeats), flush=True)


def bench_depth(pixels, old, depth: str, raw: bytes, width: int, height: int, repeats: int) -> str:
    layout = pixels.layout_for("RGBA", depth)
    np_type = NP_TYPES[depth]
    sent, channels = pixels.to_native(raw, layout, width, height)
    floats = _as_float(np.frombuffer(sent, np_type).reshape(height, width, channels))
    levels = _in_dtype(floats, layout.dtype).tobytes()
    hook_in = timed(lambda: pixels.to_native(raw, layout, width, height), repeats)
    hook_out = timed(lambda: pixels.from_native(levels, channels, layout, width, height), repeats)
    worker_in = timed(lambda: _as_float(np.frombuffer(sent, np_type).reshape(height, width, channels)), repeats)
    worker_out = timed(lambda: _in_dtype(floats, layout.dtype), repeats)
    line = f"{depth:>4}: hook in {hook_in:.2f} s, out {hook_out:.2f} s; worker in {worker_in:.2f} s, out {worker_out:.2f} s"
    if old is not None:
        old_layout = old.layout_for("RGBA", depth)
        data = floats.astype("<f4").tobytes()
        old_in = timed(lambda: old.to_float(raw, old_layout, width, height), 1)
        old_out = timed(lambda: old.from_float(data, channels, old_layout, width, height), 1)
        line += f"; former hook in {old_in:.2f} s, out {old_out:.2f} s"
    return line

if __name__ == "__main__":
    main()
