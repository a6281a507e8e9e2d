"""Avow's engine beside a RealESRGANer-style loop, same weights and threads, one run: figures, not pass/fail.

    PYTHONPATH=plugin:c2pa:models .venv/bin/python bench/bench_upscale.py [--model NAME | --rrdb] [--threads 1]
                                                         [--device cpu|cuda]

On a GPU (``--device cuda``) the speed table is printed for avow-compact-x4 and for a full
RRDBNet x4 (Real-ESRGAN x4plus's shape, random weights), each beside the naive loop on the same
GPU: Avow batches a row's tiles of one shape (``tiling.BATCH``) and brings them back in the
model's precision through pinned memory.

Prints, for 0.25, 1 and 4 MP inputs: output Mpx/s of the naive loop (tile 512, pad 10, float32
output buffer, quantised at the end, as Real-ESRGAN's inference script does) and of Avow's engine
(its tiler streaming into the 8-bit levels; and with the watermark), medians of ``--repeats``
alternating runs, and the ratios. Then the stage breakdown of a real ``upscale_file`` (decode,
model, mark, quantise, encode, EXIF/XMP + C2PA; wall and CPU seconds) and, each in a fresh process, its peak resident
memory for 4, 16 and 64 MP outputs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # what importing avow does (avow/__init__.py), before numpy loads
import argparse
import copy
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from avow import canvas, engine, images, pngstream, tiling
from avow.devices import inference_dtype, pick_device
from avow.engine import UpscaleOptions, upscale_file
from avow_c2pa.watermark import embedding
from avow_models import find_model, load_model
from avow_models.archs.rrdb import RRDBNet


def naive_upscale(model: torch.nn.Module, rgb: np.ndarray, scale: int, tile: int = 512, pad: int = 10) -> np.ndarray:
    """RealESRGANer.tile_process + post-processing (Real-ESRGAN 0.3), for an x4 or x2 model."""
    parameter = next(model.parameters())  # its device, and half precision where RealESRGANer(half=True)
    img = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0).to(parameter)
    mod_pad_h = mod_pad_w = 0
    if scale == 2:
        mod_pad_h, mod_pad_w = -img.shape[2] % 2, -img.shape[3] % 2
        img = torch.nn.functional.pad(img, (0, mod_pad_w, 0, mod_pad_h), "reflect")
    batch, channel, height, width = img.shape
    output = img.new_zeros((batch, channel, height * scale, width * scale))
    for y in range(math.ceil(height / tile)):
        for x in range(math.ceil(width / tile)):
            ofs_x, ofs_y = x * tile, y * tile
            x0, x1 = ofs_x, min(ofs_x + tile, width)
            y0, y1 = ofs_y, min(ofs_y + tile, height)
            x0p, x1p = max(x0 - pad, 0), min(x1 + pad, width)
            y0p, y1p = max(y0 - pad, 0), min(y1 + pad, height)
            with torch.no_grad():
                output_tile = model(img[:, :, y0p:y1p, x0p:x1p])
            tx, ty = (x0 - x0p) * scale, (y0 - y0p) * scale
            output[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = output_tile[
                :, :, ty : ty + (y1 - y0) * scale, tx : tx + (x1 - x0) * scale
            ]
    output = output[:, :, : (height - mod_pad_h) * scale, : (width - mod_pad_w) * scale]
    out = output.data.squeeze().float().cpu().clamp_(0, 1).numpy()
    return (np.transpose(out, (1, 2, 0)) * 255.0).round().astype(np.uint8)


def test_picture(side: int, seed: int = 0) -> np.ndarray:
    """Gradients, edges and noise: something for the model and the mark's masking to work on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    base = np.stack([(x * 0.7) % 256, (y * 0.9) % 256, ((x + y) * 0.4) % 256], axis=2)
    base[side // 3 : side // 2, side // 4 : side // 2] = 230
    base += rng.normal(0, 6, base.shape).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


class Stages:
    """Wall and CPU seconds (all the process's threads) per named function, by wrapping the module
    and class attributes the engine calls through; a stage's time excludes the stages it calls
    (the mark hands each strip to the canvas, which quantises it)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.stack: list[list[float]] = []

    def clear(self) -> None:
        self.seconds.clear()
        self.cpu.clear()

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            self.stack.append([0.0, 0.0])
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                inner = self.stack.pop()
                self.seconds[label] += wall - inner[0]
                self.cpu[label] += cpu - inner[1]
                if self.stack:
                    self.stack[-1][0] += wall
                    self.stack[-1][1] += cpu

        setattr(owner, name, timed)


def wrap_engine(stages: Stages) -> None:
    stages.wrap(tiling, "_tiles", "model")
    stages.wrap(embedding.Marker, "__init__", "mark (amplitude map)")
    stages.wrap(embedding.Marker, "_strip", "mark")
    for layout in (canvas.LevelsCanvas, canvas.PngCanvas):
        stages.wrap(layout, "put", "quantise")
        stages.wrap(layout, "put_alpha", "quantise")
    stages.wrap(pngstream.PngStream, "write", "encode")  # a PNG is encoded as its strips are quantised
    stages.wrap(pngstream.PngStream, "close", "encode")
    stages.wrap(images.BandThumbnail, "add", "C2PA thumbnail")
    stages.wrap(images.BandThumbnail, "jpeg", "C2PA thumbnail")


def speed(args, model) -> None:
    scale = model.descriptor.scale
    device = pick_device(args.device)
    dtype = inference_dtype(device, model.descriptor.fp16_safe)
    # The tiler turns its module channels_last; this copy stays as loaded (same weights, device, dtype).
    naive_module = copy.deepcopy(model.module).to(device=device, dtype=dtype)
    stages = Stages()
    wrap_engine(stages)
    print(f"\nspeed on {device.type} ({dtype}): output Mpx/s, medians of {args.repeats} alternating runs "
          f"(naive tile 512 pad 10; avow tile {args.tile}, overlap {model.descriptor.tiling.overlap})")
    print(f"{'input':>9} {'output':>8} | {'naive':>7} | {'avow':>7} {'ratio':>6} | {'avow+mark':>9} {'ratio':>6}")
    for megapixels in args.sizes:
        side = round(math.sqrt(megapixels * 1e6))
        rgb = test_picture(side)
        picture = images.from_array(rgb.astype(np.float32) / 255.0, "png", 8)
        out_mp = (side * scale) ** 2 / 1e6
        naive, plain, marked = [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            naive_upscale(naive_module, rgb, scale)
            naive.append(time.perf_counter() - started)
            stages.clear()
            started = time.perf_counter()
            engine.synthesize_into(canvas.LevelsCanvas(picture, scale, "png"), picture, model, device, args.tile, 0x1234ABCD)
            total = time.perf_counter() - started
            marked.append(total)
            plain.append(total - stages.seconds["mark"] - stages.seconds["mark (amplitude map)"])
        n, p, m = (out_mp / statistics.median(v) for v in (naive, plain, marked))
        print(f"{megapixels:>6} MP {out_mp:>5.0f} MP | {n:7.2f} | {p:7.2f} {p / n:5.2f}x | {m:9.2f} {m / n:5.2f}x")


def breakdown(args, folder: Path) -> None:
    side = round(math.sqrt(args.breakdown * 1e6))
    source = folder / "breakdown.png"
    Image.fromarray(test_picture(side)).save(source)
    stages = Stages()
    for name, label in [("prepare_model", "model load"), ("read_picture", "decode"), ("sha256_file", "hash input"),
                        ("watermark_payload", "mark (payload)"), ("write_levels", "encode"), ("seal", "EXIF/XMP + C2PA")]:
        stages.wrap(engine, name, label)
    wrap_engine(stages)
    options = UpscaleOptions(model=args.model, tile=args.tile, device="cpu", force=True)
    upscale_file(source, folder / "warm.png", options)  # signing identity and caches
    runs = []
    for _ in range(args.repeats):
        stages.clear()
        started, cpu = time.perf_counter(), time.process_time()
        upscale_file(source, folder / "out.png", options)
        runs.append((time.perf_counter() - started, time.process_time() - cpu, dict(stages.seconds), dict(stages.cpu)))
    total, total_cpu, seconds, cpu_seconds = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    out_mp = (side * 4) ** 2 / 1e6
    print(f"\nstage breakdown of upscale_file, {side}x{side} PNG -> ~{out_mp:.0f} MP PNG (median run of {args.repeats}; "
          f"CPU: all threads):")
    print(f"  {'stage':<22} {'wall':>8} {'':>7}  {'CPU':>8} {'':>7}")
    for label, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {label:<22} {1e3 * value:6.0f} ms {100 * value / total:5.2f} %  {1e3 * cpu_seconds[label]:5.0f} ms "
              f"{100 * cpu_seconds[label] / total_cpu:5.2f} %")
    print(f"  {'other':<22} {1e3 * (total - sum(seconds.values())):6.0f} ms          "
          f"{1e3 * (total_cpu - sum(cpu_seconds.values())):5.0f} ms")
    provenance = ("mark", "mark (amplitude map)", "mark (payload)", "quantise", "C2PA thumbnail", "EXIF/XMP + C2PA")
    after = (*provenance, "encode")
    for name, part in (("wall", seconds), ("CPU", cpu_seconds)):
        whole = total if name == "wall" else total_cpu
        print(f"  {name}: total {whole:.2f} s; after the model {100 * sum(part.get(k, 0.0) for k in after) / whole:.2f} %, "
              f"of which provenance (mark, quantise, EXIF/XMP, C2PA; not the encode) "
              f"{100 * sum(part.get(k, 0.0) for k in provenance) / whole:.2f} %")


def peak_memory(args, folder: Path) -> None:
    """Peak RSS over the baseline, split into: the fixed part (the model's activations for one tile
    with its context, measured on a one-tile input), the working set (computed: a row of tiles as float, the strips
    the mark and the PNG writer hold), the input as float (12 B an input pixel: 0.25x the uint8
    output at x4, 1x at x2), and what is left, as a multiple of the uint8 output."""
    model = load_model(find_model(args.model, 4))
    scale = model.descriptor.scale
    print("\npeak RSS of upscale_file to PNG, each in a fresh process (baseline: imports and the model loaded):")
    side = args.tile + 2 * model.descriptor.tiling.overlap  # one tile as large as an inner one with its context
    fixed = rss_run(args, folder, side, scale) - working_set(args, model, side) - side**2 * 12 / 2**20
    print(f"  fixed part (model activations: one {side}px tile, its working set and input taken off): {fixed:.0f} MiB")
    print(f"{'output':>8} {'uint8':>9} {'peak-base':>10} {'fixed':>7} {'working':>8} {'input':>7} {'rest':>7} "
          f"{'rest/uint8':>10} {'(peak-base-fixed-working)/uint8':>32}")
    for megapixels in args.rss_sizes:
        side = round(math.sqrt(megapixels * 1e6))
        over = rss_run(args, folder, side, scale)
        output = (side * scale) ** 2 * 3 / 2**20
        working, source = working_set(args, model, side), side**2 * 12 / 2**20
        rest = over - fixed - working - source
        print(f"{(side * scale) ** 2 / 1e6:>5.0f} MP {output:>5.0f} MiB {over:>6.0f} MiB {fixed:>3.0f} MiB "
              f"{working:>4.0f} MiB {source:>3.0f} MiB {rest:>3.0f} MiB {rest / output:>9.2f}x "
              f"{(over - fixed - working) / output:>31.2f}x")


def working_set(args, model, side: int) -> float:
    """MiB, computed: the tiler's band (a row of tiles as float32) and, per strip of the mark (its
    rows and SSIM context), the unmarked rows kept and joined (2 x 12 B), the mark (4 B), the
    float scratch of the quantiser (12 B), the levels and their filtered copy (2 x 3 B)."""
    scale, (core, _) = model.descriptor.scale, tiling._spans(side, 0, args.tile, model.descriptor.tiling)[0]
    width = side * scale
    band = (core.stop - core.start) * scale * width * 12
    strip = (embedding._STRIP_ROWS + 2 * embedding._SSIM_RADIUS) * width * (24 + 4 + 12 + 6)
    return (band + strip) / 2**20


def rss_run(args, folder: Path, side: int, scale: int) -> float:
    """Peak RSS over the baseline (MiB) of one upscale of a ``side``-pixel square, in a fresh process."""
    source = folder / f"rss-{side}.png"
    Image.fromarray(test_picture(side)).save(source)
    done = subprocess.run(
        [sys.executable, __file__, "--model", args.model or "", "--tile", str(args.tile),
         "--threads", str(args.threads), "--rss-child", str(source)],
        capture_output=True, text=True, check=True,
    )
    base, peak = (int(v) for v in done.stdout.split())
    return peak - base


def rss_child(args) -> None:
    source = Path(args.rss_child)
    options = UpscaleOptions(model=args.model, tile=args.tile, device="cpu", force=True)
    engine.prepare_model(options)
    base = status_mib("VmRSS")
    upscale_file(source, source.with_name(source.stem + "-up.png"), options)
    print(base, status_mib("VmHWM"))


def status_mib(field: str) -> int:
    """This process's own figure (VmHWM, not ru_maxrss: Linux carries that over from the parent's
    fork across exec, so a big parent inflates it)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="name or path (default: avow-compact-x4)")
    parser.add_argument("--rrdb", action="store_true", help="a full RRDBNet x4 (23 blocks), random weights "
                        "(with --device cuda and no --model: both it and avow-compact-x4)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both loops")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="for the speed table")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=float, nargs="*", default=[0.25, 1, 4], help="input megapixels")
    parser.add_argument("--breakdown", type=float, default=0.25, help="input megapixels (0: skip)")
    parser.add_argument("--rss-sizes", type=float, nargs="*", default=[0.25, 1, 4], help="input megapixels")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model = args.model or None
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="avow-bench-") as home:
        os.environ["AVOW_CONFIG_DIR"] = home  # a throwaway signing identity, never the user's
        if args.rss_child:
            return rss_child(args)
        rrdb = str(Path(home) / "rrdbnet-x4-random.safetensors")
        # On a GPU both models by default, so that the ratios the issue asks for are one command.
        names = [rrdb] if args.rrdb else [args.model] if args.model or args.device == "cpu" else [None, rrdb]
        if rrdb in names:
            save_file(RRDBNet().state_dict(), rrdb)  # RealESRGAN_x4plus's shape
        args.model = names[0]
        for name in names:
            model = load_model(find_model(name, 4))
            print(f"model {model.descriptor.name} ({model.descriptor.params} params, {model.descriptor.arch}), "
                  f"{torch.get_num_threads()} torch threads; this machine is shared and loaded")
            if args.sizes:
                speed(args, model)
        if args.breakdown:
            breakdown(args, Path(home))
        if args.rss_sizes:
            peak_memory(args, Path(home))


if __name__ == "__main__":
    main()
