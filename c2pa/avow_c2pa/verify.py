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
from functools import lru_cache
from pathlib import Path
from typing import Any

import c2pa

from .declarations import Declaration, effective_actions, history, manifest_declarations
from .declarations import as_dict as _dict
from .declarations import as_list as _list
from .errors import DisclosureError, SettingsError, UnreadableFileError
from .formats import sniff_format
from .manifest import PARAMETER_PREFIX, WATERMARK_LABEL
from .metadata import read_metadata
from .pixels import find_mark, search_file, unchecked
from .report import Report, printable, printable_path, trust_anchors
from .verdicts import (
    AI_IN_HISTORY,
    AI_SYNTHESIZED,
    AI_WATERMARKED,
    CONTRADICTION,
    EXIT_CODES,
    NO_PROVENANCE,
    OVER_BUDGET,
    REMOTE,
    SIGNED,
    TAMPERED,
    UNREADABLE,
    UNVERIFIABLE,
    explain,
    judge,
    signer_phrase,
    unverifiable_error,
)
from .watermark import PAYLOAD_BITS, WATERMARK_ALG

__all__ = [  # the verdicts are re-exported: callers and tests name them from here
    "AI_IN_HISTORY", "AI_SYNTHESIZED", "AI_WATERMARKED", "CONTRADICTION", "EXIT_CODES", "NO_PROVENANCE",
    "OVER_BUDGET", "REMOTE", "SIGNED", "TAMPERED", "UNREADABLE", "UNVERIFIABLE", "Report", "printable", "printable_path",
    "reader_settings", "trust_anchors", "verify_file",
]

XCF_WATERMARK_PIXELS = 24_000_000  # layers decoded per XCF (pure Python, ~0.5 s per MP)

EXIF_FIELDS = {"make": "Exif.Image.Make", "model": "Exif.Image.Model", "software": "Exif.Image.Software"}
XMP_FIELDS = {
    "digital_source_type": "Xmp.iptcExt.DigitalSourceType",
    "ai_system": "Xmp.iptcExt.AISystemUsed",
    "creator_tool": "Xmp.xmp.CreatorTool",
    "avow_model": "Xmp.avow.model",
    "avow_model_sha256": "Xmp.avow.modelSha256",
    "avow_scale": "Xmp.avow.scale",
}


def reader_settings(anchors: str, allow_remote: bool = False, ocsp: bool = False) -> dict:
    settings: dict[str, Any] = {"verify": {"verify_trust": True, "remote_manifest_fetch": allow_remote, "ocsp_fetch": ocsp}}
    if anchors.strip():
        settings["trust"] = {"trust_anchors": anchors}
    return settings


def verify_file(path: Path, anchors: str, allow_remote: bool = False, ocsp: bool = False) -> Report:
    try:
        fmt = sniff_format(path)
    except UnreadableFileError as exc:
        return Report(str(path), UNREADABLE, str(exc).removeprefix(f"{path}: "))
    report = Report(str(path), NO_PROVENANCE, "", format=fmt)
    if fmt == "xcf":
        return _judge_xcf(path, report)
    _read_manifest(path, reader_settings(anchors, allow_remote, ocsp), report)
    _read_metadata(path, report)
    _read_watermark(path, report)
    judge(report)
    _weigh_watermark(report)
    return report


def _judge_xcf(path: Path, report: Report) -> Report:
    from .xcf import read_xcf

    try:
        report.xcf = read_xcf(path)
    except Exception as exc:  # noqa: BLE001 - gimpformats raises anything on a damaged file
        report.verdict = UNREADABLE
        report.summary = f"Unreadable XCF: {type(exc).__name__}: {exc}"
        return report
    report.notes.extend(report.xcf["problems"])
    _read_xcf_watermark(path, report, report.xcf["synthesized_layers"])
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


@lru_cache(maxsize=4)
def _context(settings: str) -> c2pa.Context:
    """One SDK context per set of reader settings (JSON), shared by every file a process reads, as
    the SDK allows: building it from the settings cost a fifth of a signed output's read."""
    return c2pa.Context.from_dict(json.loads(settings))


