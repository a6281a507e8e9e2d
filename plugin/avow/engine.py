"""Upscale -> disclose -> sign: the one path by which Avow writes a synthesized image.

The synthesized pixels carry Avow's watermark from the moment they exist (``synthesize``).
Fail closed. Pixels go to a staged file beside the target (a non-image name, see ``staging``),
EXIF/XMP is written into it, the C2PA manifest is signed last into a second staged file, and only
that fully disclosed file is moved onto the target with ``os.replace``. Any failure, cancellation
or stop signal removes the staged files; a SIGKILL leaves them under their non-image names for the
next run to sweep. So no undisclosed output ever exists under an image name.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avow_c2pa import watermark
from avow_c2pa.config import user_models_dir, user_watermark_keys
from avow_c2pa.disclosure import Disclosure, sha256_file
from avow_c2pa.errors import discard
from avow_c2pa.manifest import THUMBNAIL_EDGE, seal, upscale_manifest
from avow_c2pa.metadata import read_rights
from avow_c2pa.staging import staged_path, sweep
from avow_c2pa.watermark.embedding import Marker
from avow_models import DEFAULT_MODELS, LoadedModel, UnsupportedModelError, find_model, load_model

from . import DEFAULT_TILE, tiling
from .canvas import Canvas, FloatCanvas, LevelsCanvas, PngCanvas
from .devices import inference_dtype, pick_device
from .errors import ImageError, UsageError
from .images import Picture, output_format, read_header, read_picture, thumbnail, write_levels
from .precheck import check_upscale

# Output pixels Avow will synthesize in one job: 256 MP is a 16k x 16k image, ~3 GB as float32.
MAX_OUTPUT_PIXELS = 256_000_000
SCALES = (2, 4)


@dataclass(frozen=True)
class UpscaleOptions:
    scale: int | None = None  # None: the model's own scale, or 4 for the default model
    model: str | None = None  # built-in or user model name, or a weights file path
    device: str = "auto"
    tile: int = DEFAULT_TILE
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
    identity = check_upscale(
        source, target, options.force, options.tile, options.key, options.cert, options.model, options.scale
    )
    sweep(target.parent)  # what a killed run left
    model = model or prepare_model(options)
    header = read_header(source)
    check_budget(source.name, header.width, header.height, model.descriptor.scale)
    picture = read_picture(source)
    device = pick_device(options.device)
    payload = watermark_payload(model, picture)
    fmt = output_format(target)
    canvas = None if fmt == "png" else LevelsCanvas(picture, model.descriptor.scale, fmt)  # refuses early
    output_size = (picture.size[0] * model.descriptor.scale, picture.size[1] * model.descriptor.scale)
    disclosure = disclose(model, picture, sha256_file(source), payload)
    manifest, rights = upscale_manifest(disclosure, target.name), read_rights(source)
    staged = staged_path(target, "pixels")
    try:
        if canvas is None:  # written as it is made, under the staged name
            with open(staged, "wb") as handle:
                stream = PngCanvas(picture, model.descriptor.scale, handle, THUMBNAIL_EDGE)
                synthesize_into(stream, picture, model, device, options.tile, payload, on_progress, should_stop)
                preview = stream.close()
            del stream
        else:
            synthesize_into(canvas, picture, model, device, options.tile, payload, on_progress, should_stop)
            levels = canvas.levels()
            del canvas
            write_levels(levels, staged)
            preview = thumbnail(levels, THUMBNAIL_EDGE)
            del levels
        if target.exists() and not options.force:
            raise UsageError(f"{target}: appeared while upscaling; pass --force to replace it")
        seal(staged, target, manifest, identity, source, disclosure, rights, preview)
    finally:
        discard(staged)  # seal consumes it; this covers a failure or stop before seal began
    return UpscaleResult(target, disclosure, output_size, device.type, time.perf_counter() - started)


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
    """The upscaled, marked picture as float planes (for an editor): ``synthesize_into`` a ``FloatCanvas``."""
    canvas = FloatCanvas(picture, model.descriptor.scale)
    synthesize_into(canvas, picture, model, device, tile, payload, on_progress, should_stop)
    return canvas.picture()


def synthesize_into(
    canvas: Canvas, picture: Picture, model: LoadedModel, device, tile: int, payload: int, on_progress=None,
    should_stop=None,
) -> None:
    """Run the model over the alpha plane as grey, then over the colour planes, as one progress
    run, handing ``canvas`` each band of colour with its mark (Avow's public key plus the user's
    own keys, ``Marker``) before anything is quantised or written, so no path yields
    unmarked synthesized pixels. Nothing of full size exists as float beyond what the canvas keeps.
    The mark's amplitude is set from the input picture (in memory), so it needs no pass over the output."""
    dtype = inference_dtype(device, model.descriptor.fp16_safe)
    module = model.module.to(device=device, dtype=dtype)
    scale = model.descriptor.scale
    height, width = picture.color.shape[0] * scale, picture.color.shape[1] * scale
    planes = ([np.repeat(picture.alpha[..., None], 3, axis=2)] if picture.alpha is not None else []) + [picture.color]
    keys = (watermark.DEFAULT_KEY, *user_watermark_keys())
    marker = Marker(height, width, payload, keys, picture.size, picture.color, canvas.put)
    for number, plane in enumerate(planes):

        def progress(done: int, total: int, offset=number) -> None:
            if on_progress is not None:
                on_progress(offset * total + done, len(planes) * total)

        colour = number == len(planes) - 1
        low, high = np.inf, -np.inf
        for top, band in tiling.bands(
            module, plane, scale, tile, model.descriptor.tiling, dtype=dtype, on_progress=progress,
            should_stop=should_stop,
        ):
            low, high = min(low, float(band.min())), max(high, float(band.max()))
            if colour:
                marker.feed(band)
            else:
                canvas.put_alpha(top, band)
        # A flat output made from an input that is not flat: huge weights can saturate every
        # pixel, and that picture must not be disclosed, signed and reported as a success. (NaN
        # and infinite values are refused by the tiler, before clamping would hide them.)
        if low == high and plane.min() != plane.max():
            raise UnsupportedModelError(f"model {model.descriptor.name}: its output is one flat colour; nothing was written")
