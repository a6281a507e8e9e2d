"""Upscaling networks for Avow: plain ``nn.Module`` architectures recognised from their weights.

Weights are only ever read safely (safetensors, or weights-only unpickling), and every loaded
model comes with a ``ModelDescriptor`` whose ``sha256`` is what Avow discloses about it.
"""

from typing import TYPE_CHECKING, Any

from .catalog import DEFAULT_MODELS, builtin_models, find_model, user_model_files
from .describe import PICKLE_SUFFIXES, describe_model, describe_unchecked
from .descriptor import (
    LoadedModel,
    ModelDescriptor,
    ModelNotFoundError,
    SizeRequirements,
    Tiling,
    UnsupportedModelError,
)

if TYPE_CHECKING:
    from .loading import convert_to_safetensors, load_model


def __getattr__(name: str) -> Any:
    """Loading needs torch; resolving a model name does not, so the CLI can refuse a wrong
    ``--model`` before spending seconds importing torch."""
    if name in ("convert_to_safetensors", "load_model"):
        from . import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODELS",
    "LoadedModel",
    "ModelDescriptor",
    "ModelNotFoundError",
    "SizeRequirements",
    "Tiling",
    "UnsupportedModelError",
    "PICKLE_SUFFIXES",
    "builtin_models",
    "convert_to_safetensors",
    "describe_model",
    "describe_unchecked",
    "find_model",
    "load_model",
    "user_model_files",
]
