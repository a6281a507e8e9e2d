"""Tiled inference: any image size in bounded memory, with no seams.

Each tile is run with ``overlap`` pixels of real image context on every side and only its core is
kept, so as long as the model's receptive field fits in the overlap the result is the same as an
untiled run: no blending, no visible seams. On CUDA out-of-memory the tile is halved and the run
starts over, down to a floor where it gives up with a clear error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

from .errors import Cancelled, DeviceError

MIN_TILE = 32
# Some architectures pixel-unshuffle their input (RRDBNet x2 by 2, x1 by 4): patches are padded to
# a multiple of this, and the padding's output falls outside the kept core.
PATCH_MULTIPLE = 4
Progress = Callable[[int, int], None]


def upscale(
    model: torch.nn.Module,
    image: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int = 16,
    dtype: torch.dtype = torch.float32,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Upscale ``image`` (1 x C x H x W, float32, CPU) with ``model``; returns float32 on the CPU.

    ``tile`` 0 means a single tile of the whole image.
    """
    device = next(model.parameters()).device
    while True:
        try:
            return _run(model, image, scale, tile, overlap, device, dtype, on_progress, should_stop)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            smaller = (tile or max(image.shape[-2:])) // 2
            if smaller < MIN_TILE:
                raise DeviceError(f"out of GPU memory even with {MIN_TILE}px tiles; try --device cpu") from None
            tile = smaller


def _run(model, image, scale, tile, overlap, device, dtype, on_progress, should_stop) -> torch.Tensor:
    _, channels, height, width = image.shape
    tile_h, tile_w = (height, width) if tile <= 0 else (min(tile, height), min(tile, width))
    rows, cols = math.ceil(height / tile_h), math.ceil(width / tile_w)
    output = torch.empty((1, channels, height * scale, width * scale), dtype=torch.float32)
    total = rows * cols
    for index in range(total):
        if should_stop is not None and should_stop():
            raise Cancelled("cancelled")
        top, left = (index // cols) * tile_h, (index % cols) * tile_w
        bottom, right = min(top + tile_h, height), min(left + tile_w, width)
        ctop, cleft = max(top - overlap, 0), max(left - overlap, 0)
        cbottom, cright = min(bottom + overlap, height), min(right + overlap, width)
        patch = image[:, :, ctop:cbottom, cleft:cright].to(device=device, dtype=dtype)
        patch = F.pad(patch, (0, -patch.shape[-1] % PATCH_MULTIPLE, 0, -patch.shape[-2] % PATCH_MULTIPLE), "replicate")
        with torch.inference_mode():
            result = model(patch).float().cpu()
        core = result[
            :, :, (top - ctop) * scale : (bottom - ctop) * scale, (left - cleft) * scale : (right - cleft) * scale
        ]
        output[:, :, top * scale : bottom * scale, left * scale : right * scale] = core
        if on_progress is not None:
            on_progress(index + 1, total)
    return output
