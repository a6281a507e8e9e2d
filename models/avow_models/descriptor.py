"""The facts about a model that Avow discloses and reasons about, and the errors it raises.

A descriptor is deliberately plain data: the engine records it in the C2PA manifest, so the
``sha256`` of the weights file is what ties an upscaled image to the exact network that made it,
and the CLI lists it without having to build a network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from avow_c2pa.errors import EXIT_USAGE

if TYPE_CHECKING:
    from torch import nn


class UnsupportedModelError(ValueError):
    """A weights file was refused; the message names the file and says why, on one line.

    A ValueError, so callers that must not import torch (the CLI's error handling) can catch it."""

    exit_code = EXIT_USAGE  # the file given is wrong, not the work


class ModelNotFoundError(LookupError):
    """A model name or path resolved to no file; the message lists the names that do exist."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class SizeRequirements:
    """What input sizes a network accepts (as spandrel's): an input is padded up to meet them.

    ``multiple_of`` is also the grid tiles must start on: an architecture that pixel-unshuffles
    its input groups pixels in ``multiple_of`` squares, and a tile cut off that grid would group
    them differently from the whole image."""

    minimum: int = 1
    multiple_of: int = 1
    square: bool = False

    def padded(self, height: int, width: int) -> tuple[int, int]:
        """The smallest (height, width) at least as large that the network accepts."""
        height, width = max(height, self.minimum), max(width, self.minimum)
        if self.square:
            height = width = max(height, width)
        return height + -height % self.multiple_of, width + -width % self.multiple_of


@dataclass(frozen=True)
class Tiling:
    """How far an output pixel looks, which is what a tiler needs to cut the input without seams.

    ``receptive_field`` is exact: input pixels on each side of an output pixel's own that can change
    it. ``overlap`` is the context the tiler gives each tile: the receptive field where that is
    affordable, else a measured bound beyond which the influence is below 1e-4 (RRDBNet)."""

    receptive_field: int
    overlap: int
    size: SizeRequirements = SizeRequirements()


@dataclass(frozen=True)
class ModelDescriptor:
    name: str
    arch: str
    scale: int
    in_channels: int
    out_channels: int
    sha256: str
    source: str
    size_bytes: int
    params: int
    license: str | None
    fp16_safe: bool
    description: str | None
    tiling: Tiling

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LoadedModel:
    """A ready network (eval mode, float32, CPU, frozen) together with what it is."""

    module: nn.Module
    descriptor: ModelDescriptor
