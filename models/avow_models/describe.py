"""What a weights file is, told from its bytes without torch: the file rules, the ``.safetensors``
header, the model card, and the descriptor built from them.

Listing models (``avow models list``, the worker's ``describe``) needs only this, so it never
waits seconds for torch. A ``.safetensors`` header is 8 bytes of little-endian length and a JSON
object giving each tensor's dtype, shape and byte range, which is all the registry needs to
detect the architecture. A pickle has no such header: only torch's weights-only unpickler reads
it, so describing one imports the loader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from .descriptor import ModelDescriptor, Tiling, UnsupportedModelError
from .registry import Detection, Shapes, detect

MAX_FILE_BYTES = 2 * 1024**3
MAX_TENSORS = 4096
MAX_HEADER_BYTES = 100 * 1024**2

PICKLE_SUFFIXES = (".pth", ".ckpt", ".bin")
TORCHSCRIPT_SUFFIXES = (".pt", ".jit")

#: Bytes per element of the floating-point safetensors dtypes (the only ones weights may have).
SAFETENSORS_FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
_CARD_TYPES: dict[str, type] = {
    "name": str,
    "description": str,
    "license": str,
    "fp16_safe": bool,
    "tile_overlap": int,  # a measured overlap for these weights, never beyond the exact field
}

V = TypeVar("V")


def describe_model(path: str | os.PathLike[str]) -> ModelDescriptor:
    """The descriptor ``load_model`` would give; for a ``.safetensors``, from its header alone."""
    path = Path(path)
    data = read_weights(path)
    if path.suffix.lower() == ".safetensors":
        header = safetensors_header(path, data)
        shapes = named_tensors(path, {key: tuple(info["shape"]) for key, info in header.items()})
    else:
        from .loading import read_state_dict  # torch: a pickle is read only by its unpickler

        shapes = shapes_of(read_state_dict(path, data))
    return descriptor(path, data, shapes, detect_in(path, shapes))


@dataclass(frozen=True)
class UncheckedModel:
    """A pickle as a listing shows it: its bytes and card, its tensors not yet unpickled."""

    name: str
    sha256: str
    size_bytes: int
    license: str | None


def describe_unchecked(path: Path) -> UncheckedModel:
    """What is known of a weights file without reading its tensors (for a pickle: without torch)."""
    data = read_weights(path)
    card = _card(path)
    return UncheckedModel(card.get("name", path.stem), hashlib.sha256(data).hexdigest(), len(data), card.get("license"))


def read_weights(path: Path) -> bytes:
    """The whole file, once, so that the bytes checked, hashed and loaded are the same bytes."""
    suffix = path.suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES:
        refuse(
            path,
            f"'{suffix}' files are TorchScript, which contains code; convert the weights to .safetensors",
        )
    if suffix != ".safetensors" and suffix not in PICKLE_SUFFIXES:
        refuse(
            path,
            f"unsupported extension {suffix or '(none)'!r}; use .safetensors, or .pth/.ckpt/.bin state dicts",
        )
    try:
        size = path.stat().st_size
        if not path.is_file():
            refuse(path, "not a regular file")
        if size > MAX_FILE_BYTES:
            refuse(path, f"{size} bytes is over the {MAX_FILE_BYTES}-byte limit")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        refuse(path, exc.strerror or str(exc))
    if not data:
        refuse(path, "the file is empty")
    if len(data) > MAX_FILE_BYTES:
        refuse(path, f"over the {MAX_FILE_BYTES}-byte limit")
    return data


def safetensors_header(path: Path, data: bytes) -> dict[str, dict[str, Any]]:
    """The tensor entries of the header, refused unless every one lies inside the file."""
    if len(data) < 8:
        refuse(path, "too short to be a safetensors file")
    length = int.from_bytes(data[:8], "little")
    if length >= MAX_HEADER_BYTES:
        refuse(path, f"safetensors header claims {length} bytes (limit {MAX_HEADER_BYTES})")
    if 8 + length > len(data):
        refuse(path, f"safetensors header claims {length} bytes but the file has {len(data)}")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, ValueError, RecursionError):
        refuse(path, "safetensors header is not valid JSON")
    if not isinstance(header, dict):
        refuse(path, "safetensors header is not a JSON object")
    entries = {key: info for key, info in header.items() if key != "__metadata__"}
    if len(entries) > MAX_TENSORS:
        refuse(path, f"{len(entries)} tensors is over the {MAX_TENSORS}-tensor limit")
    body = len(data) - 8 - length
    for key, info in entries.items():
        problem = _header_entry_problem(info, body)
        if problem:
            refuse(path, f"safetensors header entry {key!r} {problem}")
    return entries


def _header_entry_problem(info: Any, body: int) -> str | None:
    if not isinstance(info, dict):
        return "is not an object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in SAFETENSORS_FLOAT_BYTES:
        return f"has dtype {dtype!r}, not a floating-point type"
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        return "has an invalid shape"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)):
        return "has invalid data_offsets"
    begin, end = offsets
    if not 0 <= begin <= end <= body:
        return f"points at bytes {begin}..{end}, outside the {body}-byte data section"
    if end - begin != math.prod(shape) * SAFETENSORS_FLOAT_BYTES[dtype]:
        return f"declares shape {shape} but spans {end - begin} bytes"
    return None


def named_tensors(path: Path, entries: Mapping[Any, V]) -> dict[str, V]:
    """String keys without DataParallel's ``module.`` prefix, at most ``MAX_TENSORS`` of them."""
    if len(entries) > MAX_TENSORS:
        refuse(path, f"{len(entries)} entries is over the {MAX_TENSORS}-tensor limit")
    named: dict[str, V] = {}
    for key, value in entries.items():
        if not isinstance(key, str):
            refuse(path, f"state dict key {key!r} is not a string")
        name = key.removeprefix("module.")
        if name in named:
            refuse(path, f"tensor {name!r} appears twice once 'module.' prefixes are removed")
        named[name] = value
    return named


