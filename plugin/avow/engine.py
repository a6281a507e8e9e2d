"""Upscale -> disclose -> sign: the one path by which Avow writes a synthesized image.

The synthesized pixels carry Avow's watermark from the moment they exist (``synthesize``).
Fail closed. Pixels go to a temp file beside the target, EXIF/XMP is written into it, the C2PA
manifest is signed last into a second temp file, and only that fully disclosed file is moved onto
the target with ``os.replace``. Any failure or cancellation removes the temp files, so no
undisclosed output can ever exist under the target's name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from avow_c2pa import watermark
from avow_c2pa.config import user_models_dir, user_watermark_keys
from avow_c2pa.disclosure import Disclosure, sha256_file
from avow_c2pa.keys import signing_identity
from avow_c2pa.manifest import seal, upscale_manifest
from avow_c2pa.metadata import read_rights
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
    model: LoadedModel | None = None,  # already prepared from ``options`` (a batch loads it once)
) -> UpscaleResult:
    started = time.perf_counter()
    source, target = Path(source), Path(target)
    _check_paths(source, target, options.force)
    identity = signing_identity(options.key, options.cert)  # before the heavy work: a bad key fails fast
    user_watermark_keys()  # likewise a malformed [watermark] setting
    model = model or prepare_model(options)
    header = read_header(source)
    check_budget(source.name, header.width, header.height, model.descriptor.scale)
    picture = read_picture(source)
    device = pick_device(options.device)
    payload = watermark_payload(model, picture)
    result = synthesize(picture, model, device, options.tile, payload, on_progress, should_stop)
    disclosure = disclose(model, picture, sha256_file(source), payload)
    staged = target.with_name(f".{target.stem}.{secrets.token_hex(4)}{target.suffix}")
    try:
        write_picture(result, staged)
        if target.exists() and not options.force:
            raise UsageError(f"{target}: appeared while upscaling; pass --force to replace it")
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    seal(staged, target, upscale_manifest(disclosure, target.name), identity, source, disclosure, read_rights(source))
    return UpscaleResult(target, disclosure, result.size, device.type, time.perf_counter() - started)


def prepare_model(options: UpscaleOptions) -> LoadedModel:
    """The model the options name, checked against the requested scale."""
    model = load_model(find_model(options.model, options.scale, user_models_dir()))
    _check_scale(model, options.scale)
    return model


def check_budget(name: str, width: int, height: int, scale: int) -> None:
    if width * height * scale * scale > MAX_OUTPUT_PIXELS:
        raise ImageError(
            f"{name}: {width}x{height} at x{scale} exceeds Avow's budget of "
            f"{MAX_OUTPUT_PIXELS // 1_000_000} megapixels of output"
        )


def watermark_payload(model: LoadedModel, picture: Picture) -> int:
    """The identifier the pixel mark carries and the manifest's soft binding repeats.

    Derived from the input's pixels and the model: the same upscale always gives the same pixels,
    and different inputs give different identifiers, which is what lets a stripped copy be matched
    to its manifest. The pixels are rounded to 8 bits first, so the CLI's copy and an editor's
    float copy of the same picture (Krita's F32 differs in the last bits) give the same mark."""
    digest = hashlib.sha256(f"{model.descriptor.sha256}\0{model.descriptor.scale}\0".encode())
    for plane in (picture.color, picture.alpha):
        if plane is not None:
            digest.update(np.round(plane * 255).astype(np.uint8).tobytes())
    return int.from_bytes(digest.digest()[:4], "big")


def disclose(model: LoadedModel, picture: Picture, input_sha256: str, payload: int) -> Disclosure:
    return Disclosure(
        model_name=model.descriptor.name,
        model_sha256=model.descriptor.sha256,
        model_arch=model.descriptor.arch,
        scale=model.descriptor.scale,
        input_width=picture.size[0],
        input_height=picture.size[1],
        input_sha256=input_sha256,
        watermark_id=f"{payload:08x}",
    )


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


def _check_scale(model: LoadedModel, requested: int | None) -> None:
    scale = model.descriptor.scale
    if scale not in SCALES:
        raise UsageError(f"model {model.descriptor.name} is x{scale}; Avow upscales x2 or x4")
    if requested is not None and requested != scale:
        raise UsageError(
            f"model {model.descriptor.name} upscales x{scale}, not x{requested}; "
            f"use --scale {scale} or the model {DEFAULT_MODELS.get(requested, 'for that scale')}"
        )


def synthesize(
    picture: Picture, model: LoadedModel, device, tile: int, payload: int, on_progress=None, should_stop=None
) -> Picture:
    """Run the model over the colour planes, and over the alpha plane as grey, as one progress run;
    then mark the colour with ``payload`` (Avow's public key plus the user's own keys), before
    anything is quantised or written, so no path yields unmarked synthesized pixels."""
    dtype = inference_dtype(device, model.descriptor.fp16_safe)
    module = model.module.to(device=device, dtype=dtype)
    planes = [picture.color] + ([np.repeat(picture.alpha[..., None], 3, axis=2)] if picture.alpha is not None else [])
    outputs = []
    for number, plane in enumerate(planes):

        def progress(done: int, total: int, offset=number) -> None:
            if on_progress is not None:
                on_progress(offset * total + done, len(planes) * total)

        outputs.append(
            tiling.upscale(
                module, plane, model.descriptor.scale, tile, model.descriptor.tiling,
                dtype=dtype, on_progress=progress, should_stop=should_stop,
            )
        )
    alpha = outputs[1].mean(axis=2) if len(outputs) > 1 else None
    keys = (watermark.DEFAULT_KEY, *user_watermark_keys())
    color = watermark.embed(outputs[0], payload, keys, source_size=picture.size)
    return dataclasses.replace(picture, color=color, alpha=alpha)

