"""Architectures, detection, loading, conversion and lookup of avow_models.

The state dicts here are generated from the *published* key/shape layouts written out by hand,
and the outputs are compared with a forward pass written directly in torch.nn.functional from
the Real-ESRGAN/BasicSR definitions, so a loaded model is shown to be the published network and
not merely consistent with our own classes.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch.nn import functional as F

import avow_models
from avow_models import (
    DEFAULT_MODELS,
    LoadedModel,
    ModelDescriptor,
    ModelNotFoundError,
    UnsupportedModelError,
    builtin_models,
    convert_to_safetensors,
    find_model,
    load_model,
)
from avow_models.archs.rrdb import RRDBNet
from avow_models.archs.srvgg import SRVGGNetCompact
from avow_models.registry import ARCHITECTURES, detect

# --- published layouts, written out independently of the arch classes -------------------------


def srvgg_shapes(
    in_ch: int, feat: int, num_conv: int, scale: int, prelu: bool = True
) -> dict[str, tuple[int, ...]]:
    """Real-ESRGAN's srvgg_arch: body = conv, act, (conv, act) × num_conv, conv to in_ch·scale²."""
    convs = [(in_ch, feat)] + [(feat, feat)] * num_conv + [(feat, in_ch * scale * scale)]
    shapes: dict[str, tuple[int, ...]] = {}
    for n, (cin, cout) in enumerate(convs):
        shapes[f"body.{2 * n}.weight"] = (cout, cin, 3, 3)
        shapes[f"body.{2 * n}.bias"] = (cout,)
        if prelu and n < len(convs) - 1:
            shapes[f"body.{2 * n + 1}.weight"] = (feat,)
    return shapes


def rrdb_shapes(
    in_ch: int, out_ch: int, scale: int, feat: int, blocks: int, grow: int
) -> dict[str, tuple[int, ...]]:
    """BasicSR's rrdbnet_arch, with x2/x1 reading pixel-unshuffled input (×4 / ×16 channels)."""
    unshuffled = in_ch * {4: 1, 2: 4, 1: 16}[scale]
    convs = {"conv_first": (unshuffled, feat)}
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                convs[f"body.{b}.rdb{r}.conv{c}"] = (feat + (c - 1) * grow, grow if c < 5 else feat)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        convs[name] = (feat, feat)
    convs["conv_last"] = (feat, out_ch)
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (cin, cout) in convs.items():
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"{name}.bias"] = (cout,)
    return shapes


