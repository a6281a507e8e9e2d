"""The signing identity: a local root CA and a leaf that signs C2PA manifests.

Every output must be signed, so a first run creates an identity instead of failing. The root's
private key is thrown away once the leaf exists: nobody, not even a thief of the config dir, can
mint another certificate under the root that verifiers of this user's files trust. No timestamp
authority is reachable, so a signature is only valid while the leaf is: the leaf lives long.

C2PA readers refuse leaves without the digitalSignature key usage, and by default also refuse the
documentSigning/claimSigning EKUs alone, so the leaf carries emailProtection.
"""

from __future__ import annotations

import datetime
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import config_dir, settings
from .errors import IdentityError, describe_os_error

ROOT_LIFETIME = datetime.timedelta(days=365 * 30)
LEAF_LIFETIME = datetime.timedelta(days=365 * 25)

KEY_FILE = "signer.key"
CHAIN_FILE = "signer-chain.pem"
ROOT_FILE = "root.pem"
IDENTITY_FILES = (KEY_FILE, CHAIN_FILE, ROOT_FILE)
MIN_RSA_BITS = 2048  # C2PA's minimum; shorter RSA keys are refused by every reader


@dataclass(frozen=True)
class Identity:
    chain_pem: bytes  # leaf first, then issuers
    key_pem: bytes
    alg: str  # c2pa signing algorithm name: es256, es384, ed25519, ps256
    root_pem: bytes | None  # trust anchor to hand verifiers; None for a user's own CA
    origin: str  # where it came from, for `avow keys show`

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.chain_pem)[0]

    def fingerprints(self) -> dict[str, str]:
        certs = {"leaf": self.leaf}
        if self.root_pem:
            certs["root"] = x509.load_pem_x509_certificate(self.root_pem)
        return {role: cert.fingerprint(hashes.SHA256()).hex(":") for role, cert in certs.items()}


def identity_dir() -> Path:
    return config_dir() / "identity"


def signing_identity(key: Path | None = None, cert: Path | None = None) -> Identity:
    """The identity to sign with: explicit files, else ``config.toml``'s, else the local one (created on first use).

    Whatever its origin it is checked here, before any pixel is made: a certificate C2PA readers
    would refuse (expired, not yet valid, no digitalSignature, weak key, broken chain) must stop
    the job at once, not after the inference."""
    if key is None and cert is None:
        configured = settings()
        key, cert = configured.signing_key, configured.signing_cert
    if key is None and cert is None:
        identity = local_identity(create=True)
        assert identity is not None
        chain_path = identity_dir() / CHAIN_FILE
    elif key is None or cert is None:
        raise IdentityError("a signing key and its certificate chain go together: give both --key and --cert")
    else:
        identity = load_identity(Path(key), Path(cert))
        chain_path = Path(cert)
    check_chain(x509.load_pem_x509_certificates(identity.chain_pem), chain_path)
    return identity


def local_identity(create: bool) -> Identity | None:
    folder = identity_dir()
    missing = _missing(folder)
    if missing and (len(missing) < len(IDENTITY_FILES) or _has_entries(folder)):
        missing = _missing(folder)  # looked while a concurrent first run renamed its identity into place
    if missing and (len(missing) < len(IDENTITY_FILES) or _has_entries(folder)):
        raise IdentityError(
            f"{folder}: incomplete signing identity (missing {', '.join(missing)}), probably left by an interrupted "
            "first run; move that folder aside (keep it if files were signed with it) and run again to create a new one"
        )
    if missing:
        if not create:
            return None
        _create_local_identity(folder)
    identity = load_identity(folder / KEY_FILE, folder / CHAIN_FILE)
    return Identity(identity.chain_pem, identity.key_pem, identity.alg, _read(folder / ROOT_FILE), str(folder))


def _missing(folder: Path) -> list[str]:
    return [name for name in IDENTITY_FILES if not (folder / name).is_file()]


def _has_entries(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise IdentityError(f"signing identity: {describe_os_error(exc, folder)}") from None


def load_identity(key_path: Path, chain_path: Path) -> Identity:
    key_pem, chain_pem = _read(key_path), _read(chain_path)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise IdentityError(f"{key_path}: not an unencrypted PEM private key ({_first_line(exc)})") from None
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise IdentityError(f"{chain_path}: not a PEM certificate chain ({_first_line(exc)})") from None
    if chain[0].public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise IdentityError(f"{chain_path}: the first certificate does not belong to the key {key_path}")
    return Identity(chain_pem, key_pem, _algorithm(key, key_path), None, f"{key_path} + {chain_path}")


def check_chain(chain: list[x509.Certificate], chain_path: Path) -> None:
    """What a C2PA reader checks of the signer's certificates, checked before signing: dates, the
    leaf's key usage, and that each certificate is signed by the next one (leaf first)."""
    now = datetime.datetime.now(datetime.UTC)
    for position, cert in enumerate(chain):
        role = "the signing certificate" if position == 0 else f"certificate {position + 1} of the chain"
        if now < cert.not_valid_before_utc:
            raise IdentityError(f"{chain_path}: {role} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
        if now > cert.not_valid_after_utc:
            raise IdentityError(f"{chain_path}: {role} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    try:
        usage = chain[0].extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.digital_signature:
        raise IdentityError(f"{chain_path}: the signing certificate lacks the digitalSignature key usage C2PA requires")
    for cert, issuer in itertools.pairwise(chain):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise IdentityError(
                f"{chain_path}: {cert.subject.rfc4514_string()} is not signed by the next certificate "
                f"({issuer.subject.rfc4514_string()}); the chain goes leaf first, then each issuer"
            ) from None


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _algorithm(key, key_path: Path) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in algs:
            return algs[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise IdentityError(f"{key_path}: RSA-{key.key_size} is too weak for C2PA; use at least RSA-{MIN_RSA_BITS}")
        return "ps256"
    raise IdentityError(f"{key_path}: key type not usable for C2PA (use EC P-256/P-384/P-521, Ed25519 or RSA)")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(describe_os_error(exc, path)) from None


def _create_local_identity(folder: Path) -> None:
    """Made complete in a private temp folder, then renamed into place in one step: concurrent
    first runs each make one and the first rename wins (the others use it), and an interrupted
    run leaves only a temp folder, never a half-made identity."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".identity-", dir=folder.parent))
    except OSError as exc:
        raise IdentityError(f"cannot create the signing identity: {describe_os_error(exc)}") from None
    try:
        _write_identity(staging)
        os.rename(staging, folder)
    except OSError as exc:
        if not (folder / KEY_FILE).is_file():  # not a concurrent run's identity: a real failure
            raise IdentityError(f"cannot create the signing identity: {describe_os_error(exc)}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_identity(folder: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    user = os.environ.get("USER") or os.environ.get("USERNAME") or "user"

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"Avow local root ({user})")
    root = (
        _certificate(root_name, root_name, root_key.public_key(), now, ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        _certificate(_name(f"Avow signer ({user})"), root_name, leaf_key.public_key(), now, LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(folder / KEY_FILE, key_pem)
    (folder / CHAIN_FILE).write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    (folder / ROOT_FILE).write_bytes(root.public_bytes(pem))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Avow")]
    )


def _certificate(subject, issuer, public_key, now, lifetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + lifetime)
    )


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )

