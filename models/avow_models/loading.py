"""Reading weights files that may come from anywhere, without ever running code from them.

A ``.pth`` is a pickle and a pickle is a program, so users who download community models are
one ``torch.load`` away from arbitrary code execution. The rules here are therefore strict:

* the file is read into memory once, so the bytes that are checked, hashed and loaded are the
  same bytes (no swapping the file between the checks and the load);
* ``.safetensors`` headers are validated by hand before safetensors allocates anything;
* pickles only ever reach ``torch.load(..., weights_only=True)``, and TorchScript archives (which
  carry code that ``torch.load`` would hand to the JIT) are refused before torch sees them;
* whatever torch or safetensors raise becomes a one-line ``UnsupportedModelError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import re
import tempfile
import tomllib
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import safetensors.torch
import torch
from torch import Tensor

from .descriptor import LoadedModel, ModelDescriptor, Tiling, UnsupportedModelError
from .registry import Detection, StateDict, detect

MAX_FILE_BYTES = 2 * 1024**3
MAX_TENSORS = 4096
MAX_HEADER_BYTES = 100 * 1024**2

PICKLE_SUFFIXES = (".pth", ".ckpt", ".bin")
TORCHSCRIPT_SUFFIXES = (".pt", ".jit")
# Training checkpoints nest the weights; the EMA copy is what Real-ESRGAN publishes and uses.
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")

_SAFETENSORS_FLOAT_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_CARD_TYPES: dict[str, type] = {
    "name": str,
    "description": str,
    "license": str,
    "fp16_safe": bool,
    "tile_overlap": int,  # a measured overlap for these weights, never beyond the exact field
}


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Build the network stored in ``path``: eval mode, float32, on the CPU, gradients off."""
    path = Path(path)
    data = _read(path)
    state_dict = _state_dict(path, data)
    detection = _detect(path, state_dict)
    # Built on the meta device and then handed the file's tensors, so no random initialisation
    # is computed only to be overwritten.
    with torch.device("meta"):
        module = detection.build()
    weights = {key: tensor.to(torch.float32).contiguous() for key, tensor in state_dict.items()}
    for key, tensor in weights.items():
        if not bool(torch.isfinite(tensor).all()):  # it would only ever yield a black, disclosed picture
            _refuse(path, f"tensor {key!r} holds NaN or infinite values; the weights are damaged")
    try:
        module.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as exc:
        raise UnsupportedModelError(f"{path}: {_one_line(exc)}") from None
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        raise UnsupportedModelError(f"{path}: the weights leave part of {detection.spec.name} uninitialised")
    module.eval().requires_grad_(False)
    return LoadedModel(module=module, descriptor=_descriptor(path, data, state_dict, detection))


def describe_model(path: str | os.PathLike[str]) -> ModelDescriptor:
    """The descriptor ``load_model`` would give, reading only the header of a ``.safetensors``."""
    path = Path(path)
    data = _read(path)
    if path.suffix.lower() == ".safetensors":
        header = _safetensors_header(path, data)
        state_dict = _clean(
            path,
            {
                key: torch.empty(info["shape"], dtype=_SAFETENSORS_FLOAT_DTYPES[info["dtype"]], device="meta")
                for key, info in header.items()
            },
        )
    else:
        state_dict = _state_dict(path, data)
    return _descriptor(path, data, state_dict, _detect(path, state_dict))


