"""SRVGGNetCompact, the compact network of Real-ESRGAN (realesr-general-x4v3, realesr-animevideov3).

Kept layer-for-layer identical to the published definition so that community weights load
unchanged: ``body`` alternates conv and activation, the last conv emits ``out_ch * scale**2``
channels for a pixel shuffle, and the nearest-upsampled input is added as a residual, so the
network only has to learn the detail that nearest-neighbour upsampling misses.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SRVGGNetCompact(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        scale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_feat = num_feat
        self.num_conv = num_conv
        self.scale = scale
        self.act_type = act_type

        self.body = nn.ModuleList([nn.Conv2d(in_channels, num_feat, 3, 1, 1), _activation(act_type, num_feat)])
        for _ in range(num_conv):
            self.body.append(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
            self.body.append(_activation(act_type, num_feat))
        self.body.append(nn.Conv2d(num_feat, out_channels * scale * scale, 3, 1, 1))
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1, inplace=True)
    raise ValueError(f"unknown activation {act_type!r}")
