"""Tiling from the model: tiled == untiled for every registered architecture at its real depth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from avow import tiling
from avow_models import SizeRequirements, UnsupportedModelError
from avow_models.archs.rrdb import RRDBNet
from avow_models.loading import describe_model
from avow_models.registry import ARCHITECTURES

# The deepest published shape of each architecture, with random weights: realesr-general-x4v3
# (SRVGGNetCompact, 64 features, 32 body convs) and RealESRGAN_x4plus / _x2plus (23 RRDBs).
REAL_DEPTH = {
    "SRVGGNetCompact": [dict(num_feat=64, num_conv=32, scale=4, act_type="prelu")],
    "RRDBNet": [dict(num_block=23, scale=4), dict(num_block=23, scale=2)],
}
TILE = 48


def architecture(name: str):
    return next(spec for spec in ARCHITECTURES if spec.name == name)


def build(spec, kwargs) -> torch.nn.Module:
    """Kaiming-normal weights, which carry a pixel's influence as far as trained ones do (torch's
    default init shrinks the signal at every conv and would hide seams); then the last conv is
    scaled so the output sits inside [0, 1] like a real picture's (the tiler clamps, and clamped
    pixels would hide differences too)."""
    torch.manual_seed(0)
    model = spec.build(in_channels=3, out_channels=3, **kwargs).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        torch.nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
        torch.nn.init.zeros_(conv.bias)
    residual = spec.name == "SRVGGNetCompact"  # adds the nearest-upsampled input itself
    with torch.inference_mode():
        spread = model(torch.rand(1, 3, 24, 24)).std().item()
        convs[-1].weight *= 0.15 / spread
        convs[-1].bias.fill_(0.0 if residual else 0.5)
    return model


def cases():
    specs = {spec.name: spec for spec in ARCHITECTURES}
    assert specs.keys() == REAL_DEPTH.keys(), "every registered architecture needs its seam case here"
    for name, variants in REAL_DEPTH.items():
        for kwargs in variants:
            yield pytest.param(specs[name], kwargs, id=f"{name}-x{kwargs['scale']}")


def image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(7).random((height, width, 3), dtype=np.float32)


@pytest.mark.parametrize(("spec", "kwargs"), list(cases()))
def test_tiled_equals_untiled_at_real_depth(spec, kwargs):
    model = build(spec, kwargs)
    geometry = spec.tiling(**kwargs)
    scale = kwargs["scale"]
    # Two tiles each way, at most TILE pixels, each with an edge inside the picture: more than
    # twice the overlap. The seam and the corner both exist.
    side = max(TILE + 2, 2 * geometry.overlap + 6)
    picture = image(side, side + 4)
    whole = tiling.upscale(model, picture, scale, 0, geometry)
    tiled = tiling.upscale(model, picture, scale, TILE, geometry)
    assert whole.shape == tiled.shape == (picture.shape[0] * scale, picture.shape[1] * scale, 3)
    difference = float(np.abs(whole - tiled).max())
    inside = float(np.mean((whole > 0) & (whole < 1)))
    print(f"\nseam {spec.name} x{scale}: overlap {geometry.overlap} px (field {geometry.receptive_field}),"
          f" max |tiled - untiled| = {difference:.2e} ({inside:.0%} of values unclamped)")
    assert inside > 0.8
    assert difference <= 1e-4


def test_the_seam_test_can_fail():
    """The old fixed 16 px overlap on realesr-general-x4v3's shape: the seams are there."""
    spec = architecture("SRVGGNetCompact")
    kwargs = REAL_DEPTH["SRVGGNetCompact"][0]
    model = build(spec, kwargs)
    geometry = dataclasses.replace(spec.tiling(**kwargs), overlap=16)
    picture = image(74, 78)
    whole = tiling.upscale(model, picture, 4, 0, geometry)
    assert float(np.abs(whole - tiling.upscale(model, picture, 4, TILE, geometry)).max()) > 1e-3


def test_field_and_size_requirements_come_from_the_architecture():
    srvgg, rrdb = architecture("SRVGGNetCompact"), architecture("RRDBNet")
    assert srvgg.tiling(num_conv=32).receptive_field == srvgg.tiling(num_conv=32).overlap == 34
    x4, x2 = rrdb.tiling(scale=4, num_block=23), rrdb.tiling(scale=2, num_block=23)
    assert (x4.receptive_field, x4.size.multiple_of) == (349, 1)
    assert (x2.receptive_field, x2.size.multiple_of, x2.overlap) == (698, 2, 48)
    assert SizeRequirements(minimum=8, multiple_of=4, square=True).padded(5, 10) == (12, 12)


