"""RRDBNet's tensor layout and tiling, without torch (the network is in ``rrdb``)."""

from __future__ import annotations

from typing import Any

from ..descriptor import SizeRequirements, Tiling
from . import Shapes, conv3x3

#: Pixel-unshuffle factor applied to the input, per output scale.
UNSHUFFLE = {1: 4, 2: 2, 4: 1}
#: Context per tile side, in unshuffled pixels. The exact field of 23 blocks (349 of them) would
#: make every tile mostly overlap, but the 0.2 residual scalings (twice per block) damp what
#: travels sideways: at 23 blocks with variance-preserving (Kaiming, unscaled) random weights,
#: changing the input beyond 16 of them moves the output by at most 4e-6 of its spread, which is
#: float noise; 24 leaves a margin. A model card's ``tile_overlap`` overrides it for weights
#: measured to reach further.
MEASURED_OVERLAP = 24


def layout(
    in_channels: int, out_channels: int, scale: int, num_feat: int, num_block: int, num_grow_ch: int
) -> Shapes:
    """Every key and shape of ``RRDBNet(**kwargs).state_dict()``."""
    if scale not in UNSHUFFLE:
        raise ValueError(f"RRDBNet supports scales {sorted(UNSHUFFLE)}, not {scale}")
    shapes = conv3x3("conv_first", in_channels * UNSHUFFLE[scale] ** 2, num_feat)
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                out = num_grow_ch if conv < 5 else num_feat
                shapes |= conv3x3(f"body.{block}.rdb{rdb}.conv{conv}", num_feat + (conv - 1) * num_grow_ch, out)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes |= conv3x3(name, num_feat, num_feat)
    return shapes | conv3x3("conv_last", num_feat, out_channels)


def tiling(scale: int, num_block: int, **_: Any) -> Tiling:
    """The exact field, the measured overlap, and the unshuffle's grid as the size requirement.

    In unshuffled pixels: conv_first, five chained convs per dense block (three per RRDB),
    conv_body, then the x4 tail (conv_up1 at x2, conv_up2/conv_hr/conv_last at x4) adds 1.25."""
    factor = UNSHUFFLE[scale]
    field = (15 * num_block + 4) * factor
    overlap = min(field, MEASURED_OVERLAP * factor)
    return Tiling(receptive_field=field, overlap=overlap, size=SizeRequirements(multiple_of=factor))
