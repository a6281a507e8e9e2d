"""The C2PA manifest: built from the disclosure, signed last, onto a file that already carries EXIF/XMP.

The actions assertion is a *created* assertion (the signer vouches for it, rather than merely
gathering it): ``c2pa.opened`` on the input as parent ingredient (its own manifest, if any, kept
as history), ``c2pa.edited`` with the AI digital source type, ``c2pa.resized``, then
``c2pa.watermarked.unbound`` (C2PA 2.2). The pixel mark's identifier is carried in Avow's own
``dev.avow.watermark`` assertion, not in ``c2pa.soft-binding``: the spec (§9.3.2) admits only
algorithms of the C2PA soft-binding list there, and Avow's mark is not on it (hence "unbound";
``c2pa.watermarked`` and ``.bound`` require a soft binding). Custom action parameters are
namespaced under ``dev.avow.`` (§18.14.4.7), as the XMP fields are under https://avow.dev/ns/1.0/.
Parameters are strings: the SDK corrupts numeric arrays in action parameters.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import c2pa

from . import __version__
from .disclosure import COMPOSITE_WITH_AI, SOFTWARE, Declared, Disclosure, FoundMark
from .errors import SigningError, discard, file_system_error
from .formats import MIME_TYPES, SUFFIXES, sniff_format
from .interrupts import signals_held
from .metadata import write_disclosure
from .staging import staged_path
from .watermark import WATERMARK_ALG, WATERMARK_ALG_NAME

if TYPE_CHECKING:  # an identity is the signer's: a verifier, which imports this module's labels, needs no cryptography
    from .keys import Identity

HUMAN_EDITS = "http://cv.iptc.org/newscodes/digitalsourcetype/humanEdits"
# Avow's labels: reverse DNS of avow.dev, the domain of its XMP namespace.
WATERMARK_LABEL = "dev.avow.watermark"
WATERMARKED = "c2pa.watermarked.unbound"
PARAMETER_PREFIX = "dev.avow."

THUMBNAIL_EDGE = 512
# No network at sign time: nothing may be fetched, and the claim gets a JPEG thumbnail whatever
# the output format, so every Content Credentials viewer can show it.
SIGNING_SETTINGS = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "builder": {"thumbnail": {"enabled": True, "format": "jpeg", "long_edge": THUMBNAIL_EDGE}},
}
GIVEN_THUMBNAIL_SETTINGS = {**SIGNING_SETTINGS, "builder": {"thumbnail": {"enabled": False}}}
THUMBNAIL = {"format": "image/jpeg", "identifier": "thumbnail.jpg"}


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
            *_watermark_assertion([disclosure]),
        ],
    }


def _namespaced(parameters: dict) -> dict:
    return {PARAMETER_PREFIX + name: value for name, value in parameters.items()}


def _watermark_assertion(declared: list[Declared]) -> list[dict]:
    """The identifiers of Avow's pixel mark in this file: a reader that finds the mark in a
    stripped copy can tell which manifest described it."""
    ids = list(dict.fromkeys(d.watermark_id for d in declared if d.watermark_id))
    if not ids:
        return []
    data = {"alg": WATERMARK_ALG, "name": WATERMARK_ALG_NAME, "identifiers": ids}
    return [{"label": WATERMARK_LABEL, "created": True, "data": data}]


def _watermarked(declared: Declared, agent: dict) -> list[dict]:
    if not declared.watermark_id:
        return []
    parameters = _namespaced({"alg": WATERMARK_ALG, "identifier": declared.watermark_id})
    return [{"action": WATERMARKED, "softwareAgent": agent, "parameters": parameters}]


def _upscale_actions(disclosure: Disclosure) -> list[dict]:
    agent = {"name": SOFTWARE, "version": disclosure.software_version}
    scale = str(disclosure.scale)
    return [
        {
            "action": "c2pa.edited",
            "description": disclosure.sentence(),
            "digitalSourceType": disclosure.digital_source_type,
            "softwareAgent": agent,
            "parameters": _namespaced({
                "model": disclosure.model_name,
                "modelArch": disclosure.model_arch,
                "modelSha256": disclosure.model_sha256,
                "scale": scale,
            }),
        },
        {
            "action": "c2pa.resized",
            "softwareAgent": agent,
            "parameters": _namespaced({
                "scale": scale,
                "from": f"{disclosure.input_width}x{disclosure.input_height}",
                "to": f"{disclosure.input_width * disclosure.scale}x{disclosure.input_height * disclosure.scale}",
            }),
        },
        *_watermarked(disclosure, agent),
    ]


def _found_mark_actions(found: FoundMark) -> list[dict]:
    """Pixels with Avow's mark and no record of their upscale: the edit is declared as AI all the
    same, with what the pixels themselves say (the identifier)."""
    agent = {"name": SOFTWARE, "version": found.software_version}
    edited = {
        "action": "c2pa.edited",
        "description": found.sentence(),
        "digitalSourceType": found.digital_source_type,
        "softwareAgent": agent,
    }
    if found.watermark_id:
        edited["parameters"] = _namespaced({"identifier": found.watermark_id})
    return [edited, *_watermarked(found, agent)]


def sign_file(
    source: Path, dest: Path, manifest: dict, identity: Identity, parent: Path | None, mime: str | None = None,
    thumbnail: bytes | None = None,
) -> None:
    """Write ``source`` with ``manifest`` embedded and signed to ``dest`` (which must not be ``source``).

    ``mime`` defaults to what ``dest``'s extension names. ``thumbnail``: the claim's JPEG thumbnail
    when the caller has the pixels in memory (the SDK would decode the whole file again to make
    it: three quarters of its time on a 4 MP PNG); None: the SDK makes it. Stop signals are held while the SDK runs
    and delivered once it returns (see ``interrupts``): a stop asked for meanwhile raises then.
    """
    mime = mime or mime_type(dest)
    info = c2pa.C2paSignerInfo(
        alg=identity.alg.encode(), sign_cert=identity.chain_pem, private_key=identity.key_pem, ta_url=None
    )
    try:
        with (
            signals_held(),
            c2pa.Signer.from_info(info) as signer,
            c2pa.Context.from_dict(SIGNING_SETTINGS if thumbnail is None else GIVEN_THUMBNAIL_SETTINGS) as context,
            c2pa.Builder(manifest if thumbnail is None else {**manifest, "thumbnail": THUMBNAIL}, context=context) as builder,
        ):
            if thumbnail is not None:
                builder.add_resource(THUMBNAIL["identifier"], io.BytesIO(thumbnail))
            if parent is not None:
                with open(parent, "rb") as parent_stream:
                    builder.add_ingredient(
                        {"title": parent.name, "relationship": "parentOf", "label": "parent"},
                        MIME_TYPES[sniff_format(parent)],
                        parent_stream,
                    )
            # The SDK calls back for every 8 KiB; with 1 MiB buffers those calls are copies, not syscalls.
            with open(source, "rb", buffering=1 << 20) as src, open(dest, "wb", buffering=1 << 20) as dst:
                builder.sign(signer, mime, src, dst)
    except c2pa.C2paError as exc:
        if _out_of_space(dest):  # the SDK reports a full disk as an opaque I/O error
            raise file_system_error(OSError(errno.ENOSPC, "no space"), dest.parent) from None
        raise SigningError(f"{dest.name}: C2PA signing failed: {exc}") from exc
    except OSError as exc:  # the signed stream's buffer written out after the SDK returned
        raise file_system_error(exc, exc.filename or dest.parent) from exc


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
    disclosure: Declared | None,
    carried: tuple[dict, dict] = ({}, {}),
    thumbnail: bytes | None = None,
) -> None:
    """Disclose in EXIF/XMP, sign last, and only then move onto ``target``; fail closed.

    ``staged`` (a ``staging`` file beside ``target``, in ``target``'s format) is consumed either
    way: on any failure or stop signal neither it nor a half-signed file is left, and ``target``
    is untouched.
    """
    signed = staged_path(target, "signed")
    try:
        if disclosure is not None:
            write_disclosure(staged, disclosure, carried)
        sign_file(staged, signed, manifest, identity, parent, mime_type(target), thumbnail)
        os.replace(signed, target)
    finally:
        discard(staged, signed)


def editor_export_manifest(records: list[Disclosure], title: str, editor: str, found: FoundMark | None = None) -> dict:
    """An editor's export: no parent file exists, so the first action is ``c2pa.created``.

    With Avow records, or with Avow's mark ``found`` in the exported pixels, it is created as a
    composite with AI and lists each upscale (a mark no record names is listed as an AI edit of
    its own); with neither, it claims only human edits. ``allActionsIncluded`` is never set: the
    editor did other things.
    """
    name, _, version = editor.partition(" ")
    agent = {"name": name, "version": version} if version else {"name": name}
    source_type = records[0].digital_source_type if records else COMPOSITE_WITH_AI if found else HUMAN_EDITS
    actions = [{"action": "c2pa.created", "digitalSourceType": source_type, "softwareAgent": agent}]
    for record in records:
        actions.extend(_upscale_actions(record))
    declared: list[Declared] = list(records)
    named = {r.watermark_id for r in records}
    if found is not None and (found.watermark_id not in named if found.watermark_id else not records):
        actions.extend(_found_mark_actions(found))
        declared.append(found)
    return {
        "claim_generator_info": [{"name": SOFTWARE, "version": __version__}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions.v2", "created": True, "data": {"actions": actions}},
            *_watermark_assertion(declared),
        ],
    }
