"""Verdicts, their exit codes, how they rank in a batch, and what C2PA status codes mean to a person.

C2PA separates "invalid" from "tampered": a manifest made with a signature algorithm or a claim
version this SDK does not know is not evidence of tampering, and credentials kept on a server are
not missing. Each of those gets its own verdict, so a script can tell "someone changed this file"
(exit 1) from "Avow could not check it" (3, 5, 6, 7) and from "nothing to check" (2).
"""

from __future__ import annotations

from collections.abc import Iterable

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
    REMOTE: 5, UNVERIFIABLE: 6, OVER_BUDGET: 7,
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
