"""Tiled inference: any image size in bounded memory, with no seams.

Each tile is run with the model's own overlap (its receptive field, from the descriptor) of real
image context on every side and only its core is kept, so the result is the same as an untiled
run: no blending, no visible seams. Tiles start on the model's size grid (an architecture that
pixel-unshuffles groups pixels on it) and are padded up to its size requirements. The image is
split into equal tiles no larger than asked, so no thin last row or column pays a full overlap.
On CUDA out-of-memory the tile is halved and the run starts over, down to a floor where it gives
up with a clear error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from avow_models import SizeRequirements, Tiling, UnsupportedModelError

from .errors import Cancelled, DeviceError

MIN_TILE = 32
Progress = Callable[[int, int], None]


def upscale(model: torch.nn.Module, image: np.ndarray, scale: int, *args, **kwargs) -> np.ndarray:
    """Upscale ``image`` (H x W x C float32 in [0, 1]) with ``model`` (already on its device, in
    ``dtype``); returns H*scale x W*scale x C float32, clamped to [0, 1]: ``bands`` (the same
    arguments) put together."""
    height, width, channels = image.shape
    output = np.empty((height * scale, width * scale, channels), np.float32)
    for top, band in bands(model, image, scale, *args, **kwargs):
        output[top : top + len(band)] = band
    return output


def bands(
    model: torch.nn.Module,
    image: np.ndarray,
    scale: int,
    tile: int,
    tiling: Tiling,
    dtype: torch.dtype = torch.float32,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """The upscaled ``image`` a row of tiles at a time, top to bottom: (first output row, float32
    rows x W*scale x C in [0, 1]), so a caller can mark, quantise and store each band and never
    hold the whole output as float. The band's array is reused for the next one.

    ``tile`` 0 means a single tile of the whole image. A tile whose output is not finite raises
    ``UnsupportedModelError``. On CUDA out-of-memory the rows not yet yielded are planned again
    with tiles half as large (the output is the same whatever the tiles).
    """
    device = next(model.parameters()).device
    height, width, _ = image.shape
    # oneDNN and cuDNN convolutions run faster on NHWC: 1.25x on this CPU for avow-compact-x4.
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    top, done, buffer = 0, 0, None
    while top < height:
        rows, columns = _spans(height, top, tile, tiling), _spans(width, 0, tile, tiling)
        total = done + len(rows) * len(columns)
        try:
            for core, context in rows:
                shape = ((core.stop - core.start) * scale, width * scale, image.shape[2])
                buffer = buffer if buffer is not None and buffer.shape == shape else np.empty(shape, np.float32)
                for cols, ccols in columns:
                    if should_stop is not None and should_stop():
                        raise Cancelled("cancelled")
                    _tile(model, image, buffer, scale, (core, cols, context, ccols), tiling.size, device, dtype)
                    done += 1
                    if on_progress is not None:
                        on_progress(done, total)
                yield core.start * scale, buffer
                top = core.stop
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            smaller = (tile or max(height, width)) // 2
            if smaller < MIN_TILE:
                raise DeviceError(f"out of GPU memory even with {MIN_TILE}px tiles; try --device cpu") from None
            tile = smaller


def _spans(size: int, start: int, tile: int, tiling: Tiling) -> list[tuple[slice, slice]]:
    """(core, context) of each tile along one axis from ``start`` (on the model's size grid: an
    architecture that pixel-unshuffles groups pixels on it), in equal steps no larger than
    ``tile``, so no thin last tile pays a full overlap."""
    grid = tiling.size.multiple_of
    overlap = tiling.overlap + -tiling.overlap % grid
    count = 1 if tile <= 0 or tile >= size - start else math.ceil((size - start) / tile)
    step = math.ceil((size - start) / count)
    step += -step % grid
    return [
        (slice(s, min(s + step, size)), slice(max(s - overlap, 0), min(s + step + overlap, size)))
        for s in range(start, size, step)
    ]


@torch.inference_mode()
def _tile(model, image, output, scale, spans, size: SizeRequirements, device, dtype) -> None:
    """Run one tile with its context and write its core into ``output`` (the band of its row)."""
    rows, cols, crows, ccols = spans
    patch = torch.from_numpy(image[crows, ccols]).permute(2, 0, 1).unsqueeze(0)
    patch = patch.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    height, width = patch.shape[-2:]
    padded_h, padded_w = size.padded(height, width)
    if (padded_h, padded_w) != (height, width):
        # Replicated edges: at the image's border the same rows the whole image would get.
        patch = F.pad(patch, (0, padded_w - width, 0, padded_h - height), "replicate")
    result = model(patch)
    top, left = (rows.start - crows.start) * scale, (cols.start - ccols.start) * scale
    core = result[0, :, top : top + (rows.stop - rows.start) * scale, left : left + (cols.stop - cols.start) * scale]
    # Checked before clamping, which would turn NaN/inf (damaged weights, overflow) into a picture.
    # One sum carries any NaN or infinity through (20x cheaper than an elementwise test and .all());
    # a finite output whose sum overflows (values near 1e33: no picture) is refused with them.
    if not math.isfinite(float(core.sum(dtype=torch.float32))):
        raise UnsupportedModelError("the model's output holds NaN or infinite values; nothing was written")
    core = core.permute(1, 2, 0).clamp_(0.0, 1.0).float().cpu()
    output[:, cols.start * scale : cols.stop * scale] = core.numpy()