def _read_manifest(path: Path, settings: dict, report: Report) -> None:
    try:
        reader = c2pa.Reader.try_create(str(path), context=_context(json.dumps(settings, sort_keys=True)))
        if reader is None:
            return
        with reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except (c2pa.C2paError, ValueError, OSError) as exc:
        _unreadable_store(path, str(exc), settings["verify"]["remote_manifest_fetch"], report)
        return
    report.manifest_present = True
    report.validation_state = state
    active_results = _dict(results.get("activeManifest"))
    # Trust is the signing certificate's: a failing CAWG identity assertion lowers the state, not the signer.
    report.signer_trusted = state == "Trusted" or "signingCredential.trusted" in _codes(active_results, "success")
    report.status_codes = _codes(active_results, "failure")
    every_code = [code for kind in ("success", "informational", "failure") for code in _codes(active_results, kind)]
    report.timestamp_codes = [code for code in every_code if code.startswith("timeStamp.")]
    report.revocation_codes = [code for code in every_code if code.startswith("signingCredential.ocsp.")]
    report.explanations = explain([*report.status_codes, *report.timestamp_codes, *report.revocation_codes])
    manifests = _dict(store.get("manifests"))
    active = _dict(manifests.get(str(store.get("active_manifest"))))
    ingredient_declarations, report.ingredients = history(store, results)
    signature = _dict(active.get("signature_info"))
    report.signer = {k: signature.get(k) for k in ("common_name", "issuer", "alg")} if signature else None
    report.signing_time = None if signature.get("time") is None else str(signature["time"])
    generators = _list(active.get("claim_generator_info"))
    if generators:
        generator = _dict(generators[0])
        report.claim_generator = " ".join(str(generator.get(k, "")) for k in ("name", "version")).strip()
    active_declarations = manifest_declarations(active)
    for declaration in active_declarations:
        _note_action(declaration, active, report)
    report.declarations = [d.to_dict() for d in (*active_declarations, *ingredient_declarations)]
    report.identities = _identities(active, every_code)
    report.soft_bindings = _soft_bindings(active)


def _codes(results: dict, kind: str) -> list[str]:
    return [str(_dict(item).get("code", "?")) for item in _list(results.get(kind))]


def _unreadable_store(path: Path, message: str, fetched: bool, report: Report) -> None:
    """The SDK refused the store: stored elsewhere, too new or too old for it, or damaged."""
    url = re.search(r"https?://\S+", message)
    if "remote" in message.lower() and url:
        report.verdict = REMOTE
        report.remote_url = url.group(0).rstrip(".,;)'\"")
        how = "could not be fetched" if fetched else "were not fetched (add --allow-remote to fetch them)"
        report.summary = (
            f"Content Credentials are stored online at {report.remote_url} and {how}: cannot tell from this "
            "file alone."
        )
        return
    report.notes.append(f"C2PA data present but unreadable: {message}")
    report.manifest_present = _has_c2pa_marker(path)
    report.validation_state = "Invalid" if report.manifest_present else None
    if report.manifest_present and unverifiable_error(message):
        report.verdict = UNVERIFIABLE
        report.summary = (
            "Content Credentials present but not verifiable by this version of Avow (made with a claim version "
            f"or feature it does not support: {message}): cannot tell; this is not evidence of tampering."
        )


def _identities(manifest: dict, codes: list[str]) -> list[dict]:
    """CAWG identity assertions (who vouches for the content, beside the claim signer), as far as the SDK
    decodes them; their cawg.* status codes say whether the identity checked out."""
    found = []
    for assertion in map(_dict, _list(manifest.get("assertions"))):
        label = str(assertion.get("label", ""))
        if not label.startswith("cawg.identity"):
            continue
        data = _dict(assertion.get("data"))
        names = [
            str(_dict(item).get("name") or _dict(item).get("username") or _dict(item).get("uri"))
            for item in _list(data.get("verifiedIdentities"))
        ]
        actor = _dict(data.get("named_actor")) or _dict(_dict(data.get("credentialSubject")))
        if actor.get("name"):
            names.append(str(actor["name"]))
        found.append({"label": label, "names": names, "sig_type": data.get("sig_type")})
    if found:
        found[0]["codes"] = [code for code in codes if code.startswith("cawg.")]
    return found


def _soft_bindings(manifest: dict) -> list[str]:
    """Identifiers of Avow's mark the manifest declares, as 8 hex digits: in Avow's
    ``dev.avow.watermark`` assertion, or in the ``c2pa.soft-binding`` of outputs made before it."""
    found: list[str] = []
    for assertion in map(_dict, _list(manifest.get("assertions"))):
        data = _dict(assertion.get("data"))
        label = str(assertion.get("label", ""))
        if label == WATERMARK_LABEL or label.startswith(WATERMARK_LABEL + "__"):
            found.extend(i for i in map(str, _list(data.get("identifiers"))) if re.fullmatch(r"[0-9a-f]{8}", i))
            continue
        if not label.startswith("c2pa.soft-binding") or data.get("alg") != WATERMARK_ALG:
            continue
        for block in map(_dict, _list(data.get("blocks"))):
            try:
                value = base64.b64decode(str(block.get("value")), validate=True)
            except ValueError:
                continue
            if len(value) == PAYLOAD_BITS // 8:
                found.append(value.hex())
    return found


def _note_action(declaration: Declaration, manifest: dict, report: Report) -> None:
    if declaration.kind != "ai":
        return
    report.ai_declared = True
    report.ai_actions.append({
        "action": declaration.action, "digital_source_type": declaration.source_type,
        "software_agent": declaration.software_agent, "via": declaration.via,
    })
    if declaration.software_agent == "Avow" and report.model is None:
        for action in _avow_actions(manifest, declaration.action):
            params = _dict(action.get("parameters"))
            names = (("model", "model"), ("sha256", "modelSha256"), ("scale", "scale"))
            report.model = {k: _parameter(params, name) for k, name in names}
            break


def _avow_actions(manifest: dict, name: str) -> list[dict]:
    return [
        a for a, _ in effective_actions(manifest)
        if a.get("action") == name and _parameter(_dict(a.get("parameters")), "model") is not None
    ]


def _parameter(params: dict, name: str) -> object:
    """Avow's namespaced action parameter, or its bare name in outputs made before namespacing."""
    old = {"modelSha256": "sha256"}.get(name, name)
    return params.get(PARAMETER_PREFIX + name, params.get(old))


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
        mark = search_file(path, _claimed_scale(report))
    except SettingsError as exc:  # a malformed [watermark] setting: say so, the verdict stands
        mark = unchecked(str(exc))
    report.watermark = mark
    if mark["checked"] and mark["lenient_decode"]:
        report.notes.append("the file is damaged or non-standard: its pixels were searched as a lenient viewer decodes them")


def _claimed_scale(report: Report) -> int | None:
    """The upscale factor the manifest (or, unsigned, the XMP) claims: where the search looks
    first. A hint, never a verdict: a wrong or forged one costs a few milliseconds, not a finding."""
    for claimed in ((report.model or {}).get("scale"), report.xmp.get("avow_scale")):
        try:
            return int(str(claimed))
        except ValueError:
            continue
    return None


def _read_xcf_watermark(path: Path, report: Report, synthesized: list[str]) -> None:
    """Look for Avow's mark in each layer (the ones Avow's parasites name first): a layer's pixels
    keep it when the parasites are gone, and a composite would bury it under the layers above."""
    from .xcf import layer_pixels

    try:
        for name, pixels in layer_pixels(path, synthesized, XCF_WATERMARK_PIXELS):
            mark = {**find_mark(pixels, None), "layer": name}
            if report.watermark is None or mark["score"] > report.watermark["score"] or mark["found"]:
                report.watermark = mark
            if mark["found"]:
                return
    except Exception as exc:  # noqa: BLE001 - gimpformats raises anything on a damaged or unusual layer
        report.notes.append(f"watermark not checked in every layer: {type(exc).__name__}: {exc}")
        if report.watermark is None:
            report.watermark = unchecked(f"{type(exc).__name__}: {exc}")


def _weigh_watermark(report: Report) -> None:
    mark = report.watermark
    if mark and not mark["checked"]:
        report.summary += f" Avow's pixel mark was not looked for: {mark['reason']}."
        return
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
            f"declares no AI synthesis. {signer_phrase(report)}"
        )
    elif report.verdict in (TAMPERED, REMOTE, UNVERIFIABLE):
        report.summary += " The pixels carry Avow's synthesis mark."
    if report.soft_bindings and mark["identifier"] is not None:
        mark["matches_manifest"] = mark["identifier"] in report.soft_bindings
        if not mark["matches_manifest"]:
            report.summary += (
                f" The watermark's identifier {mark['identifier']} does not match the one the manifest declares "
                f"({', '.join(report.soft_bindings)}): the pixels come from another Avow output than the one "
                "this manifest describes."
            )
