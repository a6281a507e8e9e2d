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

import io
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from .describe import (
    describe_model,
    descriptor,
    detect_in,
    named_tensors,
    one_line,
    read_weights,
    refuse,
    safetensors_header,
    shapes_of,
)
from .descriptor import LoadedModel, ModelDescriptor, UnsupportedModelError

# Training checkpoints nest the weights; the EMA copy is what Real-ESRGAN publishes and uses.
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Build the network stored in ``path``: eval mode, float32, on the CPU, gradients off."""
    path = Path(path)
    data = read_weights(path)
    state_dict = read_state_dict(path, data)
    shapes = shapes_of(state_dict)
    detection = detect_in(path, shapes)
    # Built on the meta device and then handed the file's tensors, so no random initialisation
    # is computed only to be overwritten.
    with torch.device("meta"):
        module = detection.build()
    weights = {key: tensor.to(torch.float32).contiguous() for key, tensor in state_dict.items()}
    for key, tensor in weights.items():
        if not bool(torch.isfinite(tensor).all()):  # it would only ever yield a black, disclosed picture
            refuse(path, f"tensor {key!r} holds NaN or infinite values; the weights are damaged")
    try:
        module.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as exc:
        raise UnsupportedModelError(f"{path}: {one_line(exc)}") from None
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        raise UnsupportedModelError(f"{path}: the weights leave part of {detection.spec.name} uninitialised")
    module.eval().requires_grad_(False)
    return LoadedModel(module=module, descriptor=descriptor(path, data, shapes, detection))


def convert_to_safetensors(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> ModelDescriptor:
    """Rewrite a supported model as a flat ``.safetensors``, atomically; ``src`` is never touched."""
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() != ".safetensors":
        raise UnsupportedModelError(f"{dst}: the destination must have the .safetensors extension")
    if dst.resolve() == src.resolve():
        raise UnsupportedModelError(f"{dst}: refusing to overwrite the source file")
    state_dict = read_state_dict(src, read_weights(src))
    detect_in(src, shapes_of(state_dict))
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


def read_state_dict(path: Path, data: bytes) -> dict[str, Tensor]:
    """The tensors of a file already read by ``read_weights``, keys cleaned, every one checked."""
    if path.suffix.lower() == ".safetensors":
        safetensors_header(path, data)
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
        refuse(path, f"damaged zip archive ({exc})")
    for name in names:
        parts = name.split("/")
        if "code" in parts[:-1] or parts[-1] == "constants.pkl":
            refuse(path, "a TorchScript archive, which contains code; only plain state dicts are accepted")


def _unwrap(path: Path, loaded: Any) -> Mapping[Any, Any]:
    for _ in range(len(WRAPPER_KEYS)):
        if not isinstance(loaded, Mapping):
            break
        inner = next((loaded[k] for k in WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if inner is None:
            break
        loaded = inner
    if not isinstance(loaded, Mapping):
        refuse(path, f"holds a {type(loaded).__name__}, not a state dict")
    return loaded


def _clean(path: Path, state_dict: Mapping[Any, Any]) -> dict[str, Tensor]:
    """Named as ``named_tensors`` says, floating-point dense tensors only."""
    cleaned: dict[str, Tensor] = {}
    for key, value in named_tensors(path, state_dict).items():
        if not isinstance(value, Tensor):
            refuse(path, f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or not value.is_floating_point():
            refuse(path, f"tensor {key!r} is {value.dtype} ({value.layout}), not dense floating point")
        cleaned[key] = value.detach()
    return cleaned


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
    return f"unreadable: {one_line(exc)}"


_TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation", "Re-running", "(1)", "(2)")
