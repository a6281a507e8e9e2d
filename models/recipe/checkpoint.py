"""A training run's whole state as one safetensors file: nothing a later session reads is a pickle.

The state (weights, EMA, Adam's moments, the scheduler, the random generators, counters) is a tree
of dicts, lists, tensors and plain values. Its tensors go into the file under their path in the
tree; the rest of the tree is JSON in the file's metadata, with each tensor replaced by its path.
Dict keys keep their type (Adam's per-parameter state is keyed by integers), tuples come back as
lists, which every ``load_state_dict`` here accepts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

_TREE = "avow.recipe.state"


def save_state(state: dict, path: Path) -> None:
    """Written beside ``path`` and moved onto it, so a kill mid-write leaves the previous state."""
    tensors: dict[str, torch.Tensor] = {}
    tree = json.dumps(_pack(state, tensors, "state"))
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={_TREE: tree})
    os.chmod(partial, 0o644)  # committed with the run, as its weights are
    os.replace(partial, path)


def load_state(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if _TREE not in metadata:
            raise ValueError(f"{path} is not a training state written by the recipe")
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    return _unpack(json.loads(metadata[_TREE]), tensors)


def _pack(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous().clone()  # no shared storage: safetensors refuses it
        return {"tensor": path}
    if isinstance(value, dict):
        return {"dict": [[key, _pack(item, tensors, f"{path}.{key}")] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_pack(item, tensors, f"{path}.{index}") for index, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{path}: {type(value).__name__} cannot be kept in a training state")


def _unpack(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_unpack(item, tensors) for item in value]
    if isinstance(value, dict):
        if "tensor" in value:
            return tensors[value["tensor"]]
        return {key: _unpack(item, tensors) for key, item in value["dict"]}
    return value
