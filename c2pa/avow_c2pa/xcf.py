"""XCF files: GIMP's own format carries no C2PA manifest; Avow's GIMP plug-in keeps provenance in
parasites instead (one on the image listing every upscale, one on each synthesized layer).

Parasites are unsigned, like XMP: they tell which layers hold synthesized pixels, never that a
file is authentic. gimpformats parses the file in pure Python; it runs in the verifier's
isolated child like every other parser.
"""

from __future__ import annotations

import json
from pathlib import Path

from gimpformats.gimpXcfDocument import GimpDocument

PARASITE = "avow-provenance"


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
