"""Hostile and broken weights files must be refused, naming the file, without running anything.

The pickle payloads really are live (``test_payload_is_live`` runs one the unsafe way), so a
marker file that is still absent after loading proves the payload never executed.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import struct
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from avow_models import UnsupportedModelError, convert_to_safetensors, load_model
from avow_models.describe import MAX_FILE_BYTES, MAX_TENSORS, describe_model


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload-ran"


class Payload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def srvgg_state_dict() -> dict[str, torch.Tensor]:
    """A valid SRVGGNetCompact x2 (4 features, 1 hidden conv), so breakage is the only fault."""
    sd = {}
    for n, (cin, cout) in enumerate([(3, 4), (4, 4), (4, 12)]):
        sd[f"body.{2 * n}.weight"] = torch.randn(cout, cin, 3, 3)
        sd[f"body.{2 * n}.bias"] = torch.randn(cout)
        if n < 2:
            sd[f"body.{2 * n + 1}.weight"] = torch.full((4,), 0.25)
    return sd


def assert_refused(path: Path, marker: Path, match: str | None = None) -> None:
    """Every entry point refuses with a one-line message naming the file, and runs nothing."""
    out = path.parent / "converted.safetensors"
    for entry in (load_model, describe_model, lambda p: convert_to_safetensors(p, out)):
        with pytest.raises(UnsupportedModelError) as err:
            entry(path)
        message = str(err.value)
        assert path.name in message
        assert "\n" not in message
        if match:
            assert match in message
    assert not out.exists()
    assert not marker.exists()


def safetensors_bytes(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def test_valid_file_loads(tmp_path):
    """The baseline the broken variants below are made from really is loadable."""
    path = tmp_path / "ok.safetensors"
    safetensors.torch.save_file(srvgg_state_dict(), path)
    assert load_model(path).descriptor.scale == 2


# --- code execution -----------------------------------------------------------------------------


def test_payload_is_live(tmp_path, marker):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    with path.open("rb") as f:
        pickle.load(f)  # the unsafe way, to prove the marker check below means something
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_raw_pickle_payload(tmp_path, marker, protocol):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"params_ema": {"body.0.weight": Payload(marker)}}, protocol=protocol))
    assert_refused(path, marker, "weights-only")


@pytest.mark.parametrize("suffix", [".pth", ".ckpt", ".bin"])
def test_torch_save_payload(tmp_path, marker, suffix):
    path = tmp_path / f"evil{suffix}"
    torch.save({"params_ema": {**srvgg_state_dict(), "body.9.weight": Payload(marker)}}, path)
    assert_refused(path, marker, "posix.system")


def test_legacy_format_payload(tmp_path, marker):
    path = tmp_path / "evil.pth"
    torch.save(Payload(marker), path, _use_new_zipfile_serialization=False)
    assert_refused(path, marker)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated, not gone
@pytest.mark.parametrize("compile_", ["script", "trace"])
@pytest.mark.parametrize("suffix", [".pt", ".jit", ".pth"])
def test_torchscript_is_refused(tmp_path, marker, compile_, suffix):
    module = (
        torch.jit.script(Tiny()) if compile_ == "script" else torch.jit.trace(Tiny(), torch.rand(1, 3, 4, 4))
    )
    path = tmp_path / f"scripted{suffix}"
    torch.jit.save(module, str(path))
    assert_refused(path, marker, "TorchScript")


def test_zip_with_code_entry_is_refused(tmp_path, marker):
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({}))
        archive.writestr("archive/code/__torch__.py", "import os")
    assert_refused(path, marker, "TorchScript")


# --- lying or broken safetensors ----------------------------------------------------------------


def test_bloated_header_length(tmp_path, marker):
    path = tmp_path / "bloated.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}" + bytes(64))
    assert_refused(path, marker, "header claims")


def test_header_longer_than_file(tmp_path, marker):
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 4096) + b'{"a": 1}')
    assert_refused(path, marker, "header claims 4096 bytes")


def test_offsets_beyond_file_end(tmp_path, marker):
    path = tmp_path / "lying.safetensors"
    header = {
        "body.0.weight": {"dtype": "F32", "shape": [10**6, 3, 3, 3], "data_offsets": [0, 4 * 27 * 10**6]}
    }
    path.write_bytes(safetensors_bytes(header, bytes(64)))
    assert_refused(path, marker, "outside")


def test_shape_disagrees_with_offsets(tmp_path, marker):
    path = tmp_path / "lying.safetensors"
    header = {"body.0.weight": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 16]}}
    path.write_bytes(safetensors_bytes(header, bytes(16)))
    assert_refused(path, marker, "spans 16 bytes")


@pytest.mark.parametrize(
    "header", [b"not json", b"[1, 2]", b"\xff\xfe"], ids=["garbage", "array", "not-utf8"]
)
def test_header_not_a_json_object(tmp_path, marker, header):
    path = tmp_path / "garbled.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert_refused(path, marker, "header")


def test_truncated_safetensors(tmp_path, marker):
    path = tmp_path / "cut.safetensors"
    safetensors.torch.save_file(srvgg_state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_refused(path, marker)


def test_integer_tensors_in_safetensors(tmp_path, marker):
    path = tmp_path / "ints.safetensors"
    safetensors.torch.save_file(
        {**srvgg_state_dict(), "body.0.bias": torch.zeros(4, dtype=torch.int64)}, path
    )
    assert_refused(path, marker, "floating")


def test_too_many_tensors_in_safetensors(tmp_path, marker):
    path = tmp_path / "many.safetensors"
    safetensors.torch.save_file({f"t{i}": torch.zeros(1) for i in range(MAX_TENSORS + 1)}, path)
    assert_refused(path, marker, "limit")


# --- broken pickles and non-state-dicts ---------------------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_pth(tmp_path, marker, zip_format):
    path = tmp_path / "cut.pth"
    torch.save(srvgg_state_dict(), path, _use_new_zipfile_serialization=zip_format)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_refused(path, marker)


def test_non_tensor_value(tmp_path, marker):
    path = tmp_path / "mixed.pth"
    torch.save({**srvgg_state_dict(), "note": "hello"}, path)
    assert_refused(path, marker, "'note' is a str")


def test_integer_tensor_in_pth(tmp_path, marker):
    path = tmp_path / "ints.pth"
    torch.save({**srvgg_state_dict(), "body.0.bias": torch.zeros(4, dtype=torch.int32)}, path)
    assert_refused(path, marker, "floating")


def test_too_many_tensors_in_pth(tmp_path, marker):
    path = tmp_path / "many.pth"
    torch.save({f"t{i}": torch.zeros(1) for i in range(MAX_TENSORS + 1)}, path)
    assert_refused(path, marker, "limit")


def test_not_a_dict(tmp_path, marker):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    assert_refused(path, marker, "not a state dict")


# --- files that are not weights at all ----------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.safetensors", "empty.pth"])
def test_empty_file(tmp_path, marker, name):
    path = tmp_path / name
    path.write_bytes(b"")
    assert_refused(path, marker, "empty")


@pytest.mark.parametrize("name", ["model.onnx", "model.txt", "model", "model.pkl"])
def test_wrong_extension(tmp_path, marker, name):
    path = tmp_path / name
    torch.save(srvgg_state_dict(), path)  # valid contents: the extension alone decides
    assert_refused(path, marker, "extension")


def test_state_dict_saved_as_pt_is_refused(tmp_path, marker):
    path = tmp_path / "weights.pt"
    torch.save(srvgg_state_dict(), path)
    assert_refused(path, marker, "TorchScript")


def test_oversized_file(tmp_path, marker):
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    assert_refused(path, marker, "limit")


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_not_a_regular_file(tmp_path, marker, kind):
    path = tmp_path / "nothing.pth"
    if kind == "directory":
        path.mkdir()
    assert_refused(path, marker)


# --- shapes that fit no architecture ------------------------------------------------------------


def test_unrelated_network(tmp_path, marker):
    path = tmp_path / "classifier.safetensors"
    safetensors.torch.save_file({"encoder.weight": torch.zeros(8, 8), "head.bias": torch.zeros(8)}, path)
    assert_refused(path, marker, "fit no supported architecture")


def test_srvgg_with_non_square_scale(tmp_path, marker):
    sd = srvgg_state_dict()
    sd["body.4.weight"], sd["body.4.bias"] = torch.zeros(15, 4, 3, 3), torch.zeros(15)  # 3 × 5 channels
    path = tmp_path / "odd.pth"
    torch.save({"params_ema": sd}, path)
    assert_refused(path, marker, "fit no supported architecture")


def test_srvgg_with_wrong_prelu_width(tmp_path, marker):
    sd = {**srvgg_state_dict(), "body.3.weight": torch.zeros(5)}
    path = tmp_path / "prelu.safetensors"
    safetensors.torch.save_file(sd, path)
    assert_refused(path, marker, "body.3.weight has shape [5], expected [4]")


def test_rrdb_with_extra_tensor(tmp_path, marker):
    sd = {}
    convs = {"conv_first": (3, 8), "body.0.rdb1.conv1": (8, 4), "conv_body": (8, 8), "conv_last": (8, 3)}
    for name, (cin, cout) in convs.items():
        sd[f"{name}.weight"], sd[f"{name}.bias"] = torch.zeros(cout, cin, 3, 3), torch.zeros(cout)
    path = tmp_path / "partial-rrdb.pth"
    torch.save(sd, path)
    assert_refused(path, marker, "looks like RRDBNet but is missing")


@pytest.mark.parametrize("index", ["00", "\u0660", "1" * 5000], ids=["leading-zero", "arabic-digit", "huge"])
def test_non_canonical_layer_index(tmp_path, marker, index):
    sd = {**srvgg_state_dict(), f"body.{index}.weight": torch.zeros(4, 3, 3, 3)}
    path = tmp_path / "renamed.safetensors"
    safetensors.torch.save_file(sd, path)
    assert_refused(path, marker, "unexpected tensor")
