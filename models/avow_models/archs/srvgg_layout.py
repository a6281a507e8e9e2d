"""SRVGGNetCompact's tensor layout and tiling, without torch (the network is in ``srvgg``)."""

from __future__ import annotations

from typing import Any

from ..descriptor import Tiling
from . import Shapes, conv3x3

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


def layout(
    in_channels: int, out_channels: int, num_feat: int, num_conv: int, scale: int, act_type: str
) -> Shapes:
    """Every key and shape of ``SRVGGNetCompact(**kwargs).state_dict()``: convs at the even indices
    of ``body``, each followed by an activation that owns a weight only when it is a PReLU."""
    if act_type not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act_type!r}")
    if num_conv < 0 or scale < 1:
        raise ValueError(f"{num_conv} middle convs at x{scale}")
    convs = [(in_channels, num_feat)] + [(num_feat, num_feat)] * num_conv + [(num_feat, out_channels * scale * scale)]
    shapes: Shapes = {}
    for n, (cin, cout) in enumerate(convs):
        shapes |= conv3x3(f"body.{2 * n}", cin, cout)
        if act_type == "prelu" and n < len(convs) - 1:
            shapes[f"body.{2 * n + 1}.weight"] = (num_feat,)
    return shapes


def tiling(num_conv: int, **_: Any) -> Tiling:
    """Every conv is 3x3 at the input's resolution (num_conv + 2 of them) and the pixel shuffle and
    the nearest-upsampled residual read only the pixel's own input pixel: the field is exact and
    small, so the tiler overlaps by all of it."""
    field = num_conv + 2
    return Tiling(receptive_field=field, overlap=field)
