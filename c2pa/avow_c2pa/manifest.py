"""The C2PA manifest: built from the disclosure, signed last, onto a file that already carries EXIF/XMP.

The actions assertion is a *created* assertion (the signer vouches for it, rather than merely
gathering it): ``c2pa.opened`` on the input as parent ingredient (its own manifest, if any, kept
as history), ``c2pa.edited`` with the AI digital source type, ``c2pa.resized``, then
``c2pa.watermarked`` with a ``c2pa.soft-binding`` assertion naming the pixel mark's payload.
Parameters are strings: the SDK corrupts numeric arrays in action parameters.
"""

from __future__ import annotations

import base64
import errno
import os
from pathlib import Path

import c2pa

from . import __version__
from .disclosure import SOFTWARE, Disclosure
from .errors import SigningError, discard, file_system_error
from .formats import MIME_TYPES, SUFFIXES, sniff_format
from .keys import Identity
from .metadata import write_disclosure
from .watermark import WATERMARK_ALG, WATERMARK_ALG_NAME

HUMAN_EDITS = "http://cv.iptc.org/newscodes/digitalsourcetype/humanEdits"

# No network at sign time: nothing may be fetched, and the claim gets a JPEG thumbnail whatever
# the output format, so every Content Credentials viewer can show it.
SIGNING_SETTINGS = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "builder": {"thumbnail": {"enabled": True, "format": "jpeg", "long_edge": 512}},
}


def mime_type(path: Path) -> str:
    """The MIME type an output's extension names (what it will be read as)."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise SigningError(f"{path.name}: C2PA signing supports {', '.join(SUFFIXES)} files")
    return MIME_TYPES[fmt]


def upscale_manifest(disclosure: Disclosure, title: str) -> dict:
    opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}
    return {
        "claim_generator_info": [{"name": SOFTWARE, "version": disclosure.software_version}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "created": True,
                "data": {"actions": [opened, *_upscale_actions(disclosure)]},
            },
            *_soft_binding([disclosure]),
        ],
    }


def _soft_binding(records: list[Disclosure]) -> list[dict]:
    """The pixel watermark declared as a soft binding: a reader that finds the mark in a stripped
    copy can look this manifest up again by its identifier. The value is the payload's 4 bytes."""
    ids = list(dict.fromkeys(r.watermark_id for r in records if r.watermark_id))
    if not ids:
        return []
    blocks = [{"scope": {}, "value": base64.b64encode(bytes.fromhex(i)).decode("ascii")} for i in ids]
    data = {"alg": WATERMARK_ALG, "name": WATERMARK_ALG_NAME, "blocks": blocks}
    return [{"label": "c2pa.soft-binding", "created": True, "data": data}]


def _upscale_actions(disclosure: Disclosure) -> list[dict]:
    agent = {"name": SOFTWARE, "version": disclosure.software_version}
    scale = str(disclosure.scale)
    return [
        {
            "action": "c2pa.edited",
            "description": disclosure.sentence(),
            "digitalSourceType": disclosure.digital_source_type,
            "softwareAgent": agent,
            "parameters": {
                "model": disclosure.model_name,
                "modelArch": disclosure.model_arch,
                "sha256": disclosure.model_sha256,
                "scale": scale,
            },
        },
        {
            "action": "c2pa.resized",
            "softwareAgent": agent,
            "parameters": {
                "scale": scale,
                "from": f"{disclosure.input_width}x{disclosure.input_height}",
                "to": f"{disclosure.input_width * disclosure.scale}x{disclosure.input_height * disclosure.scale}",
            },
        },
    ] + (
        [
            {
                "action": "c2pa.watermarked",
                "softwareAgent": agent,
                "parameters": {"alg": WATERMARK_ALG, "identifier": disclosure.watermark_id},
            }
        ]
        if disclosure.watermark_id
        else []
    )


def sign_file(source: Path, dest: Path, manifest: dict, identity: Identity, parent: Path | None) -> None:
    """Write ``source`` with ``manifest`` embedded and signed to ``dest`` (which must not be ``source``)."""
    mime = mime_type(dest)
    info = c2pa.C2paSignerInfo(
        alg=identity.alg.encode(), sign_cert=identity.chain_pem, private_key=identity.key_pem, ta_url=None
    )
    try:
        with (
            c2pa.Signer.from_info(info) as signer,
            c2pa.Context.from_dict(SIGNING_SETTINGS) as context,
            c2pa.Builder(manifest, context=context) as builder,
        ):
            if parent is not None:
                with open(parent, "rb") as parent_stream:
                    builder.add_ingredient(
                        {"title": parent.name, "relationship": "parentOf", "label": "parent"},
                        MIME_TYPES[sniff_format(parent)],
                        parent_stream,
                    )
            with open(source, "rb") as src, open(dest, "wb") as dst:
                builder.sign(signer, mime, src, dst)
    except c2pa.C2paError as exc:
        if _out_of_space(dest):  # the SDK reports a full disk as an opaque I/O error
            raise file_system_error(OSError(errno.ENOSPC, "no space"), dest.parent) from None
        raise SigningError(f"{dest.name}: C2PA signing failed: {exc}") from exc


def _out_of_space(path: Path) -> bool:
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def seal(
    staged: Path,
    target: Path,
    manifest: dict,
    identity: Identity,
    parent: Path | None,
    disclosure: Disclosure | None,
    carried: tuple[dict, dict] = ({}, {}),
) -> None:
    """Disclose in EXIF/XMP, sign last, and only then move onto ``target``; fail closed.

    ``staged`` (a temp file beside ``target``, in ``target``'s format) is consumed either way:
    on any failure neither it nor a half-signed file is left, and ``target`` is untouched.
    """
    signed = staged.with_name(staged.name + ".signed" + target.suffix)
    try:
        if disclosure is not None:
            write_disclosure(staged, disclosure, carried)
        sign_file(staged, signed, manifest, identity, parent)
        os.replace(signed, target)
    finally:
        discard(staged, signed)


def editor_export_manifest(records: list[Disclosure], title: str, editor: str) -> dict:
    """An editor's export: no parent file exists, so the first action is ``c2pa.created``.

    With Avow records it is created as a composite with AI and lists each upscale; without, it
    claims only human edits. ``allActionsIncluded`` is never set: the editor did other things.
    """
    name, _, version = editor.partition(" ")
    agent = {"name": name, "version": version} if version else {"name": name}
    source_type = records[0].digital_source_type if records else HUMAN_EDITS
    actions = [{"action": "c2pa.created", "digitalSourceType": source_type, "softwareAgent": agent}]
    for record in records:
        actions.extend(_upscale_actions(record))
    return {
        "claim_generator_info": [{"name": SOFTWARE, "version": __version__}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions.v2", "created": True, "data": {"actions": actions}},
            *_soft_binding(records),
        ],
    }