def convert_to_safetensors(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> ModelDescriptor:
    """Rewrite a supported model as a flat ``.safetensors``, atomically; ``src`` is never touched."""
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() != ".safetensors":
        raise UnsupportedModelError(f"{dst}: the destination must have the .safetensors extension")
    if dst.resolve() == src.resolve():
        raise UnsupportedModelError(f"{dst}: refusing to overwrite the source file")
    state_dict = _state_dict(src, _read(src))
    _detect(src, state_dict)
    # Cloning drops any storage the tensors shared in the pickle, which safetensors refuses.
    tensors = {key: tensor.clone(memory_format=torch.contiguous_format) for key, tensor in state_dict.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        safetensors.torch.save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return describe_model(dst)


def _read(path: Path) -> bytes:
    suffix = path.suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES:
        _refuse(
            path,
            f"'{suffix}' files are TorchScript, which contains code; convert the weights to .safetensors",
        )
    if suffix != ".safetensors" and suffix not in PICKLE_SUFFIXES:
        _refuse(
            path,
            f"unsupported extension {suffix or '(none)'!r}; use .safetensors, or .pth/.ckpt/.bin state dicts",
        )
    try:
        size = path.stat().st_size
        if not path.is_file():
            _refuse(path, "not a regular file")
        if size > MAX_FILE_BYTES:
            _refuse(path, f"{size} bytes is over the {MAX_FILE_BYTES}-byte limit")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        _refuse(path, exc.strerror or str(exc))
    if not data:
        _refuse(path, "the file is empty")
    if len(data) > MAX_FILE_BYTES:
        _refuse(path, f"over the {MAX_FILE_BYTES}-byte limit")
    return data


def _state_dict(path: Path, data: bytes) -> dict[str, Tensor]:
    if path.suffix.lower() == ".safetensors":
        _safetensors_header(path, data)
        loaded: Any = _guarded(path, lambda: safetensors.torch.load(data))
    else:
        _refuse_torchscript(path, data)
        loaded = _guarded(path, lambda: _torch_load(data))
    return _clean(path, _unwrap(path, loaded))


def _torch_load(data: bytes) -> Any:
    with warnings.catch_warnings():
        # Protocol and deprecation chatter from the unpickler is noise to a user; refusals raise.
        warnings.simplefilter("ignore")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _refuse_torchscript(path: Path, data: bytes) -> None:
    if not data.startswith(b"PK"):
        return
    # A zip that Python cannot read is refused rather than handed to torch's own zip reader,
    # which might see entries that were hidden from this check.
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        _refuse(path, f"damaged zip archive ({exc})")
    for name in names:
        parts = name.split("/")
        if "code" in parts[:-1] or parts[-1] == "constants.pkl":
            _refuse(path, "a TorchScript archive, which contains code; only plain state dicts are accepted")


def _safetensors_header(path: Path, data: bytes) -> dict[str, dict[str, Any]]:
    """The tensor entries of the header, refused unless every one lies inside the file."""
    if len(data) < 8:
        _refuse(path, "too short to be a safetensors file")
    length = int.from_bytes(data[:8], "little")
    if length >= MAX_HEADER_BYTES:
        _refuse(path, f"safetensors header claims {length} bytes (limit {MAX_HEADER_BYTES})")
    if 8 + length > len(data):
        _refuse(path, f"safetensors header claims {length} bytes but the file has {len(data)}")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, ValueError, RecursionError):
        _refuse(path, "safetensors header is not valid JSON")
    if not isinstance(header, dict):
        _refuse(path, "safetensors header is not a JSON object")
    entries = {key: info for key, info in header.items() if key != "__metadata__"}
    if len(entries) > MAX_TENSORS:
        _refuse(path, f"{len(entries)} tensors is over the {MAX_TENSORS}-tensor limit")
    body = len(data) - 8 - length
    for key, info in entries.items():
        problem = _header_entry_problem(info, body)
        if problem:
            _refuse(path, f"safetensors header entry {key!r} {problem}")
    return entries


def _header_entry_problem(info: Any, body: int) -> str | None:
    if not isinstance(info, dict):
        return "is not an object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _SAFETENSORS_FLOAT_DTYPES:
        return f"has dtype {dtype!r}, not a floating-point type"
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        return "has an invalid shape"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)):
        return "has invalid data_offsets"
    begin, end = offsets
    if not 0 <= begin <= end <= body:
        return f"points at bytes {begin}..{end}, outside the {body}-byte data section"
    if end - begin != math.prod(shape) * _SAFETENSORS_FLOAT_DTYPES[dtype].itemsize:
        return f"declares shape {shape} but spans {end - begin} bytes"
    return None


def _unwrap(path: Path, loaded: Any) -> Mapping[Any, Any]:
    for _ in range(len(WRAPPER_KEYS)):
        if not isinstance(loaded, Mapping):
            break
        inner = next((loaded[k] for k in WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if inner is None:
            break
        loaded = inner
    if not isinstance(loaded, Mapping):
        _refuse(path, f"holds a {type(loaded).__name__}, not a state dict")
    return loaded


def _clean(path: Path, state_dict: Mapping[Any, Any]) -> dict[str, Tensor]:
    """String keys without DataParallel's ``module.`` prefix, floating-point dense tensors only."""
    if len(state_dict) > MAX_TENSORS:
        _refuse(path, f"{len(state_dict)} entries is over the {MAX_TENSORS}-tensor limit")
    cleaned: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            _refuse(path, f"state dict key {key!r} is not a string")
        if not isinstance(value, Tensor):
            _refuse(path, f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or not value.is_floating_point():
            _refuse(path, f"tensor {key!r} is {value.dtype} ({value.layout}), not dense floating point")
        name = key.removeprefix("module.")
        if name in cleaned:
            _refuse(path, f"tensor {name!r} appears twice once 'module.' prefixes are removed")
        cleaned[name] = value.detach()
    return cleaned


def _detect(path: Path, state_dict: StateDict) -> Detection:
    try:
        return detect(state_dict)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{path}: {exc}") from None


def _descriptor(path: Path, data: bytes, state_dict: StateDict, detection: Detection) -> ModelDescriptor:
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
        params=sum(t.numel() for t in state_dict.values()),
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
        _refuse(path, f"model card: 'tile_overlap' must be 0 or more, not {card_overlap}")
    return dataclasses.replace(tiling, overlap=min(card_overlap, tiling.receptive_field))


def _card(path: Path) -> dict[str, Any]:
    """The known keys of the sibling ``<stem>.toml`` model card, type-checked; {} when absent."""
    card_path = path.with_suffix(".toml")
    try:
        card = tomllib.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        _refuse(path, f"unreadable model card {card_path.name} ({_one_line(exc)})")
    for key, expected in _CARD_TYPES.items():
        if key in card and type(card[key]) is not expected:
            _refuse(path, f"model card {card_path.name}: '{key}' must be a {expected.__name__}")
    return {key: card[key] for key in _CARD_TYPES if key in card}


def _guarded(path: Path, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - every failure of a foreign file is a refusal
        raise UnsupportedModelError(f"{path}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, pickle.UnpicklingError):
        # torch's message is a page of advice, including retrying with weights_only=False: exactly
        # what must not be done with an untrusted file. Keep only what the unpickler found.
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            return f"refused by the weights-only unpickler: it asks for {found.group(1)}; only plain weights load"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        detail = next((ln for ln in lines if not ln.startswith(_TORCH_ADVICE) and "weights_only" not in ln), "")
        return f"refused by the weights-only unpickler: {detail[:300]}".rstrip(": ")
    return f"unreadable: {_one_line(exc)}"


_TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation", "Re-running", "(1)", "(2)")


def _one_line(exc: BaseException) -> str:
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return first if len(first) <= 300 else first[:297] + "..."


def _refuse(path: Path, reason: str) -> NoReturn:
    raise UnsupportedModelError(f"{path}: {reason}")
