"""Plain ``nn.Module`` architectures, state-dict compatible with their published weights.

Each network's torch module has a torch-free ``*_layout`` sibling (its tensor layout and tiling),
so that a model is described from its file's header without importing torch.
"""

Shapes = dict[str, tuple[int, ...]]


def conv3x3(name: str, in_channels: int, out_channels: int) -> Shapes:
    """The weight and bias of ``nn.Conv2d(in_channels, out_channels, 3, 1, 1)`` named ``name``."""
    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"{name} would have {in_channels} -> {out_channels} channels")
    return {f"{name}.weight": (out_channels, in_channels, 3, 3), f"{name}.bias": (out_channels,)}
