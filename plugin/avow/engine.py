"""Upscale -> disclose -> sign: the one path by which Avow writes a synthesized image.

Fail closed. Pixels go to a temp file beside the target, EXIF/XMP is written into it, the C2PA
manifest is signed last into a second temp file, and only that fully disclosed file is moved onto
the target with ``os.replace``. Any failure or cancellation removes the temp files, so no
undisclosed output can ever exist under the target's name.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avow_c2pa.config import user_models_dir
from avow_c2pa.disclosure import Disclosure, sha256_file
from avow_c2pa.keys import Identity, signing_identity
from avow_c2pa.manifest import sign_file, upscale_manifest
from avow_c2pa.metadata import read_rights, write_disclosure
from avow_models import DEFAULT_MODELS, LoadedModel, find_model, load_model

from . import tiling
from .devices import inference_dtype, pick_device
from .errors import ImageError, UsageError
from .images import Picture, output_format, read_header, read_picture, write_picture

# Output pixels Avow will synthesize in one job: 256 MP is a 16k x 16k image, ~3 GB as float32.
MAX_OUTPUT_PIXELS = 256_000_000
SCALES = (2, 4)


@dataclass(frozen=True)
class UpscaleOptions:
    scale: int | None = None  # None: the model's own scale, or 4 for the default model
    model: str | None = None  # built-in or user model name, or a weights file path
    device: str = "auto"
    tile: int = 256
    force: bool = False
    key: Path | None = None
    cert: Path | None = None


@dataclass(frozen=True)
class UpscaleResult:
    output: Path
    disclosure: Disclosure
    output_size: tuple[int, int]
    device: str
    seconds: float


def upscale_file(
    source: Path,
    target: Path,
    options: UpscaleOptions = UpscaleOptions(),
    on_progress: tiling.Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> UpscaleResult:
    started = time.perf_counter()
    source, target = Path(source), Path(target)
    _check_paths(source, target, options.force)
    identity = signing_identity(options.key, options.cert)  # before the heavy work: a bad key fails fast
    model = load_model(find_model(options.model, options.scale, user_models_dir()))
    scale = _check_scale(model, options.scale)
    header = read_header(source)
    if header.width * header.height * scale * scale > MAX_OUTPUT_PIXELS:
        raise ImageError(
            f"{source.name}: {header.width}x{header.height} at x{scale} exceeds Avow's budget of "
            f"{MAX_OUTPUT_PIXELS // 1_000_000} megapixels of output"
        )
    picture = read_picture(source)
    device = pick_device(options.device)
    result = _synthesize(picture, model, device, options.tile, on_progress, should_stop)
    disclosure = Disclosure(
        model_name=model.descriptor.name,
        model_sha256=model.descriptor.sha256,
        model_arch=model.descriptor.arch,
        scale=scale,
        input_width=picture.size[0],
        input_height=picture.size[1],
        input_sha256=sha256_file(source),
    )
    _write_disclosed(result, source, target, disclosure, identity, options.force)
    return UpscaleResult(target, disclosure, result.size, device.type, time.perf_counter() - started)


def _check_paths(source: Path, target: Path, force: bool) -> None:
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    output_format(target)
    if target.exists() and os.path.samefile(source, target):
        raise UsageError(f"{target}: refusing to overwrite the input; choose another output name")
    if target.exists() and not force:
        raise UsageError(f"{target}: already exists; pass --force to replace it")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent}: no such directory")


def _check_scale(model: LoadedModel, requested: int | None) -> int:
    scale = model.descriptor.scale
    if scale not in SCALES:
        raise UsageError(f"model {model.descriptor.name} is x{scale}; Avow upscales x2 or x4")
    if requested is not None and requested != scale:
        raise UsageError(
            f"model {model.descriptor.name} upscales x{scale}, not x{requested}; "
            f"use --scale {scale} or the model {DEFAULT_MODELS.get(requested, 'for that scale')}"
        )
    return scale


def _synthesize(picture, model: LoadedModel, device, tile, on_progress, should_stop) -> Picture:
    """Run the model over the colour planes, and over the alpha plane as grey, as one progress run."""
    dtype = inference_dtype(device, model.descriptor.fp16_safe)
    module = model.module.to(device=device, dtype=dtype)
    planes = [picture.color] + ([np.repeat(picture.alpha[..., None], 3, axis=2)] if picture.alpha is not None else [])
    outputs = []
    for number, plane in enumerate(planes):
        tensor = torch.from_numpy(plane).permute(2, 0, 1).unsqueeze(0)

        def progress(done: int, total: int, offset=number) -> None:
            if on_progress is not None:
                on_progress(offset * total + done, len(planes) * total)

        upscaled = tiling.upscale(
            module, tensor, model.descriptor.scale, tile, dtype=dtype, on_progress=progress, should_stop=should_stop
        )
        outputs.append(upscaled.squeeze(0).permute(1, 2, 0).clamp_(0.0, 1.0).numpy())
    alpha = outputs[1].mean(axis=2) if len(outputs) > 1 else None
    return dataclasses.replace(picture, color=outputs[0], alpha=alpha)


def _write_disclosed(
    picture: Picture, source: Path, target: Path, disclosure: Disclosure, identity: Identity, force: bool
) -> None:
    token = secrets.token_hex(4)
    pixels_tmp = target.with_name(f".{target.stem}.{token}.pixels{target.suffix}")
    signed_tmp = target.with_name(f".{target.stem}.{token}.signed{target.suffix}")
    try:
        write_picture(picture, pixels_tmp)
        write_disclosure(pixels_tmp, disclosure, read_rights(source))
        sign_file(pixels_tmp, signed_tmp, upscale_manifest(disclosure, target.name), identity, parent=source)
        if target.exists() and not force:
            raise UsageError(f"{target}: appeared while upscaling; pass --force to replace it")
        os.replace(signed_tmp, target)
    finally:
        for leftover in (pixels_tmp, signed_tmp):
            leftover.unlink(missing_ok=True)
