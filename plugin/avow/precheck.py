"""Everything about an upscale request that can be checked without the model: paths, formats,
alpha, settings and the signing identity, checked before torch is imported (seconds on a busy
machine) and long before the inference, so a mistake is reported at once and names the user's
own file, never an internal temp file.

No torch here: the CLI imports this module first and the engine only once it passes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import cast

from PIL import Image

from avow_c2pa.config import settings, user_models_dir
from avow_c2pa.errors import describe_os_error, file_system_error
from avow_c2pa.keys import Identity, signing_identity
from avow_models import find_model

from .errors import ImageError, UsageError
from .images import ALPHA_FORMATS, output_format, read_header


def check_upscale(
    source: Path, target: Path, force: bool, tile: int, key: Path | None, cert: Path | None,
    model: str | None = None, scale: int | None = None,
) -> Identity:
    """The signing identity to use, once every check that needs no model has passed."""
    check_tile(tile)
    check_target(source, target, force)
    fmt = output_format(target)
    read_header(source)  # a directory, a missing file or a non-image, named as the user gave it
    if fmt not in ALPHA_FORMATS and _has_transparency(source):
        raise ImageError(
            f"{target}: {fmt.upper()} cannot keep the transparency of {source.name}; write .png, .webp or .tiff instead"
        )
    settings()  # the whole file, so a bad [watermark] stops the job now, as it stops every command
    identity = signing_identity(key, cert)
    find_model(model, scale, user_models_dir())  # a misspelt --model, named before torch loads
    return identity


def check_tile(tile) -> None:
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 0:
        raise UsageError(f"tile size must be a whole number of pixels, 0 (whole image) or more, not {tile!r}")


def check_target(source: Path, target: Path, force: bool) -> None:
    """The output may be written: not the input, not an existing file unless ``force``, never a
    directory, in a folder that exists and accepts a new file right now."""
    if source.is_dir():
        raise UsageError(f"{source}: is a directory, not an image file")
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    if target.is_dir():
        raise UsageError(f"{target}: is a directory; give the output a file name")
    if target.exists() and os.path.samefile(source, target):
        raise UsageError(f"{target}: refusing to overwrite the input; choose another output name")
    if target.exists() and not force:
        raise UsageError(f"{target}: already exists; pass --force to replace it")
    folder = target.parent
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such directory")
    try:  # an unnamed file: nothing to clean up, and it proves the folder is writable now
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise file_system_error(exc, folder) from None


def _has_transparency(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in image.info:
                return False
            low, _ = image.convert("RGBA").getchannel("A").getextrema()
            return cast(int, low) < 255  # one band's extrema are numbers
    except OSError as exc:
        raise ImageError(f"{path.name}: damaged or truncated image ({describe_os_error(exc)})") from None