def test_odd_sizes_reach_architectures_that_unshuffle_their_input():
    spec = architecture("RRDBNet")
    kwargs = dict(num_feat=8, num_block=1, num_grow_ch=4, scale=2)
    torch.manual_seed(4)
    model = spec.build(in_channels=3, out_channels=3, **kwargs).eval()
    picture = image(21, 31)
    geometry = spec.tiling(**kwargs)
    tiled = tiling.upscale(model, picture, 2, 8, geometry)
    whole = tiling.upscale(model, picture, 2, 0, geometry)
    assert tiled.shape == (42, 62, 3) and np.isfinite(tiled).all()
    assert float(np.abs(whole - tiled).max()) <= 1e-4


def test_a_model_card_can_widen_the_overlap_up_to_the_exact_field(tmp_path):
    weights = tmp_path / "m.safetensors"
    save_file(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4).state_dict(), str(weights))
    assert describe_model(weights).tiling.overlap == 24
    (tmp_path / "m.toml").write_text("tile_overlap = 30\n")
    assert describe_model(weights).tiling.overlap == 30
    (tmp_path / "m.toml").write_text("tile_overlap = 500\n")
    assert describe_model(weights).tiling.overlap == describe_model(weights).tiling.receptive_field == 34
    (tmp_path / "m.toml").write_text("tile_overlap = -1\n")
    with pytest.raises(UnsupportedModelError, match="tile_overlap"):
        describe_model(weights)


@pytest.mark.parametrize(("name", "kwargs"), [
    ("SRVGGNetCompact", dict(num_feat=16, num_conv=4, scale=4, act_type="prelu")),
    ("RRDBNet", dict(num_block=2, scale=2)),  # pixel-unshuffles: tiles on its size grid
])
def test_tiles_run_in_batches_give_the_same_output(name, kwargs):
    """What a GPU does (batches of the tiles of a row that share a shape), run on the CPU: the
    same pixels as one tile at a time, and the interior tiles of a row did share batches."""
    spec = architecture(name)
    model, geometry = build(spec, kwargs), spec.tiling(**kwargs)
    picture = image(60, 300)
    one = tiling.upscale(model, picture, kwargs["scale"], 24, geometry, batch=1)
    batched = tiling.upscale(model, picture, kwargs["scale"], 24, geometry, batch=3)
    assert float(np.abs(one - batched).max()) < 1e-5
    columns = tiling._spans(300, 0, 24, geometry)
    groups = tiling._groups(columns, 3)
    assert [tile for group in groups for tile in group] == columns
    assert max(len(group) for group in groups) == 3
    for group in groups:  # one shape a batch: core and context widths, overlap on the left
        assert len({(c.stop - c.start, cc.stop - cc.start, c.start - cc.start) for c, cc in group}) == 1


class RunsOutOfMemory(torch.nn.Module):
    """A model on a GPU too small for batches above ``most`` tiles or tiles above ``side`` pixels:
    it raises what torch raises there."""

    def __init__(self, model: torch.nn.Module, most: int, side: int) -> None:
        super().__init__()
        self.model, self.most, self.side = model, most, side
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.most or max(x.shape[-2:]) > self.side:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        self.batches.append(len(x))
        return self.model(x)


def test_out_of_memory_halves_the_batch_then_the_tile_and_gives_the_same_output():
    spec = architecture("SRVGGNetCompact")
    kwargs = dict(num_feat=16, num_conv=4, scale=2, act_type="prelu")
    model, geometry = build(spec, kwargs), spec.tiling(**kwargs)
    picture = image(40, 300)
    expected = tiling.upscale(model, picture, 2, 24, geometry, batch=1)
    small = RunsOutOfMemory(model, most=2, side=10_000)
    assert float(np.abs(tiling.upscale(small, picture, 2, 24, geometry, batch=8) - expected).max()) < 1e-5
    assert max(small.batches) == 2  # 8 -> 4 -> 2
    tiny = RunsOutOfMemory(model, most=1, side=32 + 2 * geometry.overlap)
    assert float(np.abs(tiling.upscale(tiny, picture, 2, 64, geometry, batch=4) - expected).max()) < 1e-5
    assert set(tiny.batches) == {1}  # the batch went to 1 before the tile was halved to fit


def test_a_non_finite_output_is_refused_before_clamping():
    spec = architecture("SRVGGNetCompact")
    kwargs = dict(num_feat=8, num_conv=2, scale=2)
    model = build(spec, kwargs)
    with torch.no_grad():
        model.body[-1].bias[0] = float("inf")  # clamping would make this a plausible white
    with pytest.raises(UnsupportedModelError, match="NaN or infinite"):
        tiling.upscale(model, image(20, 20), 2, 8, spec.tiling(**kwargs))
