"""What a received file says about itself, and what that is worth.

The verdict comes from the *active* C2PA manifest and its validation; EXIF/XMP is reported beside
it, never instead of it, because anyone can write XMP. Avow's pixel watermark is looked for in
every image: it speaks when the metadata is gone, and it contradicts a manifest that hides an
upscale. A signature that checks out against an unknown key is "valid, signer unknown", never
"authentic".
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

import c2pa

from .config import load_settings, user_watermark_keys
from .disclosure import AI_SOURCE_TYPES
from .errors import DisclosureError, ProvenanceError, UnreadableFileError
from .formats import sniff_format
from .keys import local_identity
from .metadata import read_metadata
from .watermark import DEFAULT_KEY, DETECT_MIN_SIDE, PAYLOAD_BITS, WATERMARK_ALG, detect

SCHEMA_VERSION = 1

# Verdicts, from the most to the least informative; each has a documented exit code.
AI_SYNTHESIZED = "ai-synthesized"
AI_WATERMARKED = "ai-watermarked"  # no manifest, but Avow's pixel mark is there
SIGNED = "signed"
CONTRADICTION = "contradiction"  # a valid manifest claims no AI, the pixels carry Avow's mark
TAMPERED = "tampered"
NO_PROVENANCE = "no-provenance"
UNREADABLE = "unreadable"
EXIT_CODES = {
    AI_SYNTHESIZED: 0, AI_WATERMARKED: 0, SIGNED: 0, CONTRADICTION: 1, TAMPERED: 1, NO_PROVENANCE: 2, UNREADABLE: 3,
}

# Watermark detection decodes the pixels: bounded, so a huge PNG cannot exhaust the verifier
# (JPEG is decoded at a reduced DCT scale, so any JPEG qualifies).
WATERMARK_MAX_PIXELS = 64_000_000
XCF_WATERMARK_PIXELS = 24_000_000  # layers decoded per XCF (pure Python, ~0.5 s per MP)

# Plain words for the codes people meet most; any other code is shown as c2pa reports it.
EXPLANATIONS = {
    "assertion.dataHash.mismatch": "the pixels or file bytes changed after signing",
    "assertion.boxesHash.mismatch": "the file's structure changed after signing",
    "assertion.bmffHash.mismatch": "the file's contents changed after signing",
    "assertion.hashedURI.mismatch": "a statement inside the manifest was altered after signing",
    "assertion.missing": "a statement the manifest vouches for is missing",
    "claimSignature.mismatch": "the manifest's signature does not match its contents",
    "claimSignature.missing": "the manifest is not signed",
    "signingCredential.untrusted": "the signature is valid but the signer is not in your trust list",
    "signingCredential.expired": "the signing certificate had expired when it signed",
    "signingCredential.invalid": "the signing certificate is not valid for signing content",
    "signingCredential.revoked": "the signing certificate was revoked",
    "ingredient.manifest.mismatch": "an ingredient's own provenance was altered",
    "manifest.inaccessible": "the manifest is stored elsewhere and was not fetched",
}

EXIF_FIELDS = {"make": "Exif.Image.Make", "model": "Exif.Image.Model", "software": "Exif.Image.Software"}
XMP_FIELDS = {
    "digital_source_type": "Xmp.iptcExt.DigitalSourceType",
    "ai_system": "Xmp.iptcExt.AISystemUsed",
    "creator_tool": "Xmp.xmp.CreatorTool",
    "avow_model": "Xmp.avow.model",
    "avow_model_sha256": "Xmp.avow.modelSha256",
    "avow_scale": "Xmp.avow.scale",
}


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
    ai_actions: list[dict] = field(default_factory=list)
    model: dict | None = None  # name, sha256, scale (Avow's edit parameters)
    ingredients: list[dict] = field(default_factory=list)  # title, relationship, had_manifest, signer, source types
    xcf: dict | None = None  # GIMP files: layers, Avow records, synthesized layer names (unsigned parasites)
    xmp: dict = field(default_factory=dict)
    exif: dict = field(default_factory=dict)
    metadata_agrees: bool | None = None  # XMP disclosure matches the manifest; None if nothing to compare
    soft_bindings: list[str] = field(default_factory=list)  # Avow watermark identifiers the manifest declares
    watermark: dict | None = None  # found, score, false_positive_probability, identifier, key, matches_manifest, layer
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA_VERSION, **asdict(self)}


def trust_anchors(extra: list[Path] = ()) -> str:
    """PEM bundle of trusted roots: the user's own, ``config.toml``'s ``[verify] trust``, then ``extra``."""
    pems: list[bytes] = []
    own = local_identity(create=False)
    if own is not None and own.root_pem:
        pems.append(own.root_pem)
    configured = load_settings().get("verify", {}).get("trust", [])
    for path in [*map(Path, configured), *extra]:
        try:
            pems.append(path.read_bytes())
        except OSError as exc:
            raise ProvenanceError(f"trust anchors {path}: {exc.strerror or exc}") from exc
    return b"\n".join(pems).decode("ascii", "replace")


def reader_settings(anchors: str, allow_remote: bool = False) -> dict:
    settings = {"verify": {"verify_trust": True, "remote_manifest_fetch": allow_remote, "ocsp_fetch": False}}
    if anchors.strip():
        settings["trust"] = {"trust_anchors": anchors}
    return settings


def verify_file(path: Path, anchors: str, allow_remote: bool = False) -> Report:
    try:
        fmt = sniff_format(path)
    except UnreadableFileError as exc:
        return Report(str(path), UNREADABLE, str(exc).removeprefix(f"{path}: "))
    report = Report(str(path), NO_PROVENANCE, "", format=fmt)
    if fmt == "xcf":
        return _judge_xcf(path, report)
    _read_manifest(path, anchors, allow_remote, report)
    _read_metadata(path, report)
    _read_watermark(path, report)
    _judge(report)
    _weigh_watermark(report)
    return report


def _judge_xcf(path: Path, report: Report) -> Report:
    from .xcf import read_xcf

    try:
        report.xcf = read_xcf(path)
    except Exception as exc:  # gimpformats raises anything on a damaged file
        report.verdict = UNREADABLE
        report.summary = f"Unreadable XCF: {type(exc).__name__}: {exc}"
        return report
    report.notes.extend(report.xcf["problems"])
    _read_xcf_watermark(path, report)
    layers = report.xcf["synthesized_layers"]
    parasites = ""
    if layers or report.xcf["records"]:
        named = ", ".join(layers) or "none of the current layers"
        parasites = f" Avow's GIMP parasites (unsigned) say these layers hold AI-upscaled pixels: {named}."
    mark = report.watermark
    if mark and mark["found"]:
        report.verdict = AI_WATERMARKED
        removed = "" if parasites else " (metadata removed)"
        report.summary = (
            f"AI-upscaled by Avow{removed}: layer {mark['layer']!r} carries Avow's synthesis mark (false-positive "
            f"probability {mark['false_positive_probability']:.0e}). XCF files carry no Content Credentials.{parasites}"
        )
    else:
        report.summary = f"No signed provenance: XCF files carry no Content Credentials.{parasites}"
    return report


def _read_manifest(path: Path, anchors: str, allow_remote: bool, report: Report) -> None:
    try:
        with c2pa.Context.from_dict(reader_settings(anchors, allow_remote)) as context:
            reader = c2pa.Reader.try_create(str(path), context=context)
            if reader is None:
                return
            with reader:
                store = json.loads(reader.json())
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
    except (c2pa.C2paError, ValueError, OSError) as exc:
        report.notes.append(f"C2PA data present but unreadable: {exc}")
        report.manifest_present = _has_c2pa_marker(path)
        report.validation_state = "Invalid" if report.manifest_present else None
        return
    report.manifest_present = True
    report.validation_state = state
    report.signer_trusted = state == "Trusted"
    failures = (results.get("activeManifest") or {}).get("failure") or []
    report.status_codes = [str(item.get("code", "?")) for item in failures]
    report.explanations = {code: EXPLANATIONS[code] for code in report.status_codes if code in EXPLANATIONS}
    manifests = _dict(store.get("manifests"))
    active = _dict(manifests.get(str(store.get("active_manifest"))))
    report.ingredients = [_ingredient(_dict(item), manifests) for item in _list(active.get("ingredients"))]
    signature = _dict(active.get("signature_info"))
    report.signer = {k: signature.get(k) for k in ("common_name", "issuer", "alg")} if signature else None
    generators = _list(active.get("claim_generator_info"))
    if generators:
        generator = _dict(generators[0])
        report.claim_generator = " ".join(str(generator.get(k, "")) for k in ("name", "version")).strip()
    for action in _actions(active):
        _note_action(action, report)
    report.soft_bindings = _soft_bindings(active)


def _soft_bindings(manifest: dict) -> list[str]:
    """Identifiers of Avow's mark declared by ``c2pa.soft-binding`` assertions, as 8 hex digits."""
    found = []
    for assertion in map(_dict, _list(manifest.get("assertions"))):
        data = _dict(assertion.get("data"))
        if not str(assertion.get("label", "")).startswith("c2pa.soft-binding") or data.get("alg") != WATERMARK_ALG:
            continue
        for block in map(_dict, _list(data.get("blocks"))):
            try:
                value = base64.b64decode(str(block.get("value")), validate=True)
            except ValueError:
                continue
            if len(value) == PAYLOAD_BITS // 8:
                found.append(value.hex())
    return found


