"""Tiled inference: any image size in bounded memory, with no seams.

Each tile is run with the model's own overlap (its receptive field, from the descriptor) of real
image context on every side and only its core is kept, so the result is the same as an untiled
run: no blending, no visible seams. Tiles start on the model's size grid (an architecture that
pixel-unshuffles groups pixels on it) and are padded up to its size requirements. The image is
split into equal tiles no larger than asked, so no thin last row or column pays a full overlap.
On CUDA out-of-memory the batch (below), then the tile is halved and the rows not yet done are
run again, down to a floor where it gives up with a clear error.

On a GPU the tiles of a row that share a shape (all but its first and last: those have context
on one side only) run as one batch, and their outputs come back in the model's own precision
(fp16 halves the bytes over the bus) through pinned memory, one copy and one wait a batch. A
tile's result does not depend on its batch, so neither the seams nor the output change.
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
BATCH = 8  # tiles of one shape run together on a GPU
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
    batch: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """The upscaled ``image`` a row of tiles at a time, top to bottom: (first output row, float32
    rows x W*scale x C in [0, 1]), so a caller can mark, quantise and store each band and never
    hold the whole output as float. The band's array is reused for the next one.

    ``tile`` 0 means a single tile of the whole image. A tile whose output is not finite raises
    ``UnsupportedModelError``. ``batch``: at most this many tiles of one shape run together
    (default: BATCH on a GPU, 1 on the CPU, where batches of 2 and 4 took the same CPU time,
    9.7-10.9 s, on a 1000x1000 x4 run with one thread, in a larger working set). On CUDA
    out-of-memory the rows not yet yielded are planned again with half the batch, then with
    tiles half as large (the output is the same whatever the tiles).
    """
    device = next(model.parameters()).device
    batch = batch or (BATCH if device.type == "cuda" else 1)
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
                for group in _groups(columns, batch):
                    if should_stop is not None and should_stop():
                        raise Cancelled("cancelled")
                    _tiles(model, image, buffer, scale, (core, context), group, tiling.size, device, dtype)
                    done += len(group)
                    if on_progress is not None:
                        on_progress(done, total)
                yield core.start * scale, buffer
                top = core.stop
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch > 1:  # fewer tiles at once first: the tiles' size is the user's
                batch //= 2
                continue
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


def _groups(columns: list[tuple[slice, slice]], batch: int) -> list[list[tuple[slice, slice]]]:
    """Consecutive tiles of a row that can share a batch: the same core and context widths and the
    same overlap on the left, at most ``batch`` of them."""
    def shape(cols: slice, ccols: slice) -> tuple[int, int, int]:
        return cols.stop - cols.start, ccols.stop - ccols.start, cols.start - ccols.start

    groups: list[list[tuple[slice, slice]]] = []
    for tile in columns:
        if groups and len(groups[-1]) < batch and shape(*groups[-1][0]) == shape(*tile):
            groups[-1].append(tile)
        else:
            groups.append([tile])
    return groups


@torch.inference_mode()
def _tiles(model, image, output, scale, row, group, size: SizeRequirements, device, dtype) -> None:
    """Run tiles of one shape with their context as one batch and write their cores into
    ``output`` (the band of their row)."""
    rows, crows = row
    patches = [image[crows, ccols] for _, ccols in group]
    patch = torch.from_numpy(patches[0][None] if len(patches) == 1 else np.stack(patches)).permute(0, 3, 1, 2)
    patch = patch.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    height, width = patch.shape[-2:]
    padded_h, padded_w = size.padded(height, width)
    if (padded_h, padded_w) != (height, width):
        # Replicated edges: at the image's border the same rows the whole image would get.
        patch = F.pad(patch, (0, padded_w - width, 0, padded_h - height), "replicate")
    result = model(patch)
    cols, ccols = group[0]
    top, left = (rows.start - crows.start) * scale, (cols.start - ccols.start) * scale
    core = result[:, :, top : top + (rows.stop - rows.start) * scale, left : left + (cols.stop - cols.start) * scale]
    # Checked before clamping, which would turn NaN/inf (damaged weights, overflow) into a picture.
    # One sum carries any NaN or infinity through (20x cheaper than an elementwise test and .all());
    # a finite output whose sum overflows (values near 1e33: no picture) is refused with them.
    if not math.isfinite(float(core.sum(dtype=torch.float32))):
        raise UnsupportedModelError("the model's output holds NaN or infinite values; nothing was written")
    core = core.permute(0, 2, 3, 1).clamp_(0.0, 1.0)
    if core.device.type == "cuda":
        host = torch.empty(core.shape, dtype=core.dtype, pin_memory=True)
        host.copy_(core, non_blocking=True)
        torch.cuda.current_stream(core.device).synchronize()
        core = host
    cores = core.float().numpy()
    for (cols, _), tile_core in zip(group, cores, strict=True):
        output[:, cols.start * scale : cols.stop * scale] = tile_core
