"""A verify report, its ``--json`` schema and how it prints safely, and the trust anchors it is judged against.

Kept apart from ``verify``, which imports the C2PA SDK, exiv2 and numpy: ``avow verify``'s parent
process only hands files to its parser processes and prints their reports, so it imports this,
and the parsers start a third of a second sooner.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import settings
from .errors import SettingsError, TrustAnchorError, describe_os_error
from .verdicts import EXIT_CODES

SCHEMA_VERSION = 2


@dataclass
class Report:
    """One file's findings; ``to_dict`` is the documented ``--json`` schema (see README)."""

    file: str
    verdict: str
    summary: str
    format: str | None = None
    manifest_present: bool = False
    validation_state: str | None = None  # Trusted | Valid | Invalid, as c2pa reports it
    signer_trusted: bool = False
    status_codes: list[str] = field(default_factory=list)  # failures of the active manifest
    explanations: dict[str, str] = field(default_factory=dict)  # plain words for known status codes
    signer: dict | None = None  # common_name, issuer, alg
    claim_generator: str | None = None
    ai_declared: bool = False
    ai_actions: list[dict] = field(default_factory=list)  # the active manifest's AI declarations
    declarations: list[dict] = field(default_factory=list)  # every source type declared, active and ingredients
    signing_time: str | None = None  # from a time-stamp authority's token; None: not time-stamped
    timestamp_codes: list[str] = field(default_factory=list)  # timeStamp.* status codes
    revocation_codes: list[str] = field(default_factory=list)  # signingCredential.ocsp.* (OCSP with --ocsp)
    identities: list[dict] = field(default_factory=list)  # CAWG identity assertions: label, names, status codes
    remote_url: str | None = None  # where the credentials are, when they are not in the file
    diagnostics: str | None = None  # the end of a crashed parser's stderr
    model: dict | None = None  # name, sha256, scale (Avow's edit parameters)
    ingredients: list[dict] = field(default_factory=list)  # every generation: title, path, signer, source types, failures
    xcf: dict | None = None  # GIMP files: layers, Avow records, synthesized layer names (unsigned parasites)
    xmp: dict = field(default_factory=dict)
    exif: dict = field(default_factory=dict)
    metadata_agrees: bool | None = None  # XMP disclosure matches the manifest; None if nothing to compare
    soft_bindings: list[str] = field(default_factory=list)  # Avow watermark identifiers the manifest declares
    # checked (False: with reason, the pixels were not searched), found, score, false_positive_probability,
    # identifier, key, matches_manifest, layer, lenient_decode
    watermark: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA_VERSION, **asdict(self)}


def trust_anchors(extra: Sequence[Path] = ()) -> str:
    """PEM bundle of trusted roots: the user's own, ``config.toml``'s ``[verify] trust``, then ``extra``.

    Each file must hold at least one PEM certificate: a wrong file given as a trust list would
    otherwise be ignored in silence, and files the user meant to trust would read as unknown."""
    from .keys import local_identity  # cryptography: not for a parent that only hands files out

    pems: list[bytes] = []
    own = local_identity(create=False)
    if own is not None and own.root_pem:
        pems.append(own.root_pem)
    for path in settings().trust:
        pems.append(_anchor_file(path, SettingsError, "[verify] trust"))
    for path in extra:
        pems.append(_anchor_file(Path(path), TrustAnchorError, "--trust"))
    return b"\n".join(pems).decode("ascii", "replace")


def _anchor_file(path: Path, error: type[Exception], origin: str) -> bytes:
    from cryptography import x509

    try:
        if path.exists() and not path.is_file():  # a FIFO would block the read forever
            raise error(f"{origin}: {path}: not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{origin}: {describe_os_error(exc, path)}") from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise error(f"{origin}: {path}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    return data


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object, limit: int = 300) -> str:
    """A manifest string made safe for a terminal: no control or bidi characters, bounded length."""
    cleaned = _UNSAFE.sub("\N{REPLACEMENT CHARACTER}", _undecodable_escaped(str(text)))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def printable_path(path: object, limit: int = 300) -> str:
    """A file name made safe like ``printable``; a long one loses its middle, never the name at its end."""
    cleaned = printable(path, limit=1 << 20)
    return cleaned if len(cleaned) <= limit else cleaned[: limit // 3] + "…" + cleaned[-(limit - limit // 3 - 1) :]


def _undecodable_escaped(text: str) -> str:
    """A file name's undecodable bytes (surrogate escapes) as ``\\xNN``, so any terminal can print it."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
