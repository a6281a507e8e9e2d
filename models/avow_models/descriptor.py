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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LoadedModel:
    """A ready network (eval mode, float32, CPU, frozen) together with what it is."""

    module: nn.Module
    descriptor: ModelDescriptor