def _actions(manifest: dict) -> list[dict]:
    return [
        action
        for assertion in map(_dict, _list(manifest.get("assertions")))
        if str(assertion.get("label", "")).startswith("c2pa.actions")
        for action in _list(_dict(assertion.get("data")).get("actions"))
        if isinstance(action, dict)
    ]


def _dict(value: object) -> dict:
    """Manifest JSON comes from the file's sender: anything may be where a mapping belongs."""
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _ingredient(ingredient: dict, manifests: dict) -> dict:
    """An ingredient's own history: shown (was the input camera-signed?), never used for the verdict."""
    own = _dict(manifests.get(str(ingredient.get("active_manifest"))))
    signature = _dict(own.get("signature_info"))
    return {
        "title": ingredient.get("title"),
        "relationship": ingredient.get("relationship"),
        "had_manifest": bool(own),
        "signer": signature.get("common_name"),
        "digital_source_types": sorted({str(a["digitalSourceType"]) for a in _actions(own) if a.get("digitalSourceType")}),
    }


def _note_action(action: dict, report: Report) -> None:
    source_type = action.get("digitalSourceType")
    if source_type not in AI_SOURCE_TYPES:
        return
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        agent = agent.get("name")
    agent_name = None if agent is None else str(agent)
    params = _dict(action.get("parameters"))
    report.ai_declared = True
    report.ai_actions.append(
        {"action": str(action.get("action")), "digital_source_type": source_type, "software_agent": agent_name}
    )
    if agent_name == "Avow" and report.model is None:
        report.model = {k: params.get(k) for k in ("model", "sha256", "scale")}


def _has_c2pa_marker(path: Path) -> bool:
    """Whether the bytes carry a JUMBF C2PA label, for stores c2pa cannot parse at all."""
    with open(path, "rb") as handle:
        return b"c2pa" in handle.read(64 << 20)


def _read_metadata(path: Path, report: Report) -> None:
    try:
        exif, xmp = read_metadata(path)
    except DisclosureError:
        return
    report.exif = {name: exif[key] for name, key in EXIF_FIELDS.items() if key in exif}
    report.xmp = {name: xmp[key] for name, key in XMP_FIELDS.items() if key in xmp}


def _read_watermark(path: Path, report: Report) -> None:
    """Look for Avow's mark: on every image, since a stripped copy has nothing else left to say what it is."""
    try:
        pixels, full_size = _pixels(path)
        report.watermark = _find_mark(pixels, full_size)
    except Exception as exc:  # Pillow's decoders raise a zoo on damaged data; the verdict must not depend on it
        report.notes.append(f"watermark not checked: {type(exc).__name__}: {exc}")


def _read_xcf_watermark(path: Path, report: Report) -> None:
    """Look for Avow's mark in each layer (the ones Avow's parasites name first): a layer's pixels
    keep it when the parasites are gone, and a composite would bury it under the layers above."""
    from .xcf import layer_pixels

    try:
        for name, pixels in layer_pixels(path, report.xcf["synthesized_layers"], XCF_WATERMARK_PIXELS):
            mark = {**_find_mark(pixels, None), "layer": name}
            if report.watermark is None or mark["score"] > report.watermark["score"] or mark["found"]:
                report.watermark = mark
            if mark["found"]:
                return
    except Exception as exc:  # gimpformats raises anything on a damaged or unusual layer
        report.notes.append(f"watermark not checked in every layer: {type(exc).__name__}: {exc}")


def _find_mark(pixels: np.ndarray, full_size: tuple[int, int] | None) -> dict:
    """The public key first, then the user's own: the first that finds its mark, else the public one's result."""
    public = None
    for name, key in (("public", DEFAULT_KEY), *(("user", key) for key in user_watermark_keys())):
        found = detect(pixels, key, full_size=full_size)
        mark = {
            "found": found.found,
            "score": round(found.score, 2),
            "false_positive_probability": found.false_positive_probability,
            "identifier": None if found.payload is None else f"{found.payload:08x}",
            "key": name,
            "matches_manifest": None,
            "layer": None,
        }
        if found.found:
            return mark
        public = public or mark
    return public