def random_weights(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for key, shape in shapes.items():
        if len(shape) == 4:  # conv: fan-in scaled so 70 stacked convs stay well-conditioned
            weights[key] = torch.randn(shape, generator=g) / math.sqrt(shape[1] * 9)
        elif key.endswith(".bias"):
            weights[key] = torch.randn(shape, generator=g) * 0.01
        else:  # PReLU slopes around PyTorch's 0.25 default
            weights[key] = 0.25 + 0.1 * torch.randn(shape, generator=g)
    return weights


# --- reference forward passes, straight from the published definitions -----------------------


def reference_srvgg(sd: dict[str, torch.Tensor], x: torch.Tensor, scale: int) -> torch.Tensor:
    conv_ids = sorted(int(k.split(".")[1]) for k, v in sd.items() if v.ndim == 4)
    out = x
    for i in conv_ids:
        out = F.conv2d(out, sd[f"body.{i}.weight"], sd[f"body.{i}.bias"], padding=1)
        if i != conv_ids[-1]:
            slope = sd.get(f"body.{i + 1}.weight")
            out = F.prelu(out, slope) if slope is not None else F.relu(out)
    return F.pixel_shuffle(out, scale) + F.interpolate(x, scale_factor=scale, mode="nearest")


def basicsr_pixel_unshuffle(x: torch.Tensor, s: int) -> torch.Tensor:
    b, c, hh, hw = x.shape
    return (
        x.view(b, c, hh // s, s, hw // s, s).permute(0, 1, 3, 5, 2, 4).reshape(b, c * s * s, hh // s, hw // s)
    )


def reference_rrdb(sd: dict[str, torch.Tensor], x: torch.Tensor, scale: int, blocks: int) -> torch.Tensor:
    def conv(name: str, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(t, 0.2)

    if scale == 2:
        x = basicsr_pixel_unshuffle(x, 2)
    elif scale == 1:
        x = basicsr_pixel_unshuffle(x, 4)
    feat = conv("conv_first", x)
    trunk = feat
    for b in range(blocks):
        block_in = trunk
        for r in (1, 2, 3):
            dense = [trunk]
            for c in range(1, 5):
                dense.append(lrelu(conv(f"body.{b}.rdb{r}.conv{c}", torch.cat(dense, 1))))
            trunk = conv(f"body.{b}.rdb{r}.conv5", torch.cat(dense, 1)) * 0.2 + dense[0]
        trunk = trunk * 0.2 + block_in
    feat = feat + conv("conv_body", trunk)
    feat = lrelu(conv("conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(conv("conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


def save(sd: dict[str, torch.Tensor], path: Path, wrapper: str | None = None, prefix: str = "") -> Path:
    sd = {prefix + k: v for k, v in sd.items()}
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(sd, path)
    else:
        torch.save({wrapper: sd, "iter": 5000} if wrapper else sd, path)
    return path


# --- detection from shapes alone --------------------------------------------------------------

RRDB, SRVGG = "RRDBNet", "SRVGGNetCompact"
DETECTION_CASES = [
    # arch, shapes, expected constructor arguments (a subset)
    pytest.param(
        RRDB,
        rrdb_shapes(3, 3, 4, 64, 23, 32),
        {"scale": 4, "num_block": 23, "num_feat": 64, "num_grow_ch": 32},
        id="RealESRGAN_x4plus",
    ),
    pytest.param(RRDB, rrdb_shapes(3, 3, 4, 64, 6, 32), {"scale": 4, "num_block": 6}, id="x4plus_anime_6B"),
    pytest.param(
        RRDB, rrdb_shapes(3, 3, 2, 64, 23, 32), {"scale": 2, "in_channels": 3}, id="RealESRGAN_x2plus"
    ),
    pytest.param(RRDB, rrdb_shapes(3, 3, 1, 64, 23, 32), {"scale": 1, "in_channels": 3}, id="rrdb-x1"),
    pytest.param(
        RRDB,
        rrdb_shapes(1, 1, 2, 32, 3, 16),
        {"scale": 2, "in_channels": 1, "out_channels": 1, "num_grow_ch": 16},
        id="rrdb-gray-x2",
    ),
    pytest.param(
        SRVGG,
        srvgg_shapes(3, 64, 32, 4),
        {"scale": 4, "num_conv": 32, "num_feat": 64, "act_type": "prelu"},
        id="realesr-general-x4v3",
    ),
    pytest.param(
        SRVGG,
        srvgg_shapes(3, 64, 16, 4),
        {"scale": 4, "num_conv": 16, "num_feat": 64, "act_type": "prelu"},
        id="realesr-animevideov3",
    ),
    pytest.param(
        SRVGG,
        srvgg_shapes(3, 24, 5, 3, prelu=False),
        {"scale": 3, "num_conv": 5, "act_type": "relu"},
        id="srvgg-relu-x3",
    ),
]


@pytest.mark.parametrize(("arch", "shapes", "expected"), DETECTION_CASES)
def test_detects_published_layouts_from_shapes(arch, shapes, expected):
    found = detect(shapes)
    assert found.spec.name == arch
    assert {k: found.kwargs[k] for k in expected} == expected
    assert (found.scale, found.in_channels, found.out_channels) == tuple(
        found.kwargs[k] for k in ("scale", "in_channels", "out_channels")
    )


LAYOUT_CASES = [
    ("SRVGGNetCompact", {"in_channels": 3, "out_channels": 3, "num_feat": 8, "num_conv": 3, "scale": 4, "act_type": "prelu"}),
    ("SRVGGNetCompact", {"in_channels": 1, "out_channels": 4, "num_feat": 5, "num_conv": 0, "scale": 1, "act_type": "relu"}),
    ("SRVGGNetCompact", {"in_channels": 4, "out_channels": 2, "num_feat": 6, "num_conv": 2, "scale": 3,
                         "act_type": "leakyrelu"}),
    *(("RRDBNet", {"in_channels": c, "out_channels": 3, "scale": s, "num_feat": 8, "num_block": 2, "num_grow_ch": 4})
      for c, s in ((3, 4), (1, 2), (4, 1))),
]


@pytest.mark.parametrize(("arch", "kwargs"), LAYOUT_CASES)
def test_torch_free_layouts_are_the_networks_state_dicts(arch, kwargs):
    """Describing checks a file against the layout, not the network: the two must never drift."""
    spec = next(s for s in ARCHITECTURES if s.name == arch)
    with torch.device("meta"):
        built = spec.build(**kwargs).state_dict()
    assert spec.layout(**kwargs) == {key: tuple(tensor.shape) for key, tensor in built.items()}


def test_one_missing_tensor_is_not_a_match():
    shapes = rrdb_shapes(3, 3, 4, 16, 2, 8)
    del shapes["body.1.rdb3.conv5.bias"]
    with pytest.raises(UnsupportedModelError, match=r"RRDBNet.*body\.1\.rdb3\.conv5\.bias"):
        detect(shapes)


# --- loading reproduces the published forward pass --------------------------------------------

SAFETENSORS = ("m.safetensors", None, "")
REFERENCE_CASES = [
    # shapes, scale, RRDB blocks (None: SRVGG), (file name, wrapper key, key prefix)
    pytest.param(srvgg_shapes(3, 64, 32, 4), 4, None, SAFETENSORS, id="general-x4v3"),
    pytest.param(srvgg_shapes(3, 64, 16, 4), 4, None, ("m.pth", "params", ""), id="animevideov3"),
    pytest.param(srvgg_shapes(3, 16, 4, 2), 2, None, ("m.pth", None, "module."), id="srvgg-small-x2"),
    pytest.param(srvgg_shapes(3, 8, 2, 3, prelu=False), 3, None, SAFETENSORS, id="srvgg-relu-x3"),
    pytest.param(rrdb_shapes(3, 3, 4, 64, 23, 32), 4, 23, SAFETENSORS, id="RealESRGAN_x4plus"),
    pytest.param(rrdb_shapes(3, 3, 4, 16, 2, 8), 4, 2, ("m.pth", "params_ema", ""), id="rrdb-x4-small"),
    pytest.param(rrdb_shapes(3, 3, 2, 16, 2, 8), 2, 2, ("m.ckpt", "state_dict", "module."), id="rrdb-x2"),
    pytest.param(rrdb_shapes(3, 3, 1, 16, 1, 8), 1, 1, ("m.bin", "model", ""), id="rrdb-x1"),
]


@pytest.mark.parametrize(("shapes", "scale", "blocks", "fmt"), REFERENCE_CASES)
def test_loaded_model_matches_reference_forward(tmp_path, shapes, scale, blocks, fmt):
    sd = random_weights(shapes)
    loaded = load_model(save(sd, tmp_path / fmt[0], fmt[1], fmt[2]))
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = loaded.module(x)
    expected = reference_rrdb(sd, x, scale, blocks) if blocks else reference_srvgg(sd, x, scale)
    assert got.shape == (1, 3, 8 * scale, 8 * scale)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert loaded.descriptor.scale == scale
    assert loaded.descriptor.params == sum(t.numel() for t in sd.values())


# --- round trip through every format is bit-exact ---------------------------------------------

ROUNDTRIP_CASES = [
    pytest.param(
        lambda: SRVGGNetCompact(3, 3, 64, 16, 4, "prelu"), {"num_feat": 64, "num_conv": 16}, id="srvgg-x4"
    ),
    pytest.param(
        lambda: SRVGGNetCompact(3, 3, 16, 4, 2, "prelu"), {"num_feat": 16, "num_conv": 4}, id="srvgg-x2"
    ),
    pytest.param(lambda: RRDBNet(3, 3, 4, 16, 2, 8), {"num_block": 2, "num_grow_ch": 8}, id="rrdb-x4"),
    pytest.param(lambda: RRDBNet(3, 3, 2, 16, 2, 8), {"num_block": 2, "num_feat": 16}, id="rrdb-x2"),
    pytest.param(lambda: RRDBNet(3, 3, 1, 8, 1, 4), {"num_block": 1, "num_feat": 8}, id="rrdb-x1"),
]
FORMATS = [
    pytest.param(SAFETENSORS, id="safetensors"),
    pytest.param(("m.pth", "params_ema", ""), id="pth-params_ema"),
    pytest.param(("m.pth", None, "module."), id="pth-module-prefix"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("make", "hparams"), ROUNDTRIP_CASES)
def test_roundtrip_is_bit_exact(tmp_path, make, hparams, fmt):
    torch.manual_seed(0)
    original = make().eval()
    loaded = load_model(save(original.state_dict(), tmp_path / fmt[0], fmt[1], fmt[2]))
    module, desc = loaded.module, loaded.descriptor

    assert isinstance(loaded, LoadedModel) and isinstance(desc, ModelDescriptor)
    assert type(module) is type(original)
    assert {k: getattr(module, k) for k in hparams} == hparams
    assert (desc.scale, desc.in_channels, desc.out_channels) == (original.scale, 3, 3)
    assert desc.arch == type(original).__name__
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(module(x), original(x))


def test_loaded_module_is_frozen_float32_cpu_eval(tmp_path):
    sd = {k: v.half() for k, v in random_weights(srvgg_shapes(3, 8, 2, 2)).items()}
    loaded = load_model(save(sd, tmp_path / "half.safetensors"))
    params = list(loaded.module.parameters())
    assert params and all(
        p.dtype == torch.float32 and p.device.type == "cpu" and not p.requires_grad for p in params
    )
    assert not loaded.module.training
    # the half-precision values arrive unchanged, merely widened
    assert torch.equal(loaded.module.state_dict()["body.0.weight"], sd["body.0.weight"].float())


# --- descriptors and model cards --------------------------------------------------------------


def test_descriptor_describes_the_file(tmp_path):
    path = save(random_weights(srvgg_shapes(3, 16, 4, 2)), tmp_path / "plain-x2.safetensors")
    desc = load_model(path).descriptor
    data = path.read_bytes()
    assert desc.name == "plain-x2"
    assert desc.sha256 == hashlib.sha256(data).hexdigest()
    assert desc.size_bytes == len(data)
    assert Path(desc.source) == path.absolute()
    assert desc.license is None and desc.description is None
    assert desc.fp16_safe is True
    assert desc.params == 3 * 16 * 9 + 16 + 16 + 4 * (16 * 16 * 9 + 16 + 16) + 16 * 12 * 9 + 12
    assert desc.to_dict().keys() == ModelDescriptor.__dataclass_fields__.keys()
    with pytest.raises(AttributeError):
        desc.name = "other"  # type: ignore[misc]


def test_card_supplies_name_license_and_fp16(tmp_path):
    path = save(random_weights(srvgg_shapes(3, 8, 2, 4)), tmp_path / "file-stem.pth")
    (tmp_path / "file-stem.toml").write_text(
        'name = "nice-name"\nlicense = "BSD-3-Clause"\nfp16_safe = false\n'
        'description = "test model"\ntrained_on = "anything else is ignored"\n'
    )
    desc = load_model(path).descriptor
    assert (desc.name, desc.license, desc.fp16_safe, desc.description) == (
        "nice-name",
        "BSD-3-Clause",
        False,
        "test model",
    )


def test_card_with_wrong_type_is_refused(tmp_path):
    path = save(random_weights(srvgg_shapes(3, 8, 2, 4)), tmp_path / "m.safetensors")
    (tmp_path / "m.toml").write_text('fp16_safe = "yes"\n')
    with pytest.raises(
        UnsupportedModelError, match=r"m\.safetensors: model card m\.toml: .fp16_safe. must be a bool"
    ):
        load_model(path)


# --- conversion -------------------------------------------------------------------------------


def test_convert_pth_to_safetensors(tmp_path):
    sd = random_weights(rrdb_shapes(3, 3, 2, 16, 2, 8))
    src = save(sd, tmp_path / "RealESRGAN_x2plus.pth", "params_ema", "module.")
    src_bytes = src.read_bytes()
    dst = tmp_path / "out" / "x2.safetensors"
    dst.parent.mkdir()

    desc = convert_to_safetensors(src, dst)

    assert src.read_bytes() == src_bytes
    assert sorted(p.name for p in dst.parent.iterdir()) == ["x2.safetensors"]  # no temp file left
    assert set(safetensors.torch.load_file(dst)) == set(sd)  # unwrapped, prefix stripped
    assert (desc.arch, desc.scale, desc.name) == ("RRDBNet", 2, "x2")
    assert desc.sha256 == hashlib.sha256(dst.read_bytes()).hexdigest()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(dst).module(x), load_model(src).module(x))


def test_convert_refuses_to_overwrite_source(tmp_path):
    src = save(random_weights(srvgg_shapes(3, 8, 2, 2)), tmp_path / "m.safetensors")
    before = src.read_bytes()
    with pytest.raises(ValueError, match="overwrite"):
        convert_to_safetensors(src, tmp_path / "." / "m.safetensors")
    assert src.read_bytes() == before


def test_convert_refuses_unsupported_and_writes_nothing(tmp_path):
    src = save({"encoder.weight": torch.zeros(4, 4)}, tmp_path / "other.pth")
    with pytest.raises(UnsupportedModelError, match=r"other\.pth"):
        convert_to_safetensors(src, tmp_path / "other.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pth"]


# --- lookup -----------------------------------------------------------------------------------


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A stand-in for the shipped weights folder, holding the two defaults with their cards."""
    folder = tmp_path / "builtin"
    folder.mkdir()
    for scale, name in DEFAULT_MODELS.items():
        save(random_weights(srvgg_shapes(3, 8, 2, scale), seed=scale), folder / f"{name}.safetensors")
        (folder / f"{name}.toml").write_text(f'name = "{name}"\nlicense = "MIT"\nfp16_safe = false\n')
    monkeypatch.setattr(avow_models.catalog, "WEIGHTS_DIR", folder)
    return folder


@pytest.fixture
def user_dir(tmp_path):
    folder = tmp_path / "user"
    folder.mkdir()
    save(random_weights(rrdb_shapes(3, 3, 4, 8, 1, 4)), folder / "mine.pth", "params_ema")
    save(random_weights(srvgg_shapes(3, 8, 2, 2)), folder / "theirs.safetensors")
    return folder


def test_find_model_defaults(weights_dir):
    assert find_model() == weights_dir / "avow-compact-x4.safetensors"
    assert find_model(None, 4) == weights_dir / "avow-compact-x4.safetensors"
    assert find_model(None, 2) == weights_dir / "avow-compact-x2.safetensors"
    with pytest.raises(ModelNotFoundError, match="x3"):
        find_model(None, 3)


def test_find_model_by_name_and_path(weights_dir, user_dir, tmp_path):
    assert find_model("avow-compact-x2", user_dir=user_dir) == weights_dir / "avow-compact-x2.safetensors"
    assert find_model("mine", user_dir=user_dir) == user_dir / "mine.pth"
    assert find_model("theirs", user_dir=user_dir) == user_dir / "theirs.safetensors"
    elsewhere = save(random_weights(srvgg_shapes(3, 8, 2, 2)), tmp_path / "elsewhere.pth")
    assert find_model(str(elsewhere)) == elsewhere


def test_find_model_unknown_name_lists_available(weights_dir, user_dir):
    with pytest.raises(ModelNotFoundError) as err:
        find_model("nope", user_dir=user_dir)
    for name in ("nope", "avow-compact-x2", "avow-compact-x4", "mine", "theirs"):
        assert name in str(err.value)
    with pytest.raises(ModelNotFoundError):  # a path is never looked up inside the folders
        find_model("user/mine", user_dir=user_dir.parent)


def test_builtin_models_match_what_loading_reports(weights_dir):
    descriptors = builtin_models()
    assert [d.name for d in descriptors] == sorted(DEFAULT_MODELS.values())
    assert all(d.license == "MIT" and d.fp16_safe is False for d in descriptors)
    assert descriptors == [load_model(Path(d.source)).descriptor for d in descriptors]


def test_shipped_default_models_load():
    """Runs once the trained weights are in place; until then there is nothing to check."""
    shipped = {d.name: d for d in builtin_models()}
    if not set(DEFAULT_MODELS.values()) <= shipped.keys():
        pytest.skip("built-in weights not produced yet")
    for scale, name in DEFAULT_MODELS.items():
        path = find_model(None, scale)
        loaded = load_model(path)
        assert loaded.descriptor == shipped[name]
        assert loaded.descriptor.scale == scale
        assert loaded.descriptor.license
        with torch.no_grad():
            assert loaded.module(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8 * scale, 8 * scale)
