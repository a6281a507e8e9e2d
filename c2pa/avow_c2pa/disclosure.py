"""The facts every synthesized output declares, in one record.

EXIF, XMP and the C2PA manifest are written from this single record so they can never disagree,
and the verifier compares what it reads back against the same field names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from . import __version__
from .declarations import IPTC, KINDS
from .errors import RecordError

SOFTWARE = "Avow"
# IPTC NewsCodes: an edit of an existing capture made with a trained model (as opposed to
# trainedAlgorithmicMedia, which would claim the whole image was generated from nothing).
COMPOSITE_WITH_AI = IPTC + "compositeWithTrainedAlgorithmicMedia"
AI_SOURCE_TYPES = frozenset(IPTC + code for code in (*KINDS["ai"], *KINDS["synthetic"]))


class _Declares:
    """What any declaration names: the software that makes it (Avow, this version)."""

    software_version: str

    @property
    def software(self) -> str:
        return f"{SOFTWARE} {self.software_version}"


@dataclass(frozen=True)
class Disclosure(_Declares):
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

    def sentence(self) -> str:
        return (
            f"AI-upscaled: pixels synthesized by the model {self.model_name} at x{self.scale} "
            f"with {self.software}; not original footage."
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: object) -> Disclosure:
        """A record an editor kept (a GIMP parasite, a Krita annotation), checked field by field:
        it arrives from a file anyone can edit, and what it says ends up signed."""
        if not isinstance(record, dict):
            raise RecordError(f"a record must be a JSON object, not {type(record).__name__}")
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(map(str, set(record) - known)), sorted(known - set(record) - _OPTIONAL)
        if unknown or missing:
            wrong = [f"{what} {', '.join(names)[:200]}" for what, names in (("unknown", unknown), ("missing", missing)) if names]
            raise RecordError(f"not an Avow record ({'; '.join(wrong)})")
        for name, value in record.items():
            if not _RECORD_CHECKS[name](value):
                raise RecordError(f"{name} is not valid: {str(value)[:80]!r}")
        return cls(**record)


_HEX64, _HEX8 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{8}")
_OPTIONAL = {"watermark_id", "software_version", "digital_source_type"}


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200


def _count(value: object, top: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= top


_RECORD_CHECKS = {
    "model_name": _text,
    "model_arch": _text,
    "model_sha256": lambda v: isinstance(v, str) and _HEX64.fullmatch(v) is not None,
    "input_sha256": lambda v: isinstance(v, str) and _HEX64.fullmatch(v) is not None,
    "scale": lambda v: _count(v, 16),
    "input_width": lambda v: _count(v, 1 << 20),
    "input_height": lambda v: _count(v, 1 << 20),
    "watermark_id": lambda v: v is None or (isinstance(v, str) and _HEX8.fullmatch(v) is not None),
    "software_version": _text,
    "digital_source_type": lambda v: v in AI_SOURCE_TYPES,
}


@dataclass(frozen=True)
class FoundMark(_Declares):
    """Pixels that carry Avow's mark, with no record to say which upscale made them: declared as
    AI-synthesized all the same (the pixels decide); records would only add model and scale."""

    watermark_id: str | None  # the payload read from the pixels (None: found, too damaged to read)
    software_version: str = __version__
    digital_source_type: str = COMPOSITE_WITH_AI

    def sentence(self) -> str:
        named = f" (identifier {self.watermark_id})" if self.watermark_id else ""
        return (
            f"Contains AI-synthesized pixels: {SOFTWARE}'s synthesis mark{named} was found in them when "
            "this file was signed; not original footage."
        )


# What an output's EXIF/XMP and manifest are written from.
Declared = Disclosure | FoundMark


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
