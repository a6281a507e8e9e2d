"""XCF files: GIMP's own format carries no C2PA manifest; Avow's GIMP plug-in keeps provenance in
parasites instead (one on the image listing every upscale, one on each synthesized layer).

Parasites are unsigned, like XMP: they tell which layers hold synthesized pixels, never that a
file is authentic. Parasites can be removed; the pixels of a synthesized layer still carry Avow's
watermark, so ``layer_pixels`` hands the layers to the detector. gimpformats parses the file in
pure Python; it runs in the verifier's isolated child like every other parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import gimpformats.GimpIOBase as _gimp_io
import numpy as np
from gimpformats.gimpXcfDocument import GimpDocument

PARASITE = "avow-provenance"

# gimpformats 2025 indexes its property table with the id it reads, and GIMP 3.0 writes ids it
# does not know (e.g. 42): skip those, as GIMP itself does with unknown properties.
_KNOWN_PROPERTIES = len(list(_gimp_io.ImageProperties))
_decode_property = _gimp_io.GimpIOBase._propertyDecode


def _tolerant_property_decode(self, prop: int, data: bytearray) -> int:
    return len(data) if not 0 <= prop < _KNOWN_PROPERTIES else _decode_property(self, prop, data)


_gimp_io.GimpIOBase._propertyDecode = _tolerant_property_decode


def read_xcf(path: Path) -> dict:
    """``{"layers": n, "records": [...], "synthesized_layers": [names], "problems": [...]}``."""
    document = GimpDocument(str(path))
    problems: list[str] = []
    records = _parasite_json(document.parasites, problems, "image")
    layers = document.raw_layers
    synthesized = [
        str(layer.name) for layer in layers if _parasite_json(getattr(layer, "parasites", None) or [], problems, str(layer.name))
    ]
    return {
        "layers": len(layers),
        "records": records if isinstance(records, list) else [records] if records else [],
        "synthesized_layers": synthesized,
        "problems": problems,
    }


def _parasite_json(parasites, problems: list[str], owner: str):
    for parasite in parasites:
        if parasite.name == PARASITE:
            try:
                return json.loads(bytes(parasite.data or b"").decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                problems.append(f"the {owner} parasite {PARASITE} is not valid JSON")
                return None
    return None


def layer_pixels(path: Path, first: Sequence[str], budget: int) -> Iterator[tuple[str, np.ndarray]]:
    """Each pixel layer as an H x W x C array (the layers named in ``first`` first, then the rest
    from the top), until ``budget`` pixels are decoded: gimpformats decodes tiles in pure Python,
    about half a second per megapixel, and the verifier's child has 30 s."""
    layers = [layer for layer in GimpDocument(str(path)).raw_layers if not layer.isGroup]
    layers.sort(key=lambda layer: str(layer.name) not in first)  # stable: otherwise the stack's order
    for layer in layers:
        budget -= int(layer.width) * int(layer.height)
        if budget < 0:
            return
        yield str(layer.name), np.asarray(layer.image)
