"""The pixels decide what an editor's export is signed as: the worker's ``sign`` searches the
exported pixels for Avow's mark before signing. Real worker process, real model output, real
c2pa-python and pyexiv2."""

from __future__ import annotations

import base64
import json
import os
import struct
import sys
from pathlib import Path

import c2pa
import pytest
from PIL import Image

from avow_c2pa.disclosure import COMPOSITE_WITH_AI
from avow_c2pa.keys import signing_identity
from avow_c2pa.manifest import HUMAN_EDITS, sign_file
from avow_c2pa.metadata import read_metadata
from avow_c2pa.verify import AI_SYNTHESIZED, reader_settings, trust_anchors, verify_file
from test_watermark_binding import upscaled  # noqa: F401 (a fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin" / "client"))
import avow_client


@pytest.fixture(scope="module")
def worker(shared_home):
    with avow_client.Worker(sys.executable, env={**os.environ, "AVOW_CONFIG_DIR": str(shared_home)}) as running:
        yield running


def active_manifest(path: Path) -> dict:
    with c2pa.Context.from_dict(reader_settings(trust_anchors())) as context, c2pa.Reader(str(path), context=context) as reader:
        store = json.loads(reader.json())
    return store["manifests"][store["active_manifest"]]


def pasted_into_a_new_document(output: Path, out: Path) -> Path:
    """What an editor exports after the AI layer was pasted into a new document: the same pixels,
    none of Avow's records, no metadata."""
    with Image.open(output) as image:
        image.convert("RGB").save(out)
    return out


def test_marked_pixels_with_no_records_are_signed_as_ai(worker, upscaled, tmp_path):  # noqa: F811
    _, result = upscaled
    identifier = result.disclosure.watermark_id
    exported = pasted_into_a_new_document(result.output, tmp_path / "export.png")
    answer = worker.request("sign", file=str(exported), provenance=[], editor="GIMP 3.0.4")
    assert answer["ai_declared"] is True and answer["watermark"]["identifier"] == identifier

    actions = next(a for a in active_manifest(exported)["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    assert actions[0]["action"] == "c2pa.created" and actions[0]["digitalSourceType"] == COMPOSITE_WITH_AI
    assert HUMAN_EDITS not in json.dumps(actions)
    edited = next(a for a in actions if a["action"] == "c2pa.edited")
    assert edited["digitalSourceType"] == COMPOSITE_WITH_AI and edited["softwareAgent"]["name"] == "Avow"
    assert edited["parameters"] == {"dev.avow.identifier": identifier}
    assert read_metadata(exported)[1]["Xmp.iptcExt.DigitalSourceType"] == COMPOSITE_WITH_AI

    report = verify_file(exported, trust_anchors())
    assert report.verdict == AI_SYNTHESIZED and report.metadata_agrees is True, report.summary
    assert report.soft_bindings == [identifier] and report.watermark["matches_manifest"] is True
    assert report.model is None and "Avow" in report.summary


def test_records_add_the_model_to_what_the_pixels_say(worker, upscaled, tmp_path):  # noqa: F811
    _, result = upscaled
    exported = pasted_into_a_new_document(result.output, tmp_path / "export.png")
    worker.request("sign", file=str(exported), provenance=[result.disclosure.to_dict()], editor="Krita 5.1.5")
    actions = next(a for a in active_manifest(exported)["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    # The record names the mark the pixels carry: one upscale, not a second, anonymous one.
    assert [a["action"] for a in actions] == ["c2pa.created", "c2pa.edited", "c2pa.resized", "c2pa.watermarked.unbound"]
    report = verify_file(exported, trust_anchors())
    assert report.verdict == AI_SYNTHESIZED and report.model["model"] == result.disclosure.model_name


def test_a_mark_no_record_names_is_declared_beside_the_records(worker, upscaled, tmp_path):  # noqa: F811
    """Records of another upscale (a layer since deleted) and pixels from this one: both declared."""
    _, result = upscaled
    exported = pasted_into_a_new_document(result.output, tmp_path / "export.png")
    other = {**result.disclosure.to_dict(), "watermark_id": "0badf00d"}
    worker.request("sign", file=str(exported), provenance=[other], editor="GIMP 3.0.4")
    assertions = active_manifest(exported)["assertions"]
    actions = next(a for a in assertions if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    identified = [a["parameters"].get("dev.avow.identifier") for a in actions if a["action"] == "c2pa.edited"]
    assert identified == [None, result.disclosure.watermark_id]  # the record's edit names its model instead
    carried = next(a for a in assertions if a["label"] == "dev.avow.watermark")["data"]
    assert carried["identifiers"] == ["0badf00d", result.disclosure.watermark_id]


@pytest.mark.parametrize(
    "provenance",
    ["garbage", {"model_name": "x"}, [{"bogus": 1}], [None], ["[]"]],
    ids=["a-string", "not-a-list", "unknown-fields", "null-record", "string-record"],
)
def test_unreadable_records_refuse_the_export(worker, upscaled, tmp_path, provenance):  # noqa: F811
    _, result = upscaled
    exported = pasted_into_a_new_document(result.output, tmp_path / "export.png")
    before = exported.read_bytes()
    with pytest.raises(avow_client.WorkerError) as caught:
        worker.request("sign", file=str(exported), provenance=provenance, editor="GIMP 3.0.4")
    assert caught.value.kind == "RecordError" and "cannot be read" in caught.value.message
    assert "not signing" in caught.value.message
    assert exported.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["export.png"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("scale", "2"), ("model_sha256", "zz"), ("digital_source_type", HUMAN_EDITS), ("watermark_id", 7), ("input_width", True)],
)
def test_a_record_with_a_wrong_field_refuses_the_export(worker, upscaled, tmp_path, field, value):  # noqa: F811
    _, result = upscaled
    exported = pasted_into_a_new_document(result.output, tmp_path / "export.png")
    record = {**result.disclosure.to_dict(), field: value}
    with pytest.raises(avow_client.WorkerError) as caught:
        worker.request("sign", file=str(exported), provenance=[record], editor="GIMP 3.0.4")
    assert caught.value.kind == "RecordError" and field in caught.value.message


def test_pixels_that_cannot_be_searched_are_not_signed_as_human_edits(worker, tmp_path):
    good = tmp_path / "export.png"
    Image.new("RGB", (64, 64), (90, 120, 30)).save(good)
    data = bytearray(good.read_bytes())
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    data[start : start + length] = b"\x00" * length
    good.write_bytes(bytes(data))
    with pytest.raises(avow_client.WorkerError) as caught:
        worker.request("sign", file=str(good), provenance=[], editor="GIMP 3.0.4")
    assert caught.value.kind == "SigningError" and "cannot look for Avow's mark" in caught.value.message


def test_older_outputs_soft_binding_and_bare_parameters_are_still_read(upscaled, tmp_path):  # noqa: F811
    """Outputs signed before the ``dev.avow.watermark`` assertion and namespaced parameters."""
    source, result = upscaled
    d = result.disclosure
    old_value = base64.b64encode(bytes.fromhex(d.watermark_id)).decode("ascii")
    manifest = {
        "claim_generator_info": [{"name": "Avow", "version": "0.1.0"}],
        "title": "old.png",
        "assertions": [
            {"label": "c2pa.actions.v2", "created": True, "data": {"actions": [
                {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                {"action": "c2pa.edited", "digitalSourceType": COMPOSITE_WITH_AI, "softwareAgent": {"name": "Avow"},
                 "parameters": {"model": d.model_name, "sha256": d.model_sha256, "scale": str(d.scale)}},
                {"action": "c2pa.watermarked", "parameters": {"alg": "dev.avow.watermark.1", "identifier": d.watermark_id}},
            ]}},
            {"label": "c2pa.soft-binding", "created": True, "data": {
                "alg": "dev.avow.watermark.1", "blocks": [{"scope": {}, "value": old_value}]}},
        ],
    }
    out = tmp_path / "old.png"
    sign_file(result.output, out, manifest, signing_identity(), parent=source)
    report = verify_file(out, trust_anchors())
    assert report.verdict == AI_SYNTHESIZED and report.soft_bindings == [d.watermark_id]
    assert report.model == {"model": d.model_name, "sha256": d.model_sha256, "scale": str(d.scale)}
    assert report.watermark["matches_manifest"] is True
