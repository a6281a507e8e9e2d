"""The training recipe's own parts: re-parameterisation, widening, MATLAB bicubic, licence table.

The recipe is not shipped, but what it ships is only as good as these: a folded network that
differs from the trained one, or a resize that is not MATLAB's, would silently change the weights
and the figures in the model cards.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from avow_models import load_model
from avow_models.archs.srvgg import SRVGGNetCompact

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "recipe"))
import photos
from checkpoint import load_state, save_state
from rep import RepSRVGG

import data


def trained_like(num_feat: int = 24, num_conv: int = 4, scale: int = 4) -> RepSRVGG:
    """A RepSRVGG whose every branch, identity included, matters (as after training)."""
    torch.manual_seed(0)
    model = RepSRVGG(num_feat, num_conv, scale)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model.eval()


def test_folded_network_equals_the_training_network(tmp_path):
    model = trained_like()
    x = torch.rand(2, 3, 17, 23)
    with torch.no_grad():
        expected = model(x)
        plain = model.fold()
        assert type(plain) is SRVGGNetCompact
        assert (plain(x) - expected).abs().max().item() < 1e-5
    # ... and what is shipped is an ordinary SRVGGNetCompact that Avow's registry loads as such.
    path = tmp_path / "folded.safetensors"
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, str(path))
    loaded = load_model(path)
    assert loaded.descriptor.scale == 4
    with torch.no_grad():
        assert (loaded.module(x) - expected).abs().max().item() < 1e-5


def test_the_branches_change_the_output_so_the_fold_test_can_fail():
    model = trained_like()
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        before = model(x)
        model.body[2].conv1.weight.add_(0.1)
        assert (model(x) - before).abs().max().item() > 1e-3


def test_widening_trained_weights_keeps_their_output():
    torch.manual_seed(3)
    old = SRVGGNetCompact(num_feat=16, num_conv=4, scale=4).eval()
    with torch.no_grad():
        for parameter in old.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    wide = RepSRVGG(24, 4, 4)
    wide.widen(old.state_dict(), torch.Generator().manual_seed(0))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (wide.fold()(x) - old(x)).abs().max().item() < 1e-5
        assert (wide(x) - old(x)).abs().max().item() < 1e-5
        # The new channels are live: a step on their outgoing kernels changes the output.
        wide.body[4].conv3.weight[:, 16:] += 0.1
        assert (wide(x) - old(x)).abs().max().item() > 1e-3


def dense_matlab_bicubic(in_len: int, out_len: int) -> np.ndarray:
    """MATLAB imresize's weights written as the dense matrix MATLAB's own code builds."""
    scale = out_len / in_len
    kernel_scale = min(scale, 1.0)
    matrix = np.zeros((out_len, in_len))
    for i in range(out_len):
        centre = (i + 0.5) / scale - 0.5
        width = 4.0 / kernel_scale
        taps = np.arange(np.floor(centre - width / 2), np.floor(centre - width / 2) + np.ceil(width) + 2)
        d = np.abs(centre - taps) * kernel_scale
        w = np.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1, np.where(d <= 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0))
        w = w / w.sum()
        for tap, weight in zip(taps.astype(int), w, strict=True):
            mirrored = tap % (2 * in_len)
            matrix[i, mirrored if mirrored < in_len else 2 * in_len - 1 - mirrored] += weight
    return matrix


@pytest.mark.parametrize("shape", [(37, 53, 9, 13), (12, 10, 48, 40), (30, 31, 15, 16), (7, 5, 3, 2)])
def test_banded_imresize_equals_matlab_dense_matrices(shape):
    h, w, out_h, out_w = shape
    image = np.random.default_rng(1).random((h, w, 3)).astype(np.float32)
    expected = np.einsum(
        "ah,hwc,bw->abc", dense_matlab_bicubic(h, out_h), image.astype(np.float64), dense_matlab_bicubic(w, out_w)
    )
    assert np.abs(data.imresize(image, out_h, out_w) - expected).max() < 1e-5


def test_halving_uses_matlabs_taps():
    impulse = np.zeros((1, 40, 1), np.float32)
    impulse[0, 20, 0] = 1
    taps = data.imresize(impulse, 1, 20)[0, :, 0]
    np.testing.assert_allclose(sorted(taps[taps != 0])[:2], [-0.03515625, -0.01171875], atol=1e-6)


def test_each_factor_and_scale_of_a_picture_has_its_own_cached_pair(tmp_path):
    picture = data.synthetic(3)[:200, :240]
    for scale in (2, 4):
        for factor in data.HR_FACTORS:
            lr, hr = data.cached_pair(tmp_path, "abc", lambda: picture, factor, scale)
            assert hr.shape[0] == lr.shape[0] * scale and hr.shape[1] == lr.shape[1] * scale
            assert abs(hr.shape[1] - 240 * factor) < scale + 1  # shrunk by its own factor
    assert len(list(tmp_path.glob("*.npy"))) == 2 * 2 * len(data.HR_FACTORS)


def test_the_licence_table_matches_the_copyright_file_format():
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: 16.04/a_by_X.jpg\n 16.04/b_by_X.jpg\nCopyright: X, 2018\nLicense: CC-BY-4.0\n\n"
        "Files: 16.04/c.jpg\nCopyright: Y\nLicense: CC-BY-SA-4.0\n\n"
        "License: CC-BY-4.0\n Attribution 4.0 International\n"
    )
    assert photos._copyright_licences(text) == {"a_by_X.jpg": "CC-BY-4.0", "b_by_X.jpg": "CC-BY-4.0", "c.jpg": "CC-BY-SA-4.0"}


def test_only_cc0_and_cc_by_pictures_are_trained_on():
    uses = {photo.license: set() for photo in photos.PHOTOS}
    for photo in photos.PHOTOS:
        uses[photo.license].add(photo.use)
    assert {lic for lic, use in uses.items() if "training" in use} <= {"CC0-1.0", "CC-BY-4.0"}
    assert len({photo.name for photo in photos.PHOTOS}) == len(photos.PHOTOS)


def test_the_committed_run_resumes_from_a_safetensors_state():
    """The long run's state is what a later session resumes from: it must be safetensors (no
    pickle), rebuild the training network, and its folded weights must load through the registry."""
    run = Path(__file__).resolve().parents[1] / "models/recipe/runs/x4-rep56"
    state = load_state(run / "checkpoint.safetensors")
    assert "--rep" in state["recipe"] and state["step"] > 0 and state["cpu_seconds"] > 0
    model = RepSRVGG(56, 10, 4)
    model.load_state_dict(state["ema"])
    assert sum(p.numel() for p in model.fold().parameters()) == 309_224
    assert load_model(run / "model.safetensors").descriptor.params == 309_224


def test_a_training_state_round_trips_through_safetensors(tmp_path):
    """What Adam, the scheduler and the generators keep: integer keys, tuples, scalars, NaN, 128-bit ints."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), betas=(0.8, 0.9))
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": np.random.default_rng(7).bit_generator.state,
             "torch_rng": torch.get_rng_state(), "average": float("nan"), "step": 3, "recipe": "x"}
    save_state(state, tmp_path / "state.safetensors")
    back = load_state(tmp_path / "state.safetensors")
    assert list(back["optimizer"]["state"]) == [0, 1]
    assert torch.equal(back["optimizer"]["state"][1]["exp_avg"], state["optimizer"]["state"][1]["exp_avg"])
    assert back["optimizer"]["param_groups"][0]["betas"] == [0.8, 0.9]
    assert back["rng"] == state["rng"] and torch.equal(back["torch_rng"], state["torch_rng"])
    assert back["average"] != back["average"] and back["step"] == 3
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(back["optimizer"])
    with pytest.raises(TypeError):
        save_state({"bad": object()}, tmp_path / "bad.safetensors")


def test_no_pickled_weights_are_committed():
    """Weights and training states are shipped as safetensors only."""
    root = Path(__file__).resolve().parents[1]
    listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    assert [name for name in listed if name.endswith((".pt", ".pth", ".ckpt", ".pkl", ".pickle"))] == []