def shapes_of(state_dict: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of tensors (anything with a ``shape``), as the registry reads them."""
    return {key: tuple(int(n) for n in tensor.shape) for key, tensor in state_dict.items()}


def detect_in(path: Path, shapes: Shapes) -> Detection:
    try:
        return detect(shapes)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{path}: {exc}") from None


def descriptor(path: Path, data: bytes, shapes: Shapes, detection: Detection) -> ModelDescriptor:
    card = _card(path)
    return ModelDescriptor(
        name=card.get("name", path.stem),
        arch=detection.spec.name,
        scale=detection.scale,
        in_channels=detection.in_channels,
        out_channels=detection.out_channels,
        sha256=hashlib.sha256(data).hexdigest(),
        source=str(path.absolute()),
        size_bytes=len(data),
        params=sum(math.prod(shape) for shape in shapes.values()),
        license=card.get("license"),
        fp16_safe=card.get("fp16_safe", detection.spec.fp16_safe),
        description=card.get("description"),
        tiling=_tiling(path, detection, card.get("tile_overlap")),
    )


def _tiling(path: Path, detection: Detection, card_overlap: int | None) -> Tiling:
    tiling = detection.tiling()
    if card_overlap is None:
        return tiling
    if card_overlap < 0:
        refuse(path, f"model card: 'tile_overlap' must be 0 or more, not {card_overlap}")
    return dataclasses.replace(tiling, overlap=min(card_overlap, tiling.receptive_field))


def _card(path: Path) -> dict[str, Any]:
    """The known keys of the sibling ``<stem>.toml`` model card, type-checked; {} when absent."""
    card_path = path.with_suffix(".toml")
    try:
        card = tomllib.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        refuse(path, f"unreadable model card {card_path.name} ({one_line(exc)})")
    for key, expected in _CARD_TYPES.items():
        if key in card and type(card[key]) is not expected:
            refuse(path, f"model card {card_path.name}: '{key}' must be a {expected.__name__}")
    return {key: card[key] for key in _CARD_TYPES if key in card}


def one_line(exc: BaseException) -> str:
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return first if len(first) <= 300 else first[:297] + "..."


def refuse(path: Path, reason: str) -> NoReturn:
    raise UnsupportedModelError(f"{path}: {reason}")
