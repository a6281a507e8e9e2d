"""Choosing where and in which precision the model runs.

CUDA when present, in half precision only where the model is known to survive it (fp16 overflows
in some architectures; bf16 has the range but less precision), CPU in float32 otherwise.
"""

from __future__ import annotations

import torch

from .errors import DeviceUnavailable

DEVICES = ("auto", "cpu", "cuda")


def pick_device(requested: str) -> torch.device:
    if requested not in DEVICES:
        raise DeviceUnavailable(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda was asked for, but this torch build sees no CUDA GPU")
    return torch.device("cuda")


def inference_dtype(device: torch.device, fp16_safe: bool) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    if fp16_safe:
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32


def describe() -> dict:
    """What this machine offers, for `avow worker`'s describe and `avow doctor`-style reports."""
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }
