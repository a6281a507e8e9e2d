"""A re-parameterisable SRVGGNetCompact for training, folded into the plain one for shipping.

ECBSR / RepSR style: while training, every 3x3 convolution has a parallel 1x1 convolution and,
where input and output widths match, an identity branch; all three are linear, so after training
they add up to one 3x3 kernel (the 1x1 kernel in its centre tap, the identity as a centred unit
kernel). The shipped network is therefore a plain ``SRVGGNetCompact`` with the same speed and the
same keys as before, which Avow's registry already recognises; only training sees the branches,
which make a deep plain net easier to optimise.

``widen`` starts a wider or equally wide network from trained plain weights without changing its
output: the old channels keep their kernels, new channels get small random input kernels and zero
output kernels, so training resumes from the old model's quality instead of from scratch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from avow_models.archs.srvgg import SRVGGNetCompact


class RepConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 1)
        self.identity = in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(x) + self.conv1(x)
        return out + x if self.identity else out

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(3x3 weight, bias) of the single convolution equal to the three branches."""
        weight = self.conv3.weight + F.pad(self.conv1.weight, [1, 1, 1, 1])
        if self.identity:
            weight = weight + _unit_kernel(weight)
        return weight, _bias(self.conv3) + _bias(self.conv1)


class RepSRVGG(nn.Module):
    """Training form: ``body`` has the plain net's layout (conv, PReLU, ...), convs as RepConv."""

    def __init__(self, num_feat: int, num_conv: int, scale: int) -> None:
        super().__init__()
        self.num_feat, self.num_conv, self.scale = num_feat, num_conv, scale
        widths = [3] + [num_feat] * (num_conv + 1) + [3 * scale * scale]
        self.body = nn.ModuleList()
        for n, (cin, cout) in enumerate(zip(widths, widths[1:], strict=False)):
            self.body.append(RepConv(cin, cout))
            if n < num_conv + 1:
                self.body.append(nn.PReLU(num_parameters=cout))
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")

    @torch.no_grad()
    def fold(self) -> SRVGGNetCompact:
        plain = SRVGGNetCompact(num_feat=self.num_feat, num_conv=self.num_conv, scale=self.scale)
        for index, layer in enumerate(self.body):
            if isinstance(layer, RepConv):
                weight, bias = layer.folded()
                plain.body[index].weight.copy_(weight)
                plain.body[index].bias.copy_(bias)
            else:
                plain.body[index].weight.copy_(layer.weight)
        return plain.eval()

    @torch.no_grad()
    def widen(self, plain: dict[str, torch.Tensor], generator: torch.Generator) -> None:
        """Become ``plain`` (a trained SRVGGNetCompact state dict, same depth, at most as wide)."""
        for index, layer in enumerate(self.body):
            if isinstance(layer, nn.PReLU):
                layer.weight.fill_(0.25)
                old = plain[f"body.{index}.weight"]
                layer.weight[: old.shape[0]] = old
                continue
            assert isinstance(layer, RepConv)
            old_w, old_b = plain[f"body.{index}.weight"], plain[f"body.{index}.bias"]
            weight = layer.conv3.weight
            cin = weight.shape[1]
            # New output channels: small random kernels (they start contributing through their
            # zero-initialised outgoing kernels as soon as training moves them).
            weight.copy_(torch.randn(weight.shape, generator=generator) * 0.1 * (2 / (9 * cin)) ** 0.5)
            weight[: old_w.shape[0], old_w.shape[1] :] = 0  # new inputs leave the old outputs be
            weight[: old_w.shape[0], : old_w.shape[1]] = old_w
            bias = _bias(layer.conv3)
            bias.zero_()
            bias[: old_b.shape[0]] = old_b
            if layer.identity:
                weight -= _unit_kernel(weight)
            layer.conv1.weight.zero_()
            _bias(layer.conv1).zero_()


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    assert conv.bias is not None
    return conv.bias


def _unit_kernel(weight: torch.Tensor) -> torch.Tensor:
    unit = torch.zeros_like(weight)
    channels = torch.arange(weight.shape[0])
    unit[channels, channels, 1, 1] = 1
    return unit
