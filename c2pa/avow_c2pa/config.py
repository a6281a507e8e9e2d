"""Where Avow keeps per-user state (signing identity, user models, settings).

One resolver for every package, so the signer, the verifier and the editor hooks agree on
which identity is "the user's own". ``AVOW_CONFIG_DIR`` overrides it: tests and portable
installs need a directory that is not the real user's.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import platformdirs

from .errors import ProvenanceError


def config_dir() -> Path:
    override = os.environ.get("AVOW_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("avow", appauthor=False))


def user_models_dir() -> Path:
    return config_dir() / "models"


def load_settings() -> dict:
    """The optional ``config.toml``: ``[signing] key/cert``, ``[verify] trust`` (list of PEM files),
    ``[watermark] keys`` (the user's own watermark keys, beside Avow's public one)."""
    path = config_dir() / "config.toml"
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProvenanceError(f"{path}: cannot read settings: {exc}") from exc


def user_watermark_keys() -> tuple[str, ...]:
    """``[watermark] keys``: a private key lets its owner recognise their own outputs even if someone
    learns to scrub the public mark; the public key is always used as well."""
    keys = load_settings().get("watermark", {}).get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
        raise ProvenanceError(f"{config_dir() / 'config.toml'}: [watermark] keys must be a list of non-empty strings")
    return tuple(keys)
