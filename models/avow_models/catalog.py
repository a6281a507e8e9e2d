"""Where models come from: the weights shipped with Avow, then the user's own folder.

Names resolve to files without loading anything, so a typo is reported (with the names that do
exist) before any weights are read.
"""

from __future__ import annotations

from pathlib import Path

from .describe import describe_model
from .descriptor import ModelDescriptor, ModelNotFoundError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODELS: dict[int, str] = {2: "avow-compact-x2", 4: "avow-compact-x4"}
# Built-in weights are always safetensors; a user's folder may also hold published .pth files.
USER_SUFFIXES = (".safetensors", ".pth")


def builtin_models() -> list[ModelDescriptor]:
    """Descriptors of the shipped weights, from their headers and cards (no torch, no network)."""
    return [describe_model(path) for path in sorted(WEIGHTS_DIR.glob("*.safetensors"))]


def find_model(
    name_or_path: str | None = None, scale: int | None = None, user_dir: Path | None = None
) -> Path:
    """The weights file for a name, a path, or (``None``) the default model for ``scale`` (×4)."""
    if name_or_path is None:
        scale = 4 if scale is None else scale
        if scale not in DEFAULT_MODELS:
            scales = ", ".join(f"x{s}" for s in sorted(DEFAULT_MODELS))
            raise ModelNotFoundError(f"no default model for x{scale}; defaults exist for {scales}")
        name_or_path = DEFAULT_MODELS[scale]
    as_path = Path(name_or_path).expanduser()
    if as_path.is_file():
        return as_path
    # Anything with a directory part was meant as a path; never join it onto a models folder.
    if as_path.name == name_or_path and name_or_path not in ("", ".", ".."):
        candidates = [WEIGHTS_DIR / f"{name_or_path}.safetensors"]
        if user_dir is not None:
            candidates += [Path(user_dir) / f"{name_or_path}{suffix}" for suffix in USER_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
    available = ", ".join(_available_names(user_dir)) or "none"
    raise ModelNotFoundError(f"no model named or at {name_or_path!r}; available: {available}")


def user_model_files(user_dir: Path) -> list[Path]:
    """The weights files in the user's folder that ``--model NAME`` finds, sorted; none if no folder."""
    if not Path(user_dir).is_dir():
        return []
    return sorted(path for path in Path(user_dir).iterdir() if path.suffix in USER_SUFFIXES and path.is_file())


def _available_names(user_dir: Path | None) -> list[str]:
    names = [path.stem for path in WEIGHTS_DIR.glob("*.safetensors")]
    if user_dir is not None:
        names += [path.stem for path in user_model_files(user_dir)]
    return sorted(set(names))
