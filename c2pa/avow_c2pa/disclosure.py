"""The facts every synthesized output declares, in one record.

EXIF, XMP and the C2PA manifest are written from this single record so they can never disagree,
and the verifier compares what it reads back against the same field names.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__

SOFTWARE = "Avow"
# IPTC NewsCodes: an edit of an existing capture made with a trained model (as opposed to
# trainedAlgorithmicMedia, which would claim the whole image was generated from nothing).
COMPOSITE_WITH_AI = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
AI_SOURCE_TYPES = frozenset(
    "http://cv.iptc.org/newscodes/digitalsourcetype/" + code
    for code in ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia", "compositeSynthetic")
)


@dataclass(frozen=True)
class Disclosure:
    model_name: str
    model_sha256: str
    model_arch: str
    scale: int
    input_width: int
    input_height: int
    input_sha256: str
    watermark_id: str | None = None  # the pixel watermark's payload, 8 hex digits (None: unmarked)
    software_version: str = __version__
    digital_source_type: str = COMPOSITE_WITH_AI

    @property
    def software(self) -> str:
        return f"{SOFTWARE} {self.software_version}"

    def sentence(self) -> str:
        return (
            f"AI-upscaled: pixels synthesized by the model {self.model_name} at x{self.scale} "
            f"with {self.software}; not original footage."
        )

    def to_dict(self) -> dict:
        return asdict(self)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
