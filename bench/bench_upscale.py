"""Throughput and memory of the engine's tiled inference on this machine: figures, not pass/fail.

    .venv/bin/python bench/bench_upscale.py [--model NAME] [--size 1024] [--tile 256] [--device auto]

Prints seconds per output megapixel for each tile size and the process's peak resident memory,
so a change in tiling or device handling shows up as a number.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from avow import tiling
from avow.devices import inference_dtype, pick_device
from avow_c2pa.config import user_models_dir
from avow_models import find_model, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--size", type=int, default=512, help="input edge in pixels")
    parser.add_argument("--tiles", type=int, nargs="+", default=[0, 128, 256])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    model = load_model(find_model(args.model, args.scale, user_models_dir()))
    device = pick_device(args.device)
    dtype = inference_dtype(device, model.descriptor.fp16_safe)
    module = model.module.to(device=device, dtype=dtype)
    image = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    scale = model.descriptor.scale
    megapixels = (args.size * scale) ** 2 / 1e6
    print(f"model {model.descriptor.name} ({model.descriptor.params} params) on {device.type}/{dtype}, "
          f"{torch.get_num_threads()} threads, input {args.size}x{args.size} -> {megapixels:.1f} MP")
    tiling.upscale(module, image[:, :, :64, :64], scale, tile=0, dtype=dtype)  # warm-up
    for tile in args.tiles:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        tiling.upscale(module, image, scale, tile=tile, dtype=dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        print(f"tile {tile or 'none':>5}: {seconds:7.2f} s, {seconds / megapixels:6.2f} s per output MP")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
