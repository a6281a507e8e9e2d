"""EXIF/XMP disclosure with pyexiv2: the signal that survives tools that don't read C2PA.

It must be written *before* the C2PA manifest is signed: any metadata write afterwards changes
the bytes the manifest's hash covers (``assertion.dataHash.mismatch``).

The output's metadata is written from scratch rather than copied from the input: a camera
make/model carried over would make a synthesized image look like a camera original. Only the
author's rights statements travel from the input.
"""

from __future__ import annotations

from pathlib import Path

import pyexiv2

from .disclosure import Declared, Disclosure
from .errors import DisclosureError, file_system_error

AVOW_NS = "https://avow.dev/ns/1.0/"
AVOW_PREFIX = "avow"

# Rights the author asserted on the input: dropping them would misrepresent who owns the picture.
CARRIED_EXIF = ("Exif.Image.Artist", "Exif.Image.Copyright")
CARRIED_XMP = ("Xmp.dc.creator", "Xmp.dc.rights", "Xmp.xmpRights.UsageTerms", "Xmp.photoshop.Credit")
# A staged file up to this size gets its EXIF/XMP from memory (see ``write_disclosure``): the whole
# file is held about three times over (read, exiv2's copy, the result).
_IN_MEMORY_BYTES = 16 << 20

_namespace_registered = False
# exiv2 prints a warning per oddity of a hostile file to stderr; errors still raise.
pyexiv2.set_log_level(4)


def _register_namespace() -> None:
    global _namespace_registered
    if not _namespace_registered:
        pyexiv2.registerNs(AVOW_NS, AVOW_PREFIX)
        _namespace_registered = True


def disclosure_fields(disclosure: Declared) -> tuple[dict, dict]:
    """The EXIF and XMP fields that declare ``disclosure`` (a found mark alone names no model)."""
    sentence = disclosure.sentence()
    xmp = {
        "Xmp.iptcExt.DigitalSourceType": disclosure.digital_source_type,
        "Xmp.iptcExt.AISystemUsed": disclosure.software,
        "Xmp.xmp.CreatorTool": disclosure.software,
        "Xmp.dc.description": {'lang="x-default"': sentence},
    }
    if isinstance(disclosure, Disclosure):
        xmp |= {
            "Xmp.iptcExt.AISystemUsed": f"{disclosure.software} ({disclosure.model_name})",
            "Xmp.iptcExt.AISystemVersionUsed": disclosure.model_sha256[:16],
            "Xmp.avow.model": disclosure.model_name,
            "Xmp.avow.modelSha256": disclosure.model_sha256,
            "Xmp.avow.modelArch": disclosure.model_arch,
            "Xmp.avow.scale": str(disclosure.scale),
            "Xmp.avow.inputWidth": str(disclosure.input_width),
            "Xmp.avow.inputHeight": str(disclosure.input_height),
            "Xmp.avow.inputSha256": disclosure.input_sha256,
        }
    if disclosure.watermark_id:
        xmp["Xmp.avow.watermark"] = disclosure.watermark_id
    exif = {
        "Exif.Image.ImageDescription": sentence.encode("ascii", "replace").decode("ascii"),
        "Exif.Photo.UserComment": f"charset=Unicode {sentence}",
        "Exif.Image.Software": disclosure.software,
    }
    return exif, xmp


def read_rights(path: Path) -> tuple[dict, dict]:
    """The author's rights statements of an input file, to carry into the output."""
    try:
        exif, xmp = read_metadata(path)
    except DisclosureError:
        return {}, {}
    return {k: v for k, v in exif.items() if k in CARRIED_EXIF}, {k: v for k, v in xmp.items() if k in CARRIED_XMP}


def _required_exif(image: pyexiv2.Image | pyexiv2.ImageData) -> dict:
    """The tags EXIF 2.32 requires of every file (and of a JPEG's YCbCr data), so that readers and
    ``exiftool -validate`` find a complete EXIF block, not a bare disclosure. Written from scratch
    like the rest: the picture's real size, sRGB unless an ICC profile says otherwise."""
    icc = image.read_icc()
    exif = {
        "Exif.Image.XResolution": "72/1",
        "Exif.Image.YResolution": "72/1",
        "Exif.Image.ResolutionUnit": "2",
        "Exif.Photo.ExifVersion": "48 50 51 50",  # "0232"
        "Exif.Photo.FlashpixVersion": "48 49 48 48",  # "0100"
        "Exif.Photo.ColorSpace": "1" if not icc or b"sRGB" in icc else "65535",
    }
    if image.get_mime_type() != "image/tiff":  # a TIFF's size is its own IFD0's (exiv2 keeps those tags)
        exif["Exif.Photo.PixelXDimension"] = str(image.get_pixel_width())
        exif["Exif.Photo.PixelYDimension"] = str(image.get_pixel_height())
    if image.get_mime_type() == "image/jpeg":
        exif["Exif.Image.YCbCrPositioning"] = "1"
        exif["Exif.Photo.ComponentsConfiguration"] = "1 2 3 0"  # Y Cb Cr
    return exif


def write_disclosure(path: Path, disclosure: Declared, carried: tuple[dict, dict] = ({}, {})) -> None:
    """Write the disclosure into ``path`` (a staged file: a failure leaves it to be discarded).

    exiv2 rewrites a file for each of its EXIF and XMP writes; a file up to _IN_MEMORY_BYTES is
    rewritten once, from memory (a third of the disclosure's time on a 4 MP PNG), a larger one in
    place, so memory stays bounded whatever the size."""
    exif, xmp = disclosure_fields(disclosure)
    _register_namespace()
    try:
        if path.stat().st_size <= _IN_MEMORY_BYTES:
            with open(path, "r+b") as handle:  # one handle, read then rewritten: the staged file is Avow's
                with pyexiv2.ImageData(handle.read()) as image:
                    _modify(image, exif, xmp, carried)
                    data = image.get_bytes()
                handle.seek(0)
                handle.write(data)
                handle.truncate()
        else:
            with pyexiv2.Image(str(path)) as image:
                _modify(image, exif, xmp, carried)
    except OSError as exc:
        raise file_system_error(exc, path) from exc
    except Exception as exc:  # pyexiv2 raises bare RuntimeError/Exception from native code
        raise DisclosureError(f"{path.name}: cannot write EXIF/XMP disclosure: {exc}") from exc
    written_exif, written_xmp = read_metadata(path)
    if written_xmp.get("Xmp.iptcExt.DigitalSourceType") != disclosure.digital_source_type:
        raise DisclosureError(f"{path.name}: the XMP disclosure did not survive writing")
    if written_exif.get("Exif.Image.Software") != disclosure.software:
        raise DisclosureError(f"{path.name}: the EXIF disclosure did not survive writing")


def _modify(image: pyexiv2.Image | pyexiv2.ImageData, exif: dict, xmp: dict, carried: tuple[dict, dict]) -> None:
    image.modify_exif({**_required_exif(image), **carried[0], **exif})
    image.modify_xmp({**carried[1], **xmp})


def read_metadata(path: Path) -> tuple[dict, dict]:
    """All EXIF and XMP of a file, as pyexiv2 decodes them."""
    _register_namespace()
    try:
        with pyexiv2.Image(str(path)) as image:
            return image.read_exif(), image.read_xmp()
    except Exception as exc:
        raise DisclosureError(f"{path.name}: cannot read EXIF/XMP: {exc}") from exc
