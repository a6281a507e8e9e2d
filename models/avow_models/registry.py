"""Which architecture a state dict belongs to, told from its tensor names and shapes alone.

Weights files carry no reliable metadata, so (as spandrel does) every hyperparameter is read
back from the shapes. Each detector only proposes constructor arguments; the proposal is then
checked against the architecture's full layout (every key and shape its network's state dict
has), so a detector can stay short and a file that merely resembles an architecture is still
refused. Shapes are plain tuples and the layouts are computed without torch, so the same check
serves the loader and the torch-free description (``avow models list``, the worker's describe).

Adding an architecture is a network module under ``archs/`` with its torch-free ``*_layout``
sibling (layout and ``tiling``) plus one ``ArchSpec`` line below; the detector's kwargs must
include ``in_channels``, ``out_channels`` and ``scale``.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .archs import rrdb_layout, srvgg_layout
from .archs.rrdb_layout import UNSHUFFLE
from .descriptor import Tiling, UnsupportedModelError

if TYPE_CHECKING:
    from torch import nn

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class ArchSpec:
    name: str
    detect: Callable[[Shapes], dict[str, Any] | None]
    network: str  # "module:Class" under archs/, imported only to build, so describing needs no torch
    layout: Callable[..., dict[str, tuple[int, ...]]]  # from the detected kwargs: every key and shape
    fp16_safe: bool
    tiling: Callable[..., Tiling]  # from the detected kwargs: receptive field, overlap, sizes

    def build(self, **kwargs: Any) -> nn.Module:
        module, _, cls = self.network.partition(":")
        network: Callable[..., nn.Module] = getattr(importlib.import_module(f"{__package__}.archs.{module}"), cls)
        return network(**kwargs)


@dataclass(frozen=True)
class Detection:
    spec: ArchSpec
    kwargs: dict[str, Any]

    @property
    def scale(self) -> int:
        return int(self.kwargs["scale"])

    @property
    def in_channels(self) -> int:
        return int(self.kwargs["in_channels"])

    @property
    def out_channels(self) -> int:
        return int(self.kwargs["out_channels"])

    def build(self) -> nn.Module:
        return self.spec.build(**self.kwargs)

    def tiling(self) -> Tiling:
        return self.spec.tiling(**self.kwargs)


def _indices(state_dict: Shapes, pattern: str) -> list[int]:
    """The indices where ``pattern`` has ``{i}``, spelled exactly as ``nn.ModuleList`` spells them.

    Only canonical spellings count ("7", never "07" or a non-ASCII digit), so that an index always
    maps back to its key; anything else is left for the layout check to reject as unexpected.
    """
    regex = re.compile(re.escape(pattern).replace(r"\{i\}", "(0|[1-9][0-9]{0,8})"))
    return sorted(int(m[1]) for key in state_dict if (m := regex.fullmatch(key)))


def _conv(state_dict: Shapes, key: str) -> tuple[int, int] | None:
    """(out, in) channels of a 3×3 conv weight, or None when the key is not one."""
    shape = state_dict.get(key)
    if shape is None or len(shape) != 4 or shape[2:] != (3, 3):
        return None
    out_ch, in_ch = shape[0], shape[1]
    return (out_ch, in_ch) if out_ch > 0 and in_ch > 0 else None


def _detect_srvgg(state_dict: Shapes) -> dict[str, Any] | None:
    # Convs sit at the even indices of ``body``; the activations between them only own a
    # parameter when they are PReLU, so the conv indices are what count the layers.
    convs = [i for i in _indices(state_dict, "body.{i}.weight") if len(state_dict[f"body.{i}.weight"]) == 4]
    if len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)):
        return None
    first, last = _conv(state_dict, "body.0.weight"), _conv(state_dict, f"body.{convs[-1]}.weight")
    if first is None or last is None:
        return None
    num_feat, in_channels = first
    # The residual adds the upsampled input to the output, so both have the same channels.
    squared, remainder = divmod(last[0], in_channels)
    scale = math.isqrt(squared)
    if remainder or scale < 1 or scale * scale != squared:
        return None
    # ReLU and LeakyReLU leave no trace in the weights; ReLU is the common choice.
    act_type = "prelu" if "body.1.weight" in state_dict else "relu"
    return {
        "in_channels": in_channels,
        "out_channels": in_channels,
        "num_feat": num_feat,
        "num_conv": len(convs) - 2,
        "scale": scale,
        "act_type": act_type,
    }


def _detect_rrdb(state_dict: Shapes) -> dict[str, Any] | None:
    first, last = _conv(state_dict, "conv_first.weight"), _conv(state_dict, "conv_last.weight")
    grow = _conv(state_dict, "body.0.rdb1.conv1.weight")
    blocks = _indices(state_dict, "body.{i}.rdb1.conv1.weight")
    if first is None or last is None or grow is None or blocks != list(range(len(blocks))):
        return None
    num_feat, first_in = first
    out_channels = last[0]
    # The unshuffled input has in_channels × factor² channels. The input is assumed to have as
    # many channels as the output, which is what tells the ×2/×1 variants from a wide ×4 input.
    scale = next((s for s, f in UNSHUFFLE.items() if f > 1 and first_in == out_channels * f * f), 4)
    return {
        "in_channels": first_in // UNSHUFFLE[scale] ** 2,
        "out_channels": out_channels,
        "scale": scale,
        "num_feat": num_feat,
        "num_block": len(blocks),
        "num_grow_ch": grow[0],
    }


ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec("SRVGGNetCompact", _detect_srvgg, "srvgg:SRVGGNetCompact", srvgg_layout.layout, fp16_safe=True,
             tiling=srvgg_layout.tiling),
    ArchSpec("RRDBNet", _detect_rrdb, "rrdb:RRDBNet", rrdb_layout.layout, fp16_safe=True, tiling=rrdb_layout.tiling),
)


def detect(state_dict: Shapes) -> Detection:
    """The architecture whose full key/shape layout ``state_dict`` (key -> shape) matches exactly.

    Raises UnsupportedModelError (without a file name; the caller adds it) when none does.
    """
    near_misses = []
    for spec in ARCHITECTURES:
        kwargs = spec.detect(state_dict)
        if kwargs is None:
            continue
        detection = Detection(spec, kwargs)
        mismatch = _mismatch(detection, state_dict)
        if mismatch is None:
            return detection
        near_misses.append(f"looks like {spec.name} but {mismatch}")
    if near_misses:
        raise UnsupportedModelError("; ".join(near_misses))
    names = ", ".join(spec.name for spec in ARCHITECTURES)
    raise UnsupportedModelError(f"tensor names and shapes fit no supported architecture ({names})")


def _mismatch(detection: Detection, state_dict: Shapes) -> str | None:
    try:
        expected = detection.spec.layout(**detection.kwargs)
    except ValueError as exc:
        return f"its shapes give impossible hyperparameters ({exc})"
    for label, keys in (
        ("is missing", expected.keys() - state_dict.keys()),
        ("has unexpected", state_dict.keys() - expected.keys()),
    ):
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            return f"{label} tensor {min(keys)}{more}"
    for key, shape in expected.items():
        if tuple(state_dict[key]) != shape:
            return f"{key} has shape {list(state_dict[key])}, expected {list(shape)}"
    return None
