"""Verdicts, their exit codes, how they rank in a batch, and what C2PA status codes mean to a person.

C2PA separates "invalid" from "tampered": a manifest made with a signature algorithm or a claim
version this SDK does not know is not evidence of tampering, and credentials kept on a server are
not missing. Each of those gets its own verdict, so a script can tell "someone changed this file"
(exit 1) from "Avow could not check it" (3, 8, 9, 10) and from "nothing to check" (2). Codes 4-7
are the other outcomes every command shares (see ``avow_c2pa.errors``), so verify's own start at 8.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .declarations import short_name, source_kind

if TYPE_CHECKING:
    from .report import Report

AI_SYNTHESIZED = "ai-synthesized"  # the active manifest declares AI-made pixels
AI_IN_HISTORY = "ai-in-history"  # an ingredient (at any depth) declares them; the last edit does not
AI_WATERMARKED = "ai-watermarked"  # no manifest, but Avow's pixel mark is there
SIGNED = "signed"
CONTRADICTION = "contradiction"  # a valid manifest claims no AI, the pixels carry Avow's mark
TAMPERED = "tampered"
NO_PROVENANCE = "no-provenance"
UNREADABLE = "unreadable"
REMOTE = "remote"  # the credentials are stored online and were not fetched (or could not be)
UNVERIFIABLE = "unverifiable"  # a manifest is there, but this version cannot check it (algorithm, prerelease)
OVER_BUDGET = "over-budget"  # Avow's CPU budget ran out: says nothing about the file

EXIT_CODES = {
    AI_SYNTHESIZED: 0, AI_IN_HISTORY: 0, AI_WATERMARKED: 0, SIGNED: 0,
    CONTRADICTION: 1, TAMPERED: 1, NO_PROVENANCE: 2, UNREADABLE: 3,
    REMOTE: 8, UNVERIFIABLE: 9, OVER_BUDGET: 10,
}

# A batch exits with the code of its most severe finding, in this order: signs of deception,
# then credentials that exist but were not checked, then files Avow could not check, then absence.
SEVERITY = (CONTRADICTION, TAMPERED, UNVERIFIABLE, REMOTE, OVER_BUDGET, UNREADABLE, NO_PROVENANCE,
            AI_SYNTHESIZED, AI_IN_HISTORY, AI_WATERMARKED, SIGNED)


def batch_exit_code(verdicts: Iterable[str]) -> int:
    """The exit code of the most severe verdict (0 for none: callers refuse an empty batch first)."""
    seen = set(verdicts)
    return next((EXIT_CODES[v] for v in SEVERITY if v in seen), 0)


# Plain words for the codes people meet most; any other code is shown as c2pa reports it.
EXPLANATIONS = {
    "assertion.dataHash.mismatch": "the pixels or file bytes changed after signing",
    "assertion.boxesHash.mismatch": "the file's structure changed after signing",
    "assertion.bmffHash.mismatch": "the file's contents changed after signing",
    "assertion.hashedURI.mismatch": "a statement inside the manifest was altered after signing",
    "assertion.missing": "a statement the manifest vouches for is missing",
    "claimSignature.mismatch": "the manifest's signature does not match its contents",
    "claimSignature.missing": "the manifest is not signed",
    "claimSignature.outsideValidity": "the signature was made outside its certificate's validity",
    "signingCredential.untrusted": "the signature is valid but the signer is not in your trust list",
    "signingCredential.expired": "the signing certificate had expired when it signed",
    "signingCredential.invalid": "the signing certificate is not valid for signing content",
    "signingCredential.revoked": "the signing certificate was revoked",
    "signingCredential.ocsp.revoked": "the signing certificate was revoked (OCSP)",
    "signingCredential.ocsp.inaccessible": "the certificate's revocation status could not be fetched",
    "signingCredential.ocsp.skipped": "revocation was not checked (use --ocsp to ask the issuer)",
    "ingredient.manifest.mismatch": "an ingredient's own provenance was altered",
    "ingredient.claimSignature.mismatch": "an ingredient's signature does not match its contents",
    "manifest.inaccessible": "the manifest is stored elsewhere and was not fetched",
    "algorithm.unsupported": "signed with an algorithm this version of Avow cannot check",
    "timeStamp.validated": "a time-stamp authority vouches for the signing time",
    "timeStamp.trusted": "the time-stamp authority is trusted",
    "timeStamp.untrusted": "the time-stamp authority is not in your trust list",
    "timeStamp.mismatch": "the time stamp does not match the signature",
    "timeStamp.outsideValidity": "the time stamp lies outside the certificate's validity",
    "timeStamp.malformed": "the time stamp cannot be read",
}

# Failure codes that mean "this version cannot check it", not "it was changed".
UNVERIFIABLE_CODES = frozenset({"algorithm.unsupported"})
# Words in the SDK's errors for stores it refuses on version or algorithm grounds, not damage.
UNVERIFIABLE_ERRORS = ("prerelease", "not supported", "unsupported", "too new", "unknown algorithm",
                       "incompatible claim version")


def explain(codes: Iterable[str]) -> dict[str, str]:
    return {code: EXPLANATIONS[code] for code in codes if code in EXPLANATIONS}


def only_credential_problems(codes: list[str]) -> bool:
    """The bytes are as signed, but the signature cannot be relied on (expired, revoked, ...)."""
    return bool(codes) and all(code.startswith("signingCredential.") for code in codes)


def unverifiable_error(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in UNVERIFIABLE_ERRORS)


def judge(report: Report) -> None:
    xmp_ai = source_kind(report.xmp.get("digital_source_type")) == "ai"
    if report.verdict in (REMOTE, UNVERIFIABLE):
        return  # decided when the store was refused
    # An untrusted signer leaves the state Valid; an ingredient's or a CAWG identity's failure alone is
    # theirs, shown below, not the claim's.
    blocking = [c for c in report.status_codes if c != "signingCredential.untrusted" and not c.startswith("cawg.")]
    not_the_claims = not blocking and (any(i["failures"] for i in report.ingredients) or report.status_codes)
    if report.manifest_present and report.validation_state not in ("Valid", "Trusted") and not not_the_claims:
        _judge_invalid(report)
        return
    if not report.manifest_present:
        report.verdict = NO_PROVENANCE
        report.summary = "No provenance: cannot tell."
        if xmp_ai:
            report.summary += " Unsigned XMP metadata says the pixels were AI-synthesized."
        if report.exif.get("make") or report.exif.get("model"):
            report.notes.append("camera make/model in EXIF are unsigned and prove nothing")
        return
    who = signer_phrase(report)
    in_history = [d for d in report.declarations if d["ingredient_path"] and d["kind"] == "ai"]
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
    elif in_history:
        report.verdict = AI_IN_HISTORY
        first = in_history[0]
        where = " > ".join(map(repr, first["ingredient_path"]))
        agent = f" by {first['software_agent']}" if first["software_agent"] else ""
        report.summary = (
            f"AI-generated or AI-edited content in its history: ingredient {where} declares "
            f"{short_name(first['source_type'])}{agent}; the last signer declares no AI of its own. {who}"
        )
    else:
        report.verdict = SIGNED
        report.summary = f"Signed provenance, no AI synthesis declared{_untrained_phrase(report)}. {who}"
        if xmp_ai:
            report.metadata_agrees = False
            report.notes.append("XMP says AI-synthesized but the signed manifest does not")
    failed_identities = [code for code in report.status_codes if code.startswith("cawg.")]
    if failed_identities:
        report.summary += f" Its CAWG identity assertion does not validate ({', '.join(failed_identities)})."
    broken = [i for i in report.ingredients if i["failures"]]
    if broken:
        named = "; ".join(f"{' > '.join(map(repr, i['path']))}: {', '.join(i['failures'])}" for i in broken[:3])
        report.summary += (f" An ingredient's own provenance does not validate ({named}):"
                           " that part of its history cannot be relied on.")


def _judge_invalid(report: Report) -> None:
    codes = ", ".join(report.status_codes) or "manifest unreadable"
    if "manifest.inaccessible" in report.status_codes:  # the SDK's code for credentials it could not fetch
        report.verdict = REMOTE
        report.summary = f"Content Credentials are stored elsewhere and could not be read ({codes}): cannot tell."
        return
    if UNVERIFIABLE_CODES & set(report.status_codes):
        report.verdict = UNVERIFIABLE
        report.summary = (
            f"Content Credentials present but not verifiable by this version of Avow ({codes}): cannot tell; "
            "this is not evidence of tampering."
        )
        return
    report.verdict = TAMPERED
    if only_credential_problems(report.status_codes):
        reasons = "; ".join(report.explanations.get(code, code) for code in report.status_codes)
        report.summary = f"Signature not valid ({reasons}): do not rely on what this file claims."
    else:
        report.summary = f"Tampered after signing ({codes}): do not rely on what this file claims."


def _ai_phrase(report: Report) -> str:
    if report.model:
        return f"AI-upscaled by Avow (model {report.model.get('model')}, x{report.model.get('scale')})"
    agents = sorted({a["software_agent"] for a in report.ai_actions if a["software_agent"]})
    return "AI-synthesized content declared" + (f" by {', '.join(agents)}" if agents else "")


def _untrained_phrase(report: Report) -> str:
    """Synthetic or algorithmically enhanced content that does not claim a trained model, named as such."""
    kinds = {d["kind"]: short_name(d["source_type"]) for d in report.declarations if d["kind"] in ("synthetic", "enhanced")}
    if "synthetic" in kinds:
        return f"; declares synthetic content not said to come from a trained model ({kinds['synthetic']})"
    if "enhanced" in kinds:
        return f"; declares algorithmic enhancement ({kinds['enhanced']})"
    return ""


def signer_phrase(report: Report) -> str:
    name = (report.signer or {}).get("common_name") or "an unnamed signer"
    if report.signer_trusted:
        return f"Signed by {name} (trusted)."
    return f"Signature valid, signer unknown ({name})."
