"""`avow verify` reads manifests the way C2PA 2.2 says, on files signed by c2pa-python in other tools' shapes.

One test per row of the table in the README's "Verifying" section: the fixture, what the real
c2pa-python says about it, and Avow's verdict, headline and exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avow_c2pa.declarations import source_kind
from avow_c2pa.verdicts import EXIT_CODES, SEVERITY, batch_exit_code, judge, unverifiable_error
from avow_c2pa.verify import (
    AI_IN_HISTORY,
    AI_SYNTHESIZED,
    REMOTE,
    SIGNED,
    TAMPERED,
    UNVERIFIABLE,
    Report,
    reader_settings,
    trust_anchors,
    verify_file,
)
from c2pa_fixtures import IPTC, UNREACHABLE, build


@pytest.fixture(scope="module")
def made(tmp_path_factory, shared_home):
    os.environ["AVOW_CONFIG_DIR"] = str(shared_home)
    return build(tmp_path_factory.mktemp("c2pa-fixtures"))


def check(path: Path, **options):
    return verify_file(path, trust_anchors(), **options)


def test_an_ai_source_type_in_an_action_template_is_overlaid(made):
    report = check(made["template"])
    assert report.validation_state == "Trusted" and report.status_codes == []
    assert report.verdict == AI_SYNTHESIZED and report.exit_code == 0
    assert report.summary.startswith("AI-synthesized content declared by GenFill: not original footage.")
    assert report.ai_actions == [{"action": "c2pa.edited", "digital_source_type": IPTC + "trainedAlgorithmicMedia",
                                  "software_agent": "GenFill", "via": "template"}]


def test_the_actions_own_source_type_wins_over_its_template(made):
    report = check(made["template-overridden"])
    assert report.verdict == SIGNED and not report.ai_declared
    assert {d["source_type"].rsplit("/", 1)[-1] for d in report.declarations} == {"digitalCreation", "humanEdits"}


def test_adobes_vendor_parameter_declares_ai(made):
    report = check(made["adobe-parameter"])
    assert report.verdict == AI_SYNTHESIZED and report.exit_code == 0
    assert report.summary.startswith("AI-synthesized content declared by Photoshop")
    assert report.ai_actions[0]["via"] == "parameter com.adobe.digitalSourceType"


def test_a_crop_of_an_ai_picture_says_ai_in_its_history_at_any_depth(made):
    one = check(made["crop-of-generated"])
    assert one.validation_state == "Trusted" and one.verdict == AI_IN_HISTORY and one.exit_code == 0
    assert one.summary.startswith("AI-generated or AI-edited content in its history: ingredient 'generated.png' "
                                  "declares trainedAlgorithmicMedia by ImageGen")
    two = check(made["graded-crop-of-generated"])
    assert two.verdict == AI_IN_HISTORY
    assert "ingredient 'crop-of-generated.png' > 'generated.png' declares trainedAlgorithmicMedia" in two.summary
    assert [i["path"] for i in two.ingredients] == [["crop-of-generated.png"], ["crop-of-generated.png", "generated.png"]]


def test_untrained_algorithmic_media_is_synthetic_not_ai(made):
    report = check(made["algorithmic"])
    assert report.verdict == SIGNED and not report.ai_declared
    assert "synthetic content not said to come from a trained model (algorithmicMedia)" in report.summary
    assert "algorithmic enhancement (algorithmicallyEnhanced)" in check(made["enhanced"]).summary
    kinds = {code: source_kind(IPTC + code) for code in (
        "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia", "compositeSynthetic",
        "algorithmicallyEnhanced", "digitalCapture", "humanEdits")}
    assert kinds == {"trainedAlgorithmicMedia": "ai", "compositeWithTrainedAlgorithmicMedia": "ai",
                     "algorithmicMedia": "synthetic", "compositeSynthetic": "synthetic",
                     "algorithmicallyEnhanced": "enhanced", "digitalCapture": "other", "humanEdits": "other"}


def test_remote_credentials_are_not_called_missing_or_tampered(made):
    report = check(made["remote"])
    assert report.verdict == REMOTE and report.exit_code == 8 and report.remote_url == UNREACHABLE
    assert "stored online" in report.summary and "--allow-remote" in report.summary
    fetched = check(made["remote"], allow_remote=True)  # the discard port refuses: fetched, failed, said so
    assert fetched.verdict == REMOTE and "could not be fetched" in fetched.summary


def test_an_inaccessible_manifest_code_is_remote_not_tampered():
    report = Report("x.jpg", "no-provenance", "", manifest_present=True, validation_state="Invalid",
                    status_codes=["manifest.inaccessible"])
    judge(report)
    assert report.verdict == REMOTE and "could not be read (manifest.inaccessible)" in report.summary


def test_an_unsupported_signature_algorithm_is_unverifiable_not_tampered(made):
    report = check(made["unsupported-algorithm"])
    assert "algorithm.unsupported" in report.status_codes and report.validation_state == "Invalid"
    assert report.verdict == UNVERIFIABLE and report.exit_code == 9
    assert "not verifiable by this version of Avow" in report.summary and "not evidence of tampering" in report.summary


def test_a_claim_version_the_sdk_does_not_know_is_unverifiable_not_tampered(made):
    report = check(made["claim-version-9"])  # c2pa-python refuses it: "claim version is too new, not supported"
    assert report.manifest_present and report.verdict == UNVERIFIABLE and report.exit_code == 9
    assert "claim version is too new" in report.summary and "not evidence of tampering" in report.summary
    assert unverifiable_error("prerelease content detected")  # the SDK's words for a pre-1.0 store


def test_a_broken_signature_is_still_tampered(made):
    report = check(made["bad-signature"])
    assert report.status_codes == ["claimSignature.mismatch"] and report.verdict == TAMPERED and report.exit_code == 1


def test_an_ingredients_failure_is_shown_with_its_own_code(made):
    report = check(made["crop-of-bad-signature"])
    assert report.validation_state == "Trusted" and report.status_codes == []
    assert report.ingredients[0]["failures"] == ["claimSignature.mismatch"]
    assert "'bad-signature.png': claimSignature.mismatch" in report.summary
    assert "trust list" not in report.summary  # never the active manifest's unrelated reason
    assert report.verdict == AI_IN_HISTORY  # a broken record still discloses: records never remove a disclosure


def test_heic_is_read_and_walked(made, tmp_path):
    report = check(made["heic"])
    assert report.format == "heic" and report.verdict == AI_SYNTHESIZED and report.validation_state == "Trusted"
    (tmp_path / "phone").mkdir()
    (tmp_path / "phone" / "IMG_0001.HEIC").write_bytes(made["heic"].read_bytes())
    done = subprocess.run([sys.executable, "-m", "avow", "verify", "-r", str(tmp_path / "phone")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "IMG_0001.HEIC: AI-synthesized content declared by ImageGen" in done.stdout


def test_signing_time_timestamps_cawg_and_ocsp_are_reported(made):
    report = check(made["camera"])
    assert report.signing_time is None and report.timestamp_codes == []  # no time-stamp authority offline
    assert report.revocation_codes == ["signingCredential.ocsp.skipped"]
    asked = check(made["camera"], ocsp=True)
    assert reader_settings("", ocsp=True)["verify"]["ocsp_fetch"] is True
    assert asked.revocation_codes == ["signingCredential.ocsp.inaccessible"]  # asked, and offline
    cawg = check(made["cawg-identity"])
    assert cawg.identities and cawg.identities[0]["label"] == "cawg.identity"
    assert "cawg.x509.signature.mismatch" in cawg.identities[0]["codes"]
    assert cawg.verdict == SIGNED and cawg.signer_trusted  # the claim is fine; the identity is not
    assert "CAWG identity assertion does not validate" in cawg.summary


def test_other_formats_get_explicit_words(tmp_path):
    bmp = tmp_path / "picture.bmp"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(bmp)
    report = check(bmp)
    assert report.verdict == "unreadable" and "a BMP image: C2PA defines no way to embed" in report.summary
    svg = tmp_path / "drawing.svg"
    svg.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    assert check(svg).format == "svg" and check(svg).verdict == "no-provenance"
    jxl = tmp_path / "photo.jxl"
    jxl.write_bytes(b"\xff\x0a" + bytes(64))
    assert check(jxl).format == "jxl"


def test_the_most_severe_finding_sets_a_batchs_exit_code(made, tmp_path):
    assert batch_exit_code(["no-provenance", "tampered"]) == 1
    assert batch_exit_code(["unreadable", "contradiction", "no-provenance"]) == 1
    assert batch_exit_code(["no-provenance", "remote"]) == 8 and batch_exit_code(["signed"]) == 0
    assert set(SEVERITY) == set(EXIT_CODES)
    plain = tmp_path / "plain.png"
    plain.write_bytes(made["camera"].with_name("base.png").read_bytes())
    done = subprocess.run([sys.executable, "-m", "avow", "verify", str(plain), str(made["bad-signature"]),
                           str(made["remote"])], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # tampered (1) outranks remote (8) and no-provenance (2)
    assert done.stdout.strip().splitlines()[-1] == "tampered: 1  no-provenance: 1  remote: 1"
