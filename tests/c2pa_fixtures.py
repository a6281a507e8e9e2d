"""Signed files in the shapes other tools write, made with the real c2pa-python (see test_verify_c2pa.py).

Each builder signs with the test run's identity, so the fixtures are made fresh per run rather
than kept as bytes that would pin one certificate. ``build(folder)`` returns name -> path.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import c2pa
import numpy as np
from PIL import Image

from avow_c2pa.keys import signing_identity

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
UNREACHABLE = "http://127.0.0.1:9/credentials.c2pa"  # the discard port: a fetch fails at once, offline
SETTINGS = {"verify": {"remote_manifest_fetch": False}, "builder": {"thumbnail": {"enabled": False}}}


def manifest(actions: list[dict], templates: list[dict] | None = None, extra: list[dict] = ()) -> dict:
    data: dict = {"actions": actions}
    if templates is not None:
        data["templates"] = templates
    return {
        "claim_generator_info": [{"name": "fixture-maker", "version": "1.0"}],
        "title": "fixture",
        "assertions": [{"label": "c2pa.actions.v2", "created": True, "data": data}, *extra],
    }


def created(source_type: str, agent: str | None = None) -> dict:
    action = {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}
    return action if agent is None else {**action, "softwareAgent": {"name": agent}}


def opened_parent(then: str) -> list[dict]:
    return [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}, {"action": then}]


def sign(source: Path, dest: Path, definition: dict, mime: str, parent: Path | None = None,
         remote_url: str | None = None) -> Path:
    """Like ``avow_c2pa.manifest.sign_file``, plus what Avow itself never writes: remote-only
    credentials, HEIC, no thumbnails (small fixtures)."""
    with c2pa.Context.from_dict(SETTINGS) as context, c2pa.Builder(definition, context=context) as builder:
        if parent is not None:
            with open(parent, "rb") as stream:
                builder.add_ingredient({"title": parent.name, "relationship": "parentOf", "label": "parent"},
                                       "image/png", stream)
        if remote_url is not None:
            builder.set_remote_url(remote_url)
            builder.set_no_embed()
        with _signer() as signer, open(source, "rb") as src, open(dest, "w+b") as dst:
            builder.sign(signer, mime, src, dst)
    return dest


def _signer() -> c2pa.Signer:
    identity = signing_identity()
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(
        alg=identity.alg.encode(), sign_cert=identity.chain_pem, private_key=identity.key_pem, ta_url=None))


def patch_png_manifest(source: Path, dest: Path, edit) -> Path:
    """Rewrite bytes inside a PNG's caBX (C2PA) chunk with ``edit(chunk_data, signature_cbor_offset)``, CRC fixed."""
    data = bytearray(source.read_bytes())
    tag = data.index(b"caBX")
    length = struct.unpack(">I", data[tag - 4 : tag])[0]
    start, end = tag + 4, tag + 4 + length
    chunk = bytearray(data[start:end])
    signature = chunk.index(b"c2pa.signature\x00")
    cose = chunk.index(b"cbor", signature) + 4  # the COSE_Sign1 structure: d2 84 <protected> ...
    edit(chunk, cose)
    data[start:end] = chunk
    data[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(data[tag:end])) & 0xFFFFFFFF)
    dest.write_bytes(bytes(data))
    return dest


def _break_signature(chunk: bytearray, cose: int) -> None:
    chunk[-10] ^= 0xFF  # inside the ES256 signature, the last item of the COSE structure


def _unsupported_algorithm(chunk: bytearray, cose: int) -> None:
    header = chunk.index(b"\x01\x26", cose)  # protected header {1 (alg): -7 (ES256)}
    chunk[header + 1] = 0x25  # -6: COSE "direct", no signature algorithm C2PA allows


def _claim_version_9(chunk: bytearray, cose: int) -> None:
    label = chunk.index(b"c2pa.claim.v2")  # the claim box's JUMBF label names its version
    chunk[label + 12] = ord("9")


def heic_from_avif(source: Path, dest: Path) -> Path:
    """A HEIF file with the ``heic`` major brand. pillow-heif is not installed here, so the container
    is Pillow's AVIF (also ISO-BMFF/HEIF) relabelled: C2PA binds the boxes, not the codec."""
    data = bytearray(source.read_bytes())
    assert data[4:12] == b"ftypavif"
    data[8:12] = b"heic"
    dest.write_bytes(bytes(data))
    return dest


def build(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    base = folder / "base.png"
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(base)
    Image.open(base).save(folder / "base.jpg", quality=90)
    Image.open(base).save(folder / "base.avif")
    made: dict[str, Path] = {}

    def png(name: str, definition: dict, parent: Path | None = None) -> Path:
        made[name] = sign(base, folder / f"{name}.png", definition, "image/png", parent)
        return made[name]

    png("template", manifest(
        [created("digitalCreation"), {"action": "c2pa.edited"}],
        templates=[{"action": "c2pa.edited", "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
                    "softwareAgent": {"name": "GenFill"}}],
    ))
    png("template-overridden", manifest(
        [created("digitalCreation"), {"action": "c2pa.edited", "digitalSourceType": IPTC + "humanEdits"}],
        templates=[{"action": "c2pa.edited", "digitalSourceType": IPTC + "trainedAlgorithmicMedia"}],
    ))
    png("adobe-parameter", manifest([
        created("digitalCreation"),
        {"action": "c2pa.edited", "softwareAgent": {"name": "Photoshop"},
         "parameters": {"com.adobe.digitalSourceType": IPTC + "compositeWithTrainedAlgorithmicMedia"}},
    ]))
    generated = png("generated", manifest([created("trainedAlgorithmicMedia", "ImageGen")]))
    cropped = png("crop-of-generated", manifest(opened_parent("c2pa.cropped")), parent=generated)
    png("graded-crop-of-generated", manifest(opened_parent("c2pa.color_adjustments")), parent=cropped)
    png("algorithmic", manifest([created("algorithmicMedia", "FractalMaker")]))
    png("enhanced", manifest([created("digitalCapture"), {
        "action": "c2pa.color_adjustments", "digitalSourceType": IPTC + "algorithmicallyEnhanced"}]))
    camera = png("camera", manifest([created("digitalCapture")]))
    made["bad-signature"] = patch_png_manifest(generated, folder / "bad-signature.png", _break_signature)
    made["unsupported-algorithm"] = patch_png_manifest(camera, folder / "unsupported-algorithm.png",
                                                       _unsupported_algorithm)
    made["claim-version-9"] = patch_png_manifest(camera, folder / "claim-version-9.png", _claim_version_9)
    png("crop-of-bad-signature", manifest(opened_parent("c2pa.cropped")), parent=made["bad-signature"])
    png("cawg-identity", manifest([created("digitalCapture")], extra=[{"label": "cawg.identity", "data": {
        "signer_payload": {"referenced_assertions": [], "sig_type": "cawg.x509.cose"},
        "signature": "AAAA", "pad1": "", "pad2": ""}}]))
    made["remote"] = sign(folder / "base.jpg", folder / "remote.jpg", manifest([created("digitalCapture")]),
                          "image/jpeg", remote_url=UNREACHABLE)
    heic = heic_from_avif(folder / "base.avif", folder / "base.heic")
    made["heic"] = sign(heic, folder / "generated.heic", manifest([created("trainedAlgorithmicMedia", "ImageGen")]),
                        "image/heic")
    return made
