"""Where Avow keeps per-user state (signing identity, user models, settings), and the one typed
reader of ``config.toml``.

One resolver for every package, so the signer, the verifier and the editor hooks agree on
which identity is "the user's own". ``AVOW_CONFIG_DIR`` overrides it: tests and portable
installs need a directory that is not the real user's.

Every command reads the settings through ``settings()``, which checks the whole file against one
schema (types, sizes, unknown keys named) before any of it is used: a mistake in any section
stops every command the same way, with one line naming the key and the file, instead of one
command tripping over it and another silently ignoring it.
"""

from __future__ import annotations

import functools
import os
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from .errors import SettingsError, describe_os_error

SETTINGS_FILE = "config.toml"
MAX_SETTINGS_BYTES = 64 * 1024  # a settings file is a few lines; anything bigger is a mistake
MAX_LIST = 64
MAX_STRING = 4096
DEFAULT_IDLE_MINUTES = 10.0  # an editor's warm worker holds torch and a model; ten minutes unused gives them back
MAX_IDLE_MINUTES = 24 * 60.0


def config_dir() -> Path:
    override = os.environ.get("AVOW_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("avow", appauthor=False))


def user_models_dir() -> Path:
    return config_dir() / "models"


@dataclass(frozen=True)
class Settings:
    """``[signing] key/cert``, ``[verify] trust`` (PEM files), ``[watermark] keys`` (the user's own
    watermark keys, beside Avow's public one), ``[worker] idle_minutes`` (how long an editor's warm
    worker waits for the next action before it exits). Relative paths are relative to the config folder."""

    signing_key: Path | None = None
    signing_cert: Path | None = None
    trust: tuple[Path, ...] = ()
    watermark_keys: tuple[str, ...] = ()
    worker_idle_minutes: float = DEFAULT_IDLE_MINUTES


def settings() -> Settings:
    path = config_dir() / SETTINGS_FILE
    document = _read(path)

    def problem(key: str, message: str) -> SettingsError:
        return SettingsError(f"{path}: {key}: {message}")

    values: dict[str, Any] = {}
    for section, value in document.items():
        fields = _SCHEMA.get(section)
        if fields is None:
            raise problem(f"[{section}]", f"unknown section; expected {', '.join(f'[{s}]' for s in _SCHEMA)}")
        if not isinstance(value, dict):
            raise problem(f"[{section}]", f"must be a table of settings, not {_kind(value)}")
        for key, item in value.items():
            if key not in fields:
                raise problem(f"[{section}] {key}", f"unknown setting; expected {', '.join(fields)}")
            attribute, check = fields[key]
            values[attribute] = check(item, functools.partial(problem, f"[{section}] {key}"), path.parent)
    if ("signing_key" in values) != ("signing_cert" in values):
        raise problem("[signing]", "needs both key and cert (a private key and its certificate chain)")
    return Settings(**values)


def user_watermark_keys() -> tuple[str, ...]:
    """``[watermark] keys``: a private key lets its owner recognise their own outputs even if someone
    learns to scrub the public mark; the public key is always used as well."""
    return settings().watermark_keys


def _read(path: Path) -> dict:
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read settings: {describe_os_error(exc, path)}") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
        raise SettingsError(f"{path}: not a regular file")
    if info.st_size > MAX_SETTINGS_BYTES:
        raise SettingsError(f"{path}: {info.st_size} bytes; a settings file is at most {MAX_SETTINGS_BYTES}")
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_SETTINGS_BYTES + 1).decode("utf-8")
        return tomllib.loads(text)
    except OSError as exc:
        raise SettingsError(f"cannot read settings: {describe_os_error(exc, path)}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise SettingsError(f"{path}: values nested too deeply") from None


Problem = Callable[[str], SettingsError]


def _kind(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _string(value: Any, problem: Problem) -> str:
    if not isinstance(value, str) or not value.strip():
        raise problem(f"must be a non-empty string, not {_kind(value) if value != '' else 'an empty one'}")
    if len(value) > MAX_STRING or "\0" in value:
        raise problem(f"must be at most {MAX_STRING} characters, with no NUL")
    return value


def _path(value: Any, problem: Problem, base: Path) -> Path:
    return base / Path(_string(value, problem)).expanduser()


def _list(value: Any, problem: Problem) -> list:
    if not isinstance(value, list):
        raise problem(f"must be a list, not {_kind(value)}")
    if len(value) > MAX_LIST:
        raise problem(f"at most {MAX_LIST} entries")
    return value


def _entry(problem: Problem, index: int) -> Problem:
    return lambda message: problem(f"entry {index + 1} {message}")


def _paths(value: Any, problem: Problem, base: Path) -> tuple[Path, ...]:
    items = _list(value, problem)
    return tuple(_path(item, _entry(problem, i), base) for i, item in enumerate(items))


def _strings(value: Any, problem: Problem, base: Path) -> tuple[str, ...]:
    items = _list(value, problem)
    return tuple(_string(item, _entry(problem, i)) for i, item in enumerate(items))


def _minutes(value: Any, problem: Problem, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_IDLE_MINUTES:
        raise problem(f"must be a number of minutes above 0 and at most {MAX_IDLE_MINUTES:.0f}, not {value!r}")
    return float(value)


# section -> key -> (Settings attribute, checker)
_SCHEMA: dict[str, dict[str, tuple[str, Callable[[Any, Problem, Path], Any]]]] = {
    "signing": {"key": ("signing_key", _path), "cert": ("signing_cert", _path)},
    "verify": {"trust": ("trust", _paths)},
    "watermark": {"keys": ("watermark_keys", _strings)},
    "worker": {"idle_minutes": ("worker_idle_minutes", _minutes)},
}