def _pixels(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels to search, and the picture's full size (a JPEG is decoded at reduced scale)."""
    with Image.open(path) as image:
        full_size = image.size
        if image.format == "JPEG":
            # Decode at 1/2..1/8 scale, no smaller than the detector can use: the mark lives well below.
            image.draft("RGB", tuple(-(-side * DETECT_MIN_SIDE // max(image.size)) for side in image.size))
        width, height = image.size
        if width * height > WATERMARK_MAX_PIXELS and image.format != "JPEG":
            raise ValueError(f"{width}x{height} is above the {WATERMARK_MAX_PIXELS // 1_000_000} MP checked")
        if image.mode.startswith(("I", "F")):  # 16-bit or float grey
            pixels = np.asarray(image, dtype=np.float32)
            return pixels / (65535.0 if pixels.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0), full_size
        return np.asarray(image.convert("RGB")), full_size


def _weigh_watermark(report: Report) -> None:
    mark = report.watermark
    if not mark or not mark["found"]:
        if report.soft_bindings and report.verdict == AI_SYNTHESIZED:
            report.notes.append("the manifest declares Avow's pixel watermark, but it was not found in these pixels")
        return
    certainty = f"false-positive probability {mark['false_positive_probability']:.0e}"
    if report.verdict == NO_PROVENANCE:
        report.verdict = AI_WATERMARKED
        report.summary = f"AI-upscaled by Avow (metadata removed): the pixels carry Avow's synthesis mark ({certainty})."
    elif report.verdict == SIGNED:
        report.verdict = CONTRADICTION
        report.summary = (
            f"Contradiction: the pixels carry Avow's synthesis mark ({certainty}), but the signed manifest "
            f"declares no AI synthesis. {_signer_phrase(report)}"
        )
    elif report.verdict == TAMPERED:
        report.summary += " The pixels carry Avow's synthesis mark."
    if report.soft_bindings and mark["identifier"] is not None:
        mark["matches_manifest"] = mark["identifier"] in report.soft_bindings
        if not mark["matches_manifest"]:
            report.summary += (
                f" The watermark's identifier {mark['identifier']} does not match the manifest's soft binding "
                f"({', '.join(report.soft_bindings)}): the pixels come from another Avow output than the one "
                "this manifest describes."
            )


def _judge(report: Report) -> None:
    xmp_ai = report.xmp.get("digital_source_type") in AI_SOURCE_TYPES
    if report.manifest_present and report.validation_state not in ("Valid", "Trusted"):
        report.verdict = TAMPERED
        codes = ", ".join(report.status_codes) or "manifest unreadable"
        if report.status_codes and all(code.startswith("signingCredential.") for code in report.status_codes):
            # The bytes are as signed, but the signature cannot be relied on (expired, revoked, ...).
            reasons = "; ".join(report.explanations.get(code, code) for code in report.status_codes)
            report.summary = f"Signature not valid ({reasons}): do not rely on what this file claims."
        else:
            report.summary = f"Tampered after signing ({codes}): do not rely on what this file claims."
        return
    if not report.manifest_present:
        report.verdict = NO_PROVENANCE
        report.summary = "No provenance: cannot tell."
        if xmp_ai:
            report.summary += " Unsigned XMP metadata says the pixels were AI-synthesized."
        if report.exif.get("make") or report.exif.get("model"):
            report.notes.append("camera make/model in EXIF are unsigned and prove nothing")
        return
    who = _signer_phrase(report)
    if report.ai_declared:
        report.verdict = AI_SYNTHESIZED
        report.summary = f"{_ai_phrase(report)}: not original footage. {who}"
        report.metadata_agrees = xmp_ai and (
            report.model is None or report.xmp.get("avow_model_sha256") in (None, report.model.get("sha256"))
        )
        if not report.metadata_agrees:
            report.notes.append("the EXIF/XMP disclosure is missing or disagrees with the signed manifest")
        if report.exif.get("make") or report.exif.get("model"):
            report.notes.append("camera make/model present on a file whose manifest declares AI synthesis")
    else:
        report.verdict = SIGNED
        report.summary = f"Signed provenance, no AI synthesis declared. {who}"
        if xmp_ai:
            report.metadata_agrees = False
            report.notes.append("XMP says AI-synthesized but the signed manifest does not")


def _ai_phrase(report: Report) -> str:
    if report.model:
        return f"AI-upscaled by Avow (model {report.model.get('model')}, x{report.model.get('scale')})"
    agents = sorted({a["software_agent"] for a in report.ai_actions if a["software_agent"]})
    return "AI-synthesized content declared" + (f" by {', '.join(agents)}" if agents else "")


def _signer_phrase(report: Report) -> str:
    name = (report.signer or {}).get("common_name") or "an unnamed signer"
    if report.signer_trusted:
        return f"Signed by {name} (trusted)."
    return f"Signature valid, signer unknown ({name})."


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object, limit: int = 300) -> str:
    """A manifest string made safe for a terminal: no control or bidi characters, bounded length."""
    cleaned = _UNSAFE.sub("\N{REPLACEMENT CHARACTER}", str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
