"""Upscaling networks for Avow: plain ``nn.Module`` architectures recognised from their weights.

Weights are only ever read safely (safetensors, or weights-only unpickling), and every loaded
model comes with a ``ModelDescriptor`` whose ``sha256`` is what Avow discloses about it.
"""

from .catalog import DEFAULT_MODELS, builtin_models, find_model
from .descriptor import (
    LoadedModel,
    ModelDescriptor,
    ModelNotFoundError,
    SizeRequirements,
    Tiling,
    UnsupportedModelError,
)
from .loading import convert_to_safetensors, load_model

__all__ = [
    "DEFAULT_MODELS",
    "LoadedModel",
    "ModelDescriptor",
    "ModelNotFoundError",
    "SizeRequirements",
    "Tiling",
    "UnsupportedModelError",
    "builtin_models",
    "convert_to_safetensors",
    "find_model",
    "load_model",
]
