"""Issue 14's attacks, as an attacker and a careless user would try them: each must end in one
line and a documented exit code, never a traceback, a hang or a half-written file; the checks
that need no model must run before torch is imported. No test sleeps: races are started with a
pipe every process waits on, and the worker is read with a guard timeout on events only.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from avow import cli
from avow_c2pa.errors import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_FILESYSTEM,
    EXIT_IDENTITY,
    EXIT_SETTINGS,
    EXIT_USAGE,
)
from conftest import photo

ROOT = Path(__file__).resolve().parents[1]
GUARD = 120  # seconds an event may take before the test fails instead of hanging (never waited out)

BAD_SETTINGS = [
    ('signing = "x"', "[signing]"),
    ("[signing]\nkey = 1", "[signing] key"),
    ("watermark = 3", "[watermark]"),
    ('verify = "x"', "[verify]"),
    ("[verify]\ntrust = [1]", "[verify] trust"),
    ("[verify]\ntrust = 5", "[verify] trust"),
    ("x = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ('[watermark]\nkeys = [""]', "[watermark] keys"),
    ("[watermark]\nkeys = 3", "[watermark] keys"),
    ('[signing]\nkee = "a"', "[signing] kee: unknown setting"),
    ('[colour]\nx = "a"', "[colour]: unknown section"),
    ('[signing]\nkey = "k.pem"', "[signing]: needs both key and cert"),
    ("not toml ][", "not valid TOML"),
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh config folder per test: these tests write broken settings and identities."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def png_in(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(photo()).save(path)
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avow: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("text", "named"), BAD_SETTINGS)
@pytest.mark.parametrize("command", [("keys", "show"), ("verify", "FILE")])
def test_bad_settings_stop_every_command_with_one_line_naming_key_and_file(home, png_in, capsys, text, named, command):
    (home / "config.toml").write_text(text)
    args = [png_in if a == "FILE" else a for a in command]
    code, _, err = run_cli(capsys, *args)
    line = one_line_error(err)
    assert code == EXIT_SETTINGS and named in line and str(home / "config.toml") in line


def test_settings_that_are_not_a_regular_file_do_not_block(home, capsys):
    os.mkfifo(home / "config.toml")
    code, _, err = run_cli(capsys, "keys", "show")
    assert code == EXIT_SETTINGS and "not a regular file" in one_line_error(err)


def test_relative_settings_paths_are_relative_to_the_config_folder(home):
    from avow_c2pa.config import settings

    (home / "config.toml").write_text('[verify]\ntrust = ["roots.pem"]\n[watermark]\nkeys = ["studio"]\n')
    assert settings().trust == (home / "roots.pem",) and settings().watermark_keys == ("studio",)


# ---- identities: every certificate problem is found before torch is imported ---------------------


def _certificate(subject, issuer_key, public_key, days=(-1, 365), usage=True, ca=False):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(
            x509.KeyUsage(not ca, False, False, False, False, ca, ca, False, False), critical=True
        )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_identity(folder: Path, name: str, leaf_key=None, days=(-1, 365), usage=True, stranger=False):
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate("root", root_key, root_key.public_key(), ca=True)
    leaf_key = leaf_key or ec.generate_private_key(ec.SECP256R1())
    signer = ec.generate_private_key(ec.SECP256R1()) if stranger else root_key
    leaf = _certificate("leaf", signer, leaf_key.public_key(), days=days, usage=usage)
    pem = serialization.Encoding.PEM
    key, chain = folder / f"{name}.key", folder / f"{name}.pem"
    key.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    chain.write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    return key, chain


PRE_TORCH = r"""
import json, os, sys
from avow import cli
codes = {}
for name, args in json.loads(sys.argv[1]).items():
    if args[0].startswith("AVOW_CONFIG_DIR="):
        os.environ["AVOW_CONFIG_DIR"] = args.pop(0).partition("=")[2]
    try:
        codes[name] = cli.main(args)
    except SystemExit as exit:
        codes[name] = exit.code
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
"""


def test_upscale_refusals_come_before_torch_is_imported(tmp_path, home, png_in):
    """Paths, formats, alpha, tile, settings and every certificate problem: one process runs them
    all and must still not have imported torch (the CLI reaches the engine only when they pass)."""
    rgba = tmp_path / "rgba.png"
    Image.fromarray(photo(channels=4)).save(rgba)
    out = tmp_path / "out.png"
    (tmp_path / "folder.png").mkdir()
    corrupt_key, corrupt_chain = make_identity(tmp_path, "corrupt")
    data = bytearray(corrupt_key.read_bytes())
    data[60:70] = b"AAAAAAAAAA"
    corrupt_key.write_bytes(bytes(data))

    def signed_by(*identity):
        return ["--key", str(identity[0]), "--cert", str(identity[1])]

    cases = {
        "output is a directory": (["upscale", str(png_in), "-o", str(tmp_path / "folder.png"), "--force"],
                                  EXIT_USAGE, "is a directory"),
        "output is the input": (["upscale", str(png_in), "-o", str(png_in), "--force"], EXIT_USAGE, "the input"),
        "alpha to JPEG": (["upscale", str(rgba), "-o", str(tmp_path / "o.jpg")], EXIT_USAGE, "transparency"),
        "negative tile": (["upscale", str(png_in), "-o", str(out), "--tile", "-5"], EXIT_USAGE, "tile"),
        "unknown model": (["upscale", str(png_in), "-o", str(out), "--model", "no-such"], EXIT_USAGE, "no-such"),
        "key without cert": (["upscale", str(png_in), "-o", str(out), "--key", str(corrupt_key)], EXIT_IDENTITY,
                             "both --key and --cert"),
        "corrupted PEM": (["upscale", str(png_in), "-o", str(out), *signed_by(corrupt_key, corrupt_chain)],
                          EXIT_IDENTITY, "not an unencrypted PEM private key"),
        "expired": (["upscale", str(png_in), "-o", str(out), *signed_by(*make_identity(tmp_path, "old", days=(-9, -1)))],
                    EXIT_IDENTITY, "expired on"),
        "not yet valid": (["upscale", str(png_in), "-o", str(out),
                           *signed_by(*make_identity(tmp_path, "new", days=(5, 9)))], EXIT_IDENTITY, "not valid before"),
        "no key usage": (["upscale", str(png_in), "-o", str(out), *signed_by(*make_identity(tmp_path, "ku", usage=False))],
                         EXIT_IDENTITY, "digitalSignature"),
        "RSA-1024": (["upscale", str(png_in), "-o", str(out),
                      *signed_by(*make_identity(tmp_path, "rsa", leaf_key=rsa.generate_private_key(65537, 1024)))],
                     EXIT_IDENTITY, "RSA-1024 is too weak"),
        "broken chain": (["upscale", str(png_in), "-o", str(out),
                          *signed_by(*make_identity(tmp_path, "chain", stranger=True))], EXIT_IDENTITY, "not signed by"),
    }
    bad_home = tmp_path / "bad-home"
    bad_home.mkdir()
    (bad_home / "config.toml").write_text("[watermark]\nkeys = 3\n")
    cases["bad [watermark]"] = ([f"AVOW_CONFIG_DIR={bad_home}", "upscale", str(png_in), "-o", str(out)],
                                EXIT_SETTINGS, "[watermark] keys")
    done = subprocess.run(
        [sys.executable, "-c", PRE_TORCH, json.dumps({name: args for name, (args, _, _) in cases.items()})],
        capture_output=True, text=True, timeout=GUARD,
    )
    result = json.loads(done.stdout)
    errors = [line for line in done.stderr.splitlines() if line.startswith("avow: error: ")]
    assert "Traceback" not in done.stderr and len(errors) == len(cases), done.stderr
    for name, (_, code, said) in cases.items():
        assert result["codes"][name] == code, (name, done.stderr)
        assert any(said in line for line in errors), (name, said, done.stderr)
    assert not result["torch"]
    assert not out.exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp file was made


def test_bare_commands_print_help_exit_0_without_torch(home):
    code = (
        "import sys\nfrom avow import cli\n"
        "codes = [cli.main(a) for a in ([], ['keys'], ['models'])]\n"
        "print(codes, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=GUARD)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0] False"
    assert done.stdout.count("usage: avow") == 3


def test_device_that_is_not_there_is_a_usage_error(tmp_path, home, png_in, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run_cli(capsys, "upscale", png_in, "-o", tmp_path / "o.png", "--device", "cuda", "--scale", "2")
    assert code == EXIT_USAGE and "CUDA" in one_line_error(err)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("what", ["missing", "not a certificate", "a folder"])
def test_verify_trust_files_are_checked(tmp_path, home, png_in, capsys, what):
    trust = {"missing": tmp_path / "none.pem", "not a certificate": png_in, "a folder": tmp_path}[what]
    code, out, err = run_cli(capsys, "verify", png_in, "--trust", trust)
    assert code == EXIT_USAGE and str(trust) in one_line_error(err) and not out


def test_full_module_pickle_is_refused_without_torchs_advice(tmp_path, home, png_in, capsys):
    import torch

    model = tmp_path / "full.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3)), model)
    code, _, err = run_cli(capsys, "upscale", png_in, "-o", tmp_path / "o.png", "--model", model)
    line = one_line_error(err)
    assert code == EXIT_USAGE and "weights_only" not in line and str(model) in line


# ---- identity creation under concurrency -----------------------------------------------------------


def test_three_first_runs_at_once_share_one_identity(tmp_path):
    """Each process blocks on a pipe until all are started; closing it releases them together."""
    home = tmp_path / "fresh"
    code = (
        "import os, sys\nos.read(int(sys.argv[1]), 1)\n"
        "from avow_c2pa.keys import signing_identity\nprint(signing_identity().fingerprints()['leaf'])"
    )
    for _ in range(3):
        for item in home.glob("*"):
            subprocess.run(["rm", "-rf", str(item)], check=True)
        gate_read, gate_write = os.pipe()
        runs = [
            subprocess.Popen([sys.executable, "-c", code, str(gate_read)], pass_fds=(gate_read,), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "AVOW_CONFIG_DIR": str(home)})
            for _ in range(3)
        ]
        os.close(gate_read)
        os.close(gate_write)
        results = [run.communicate(timeout=GUARD) for run in runs]
        assert all(run.returncode == 0 for run in runs), results
        assert len({out for out, _ in results}) == 1  # all signed with the same identity
        assert sorted(p.name for p in home.iterdir()) == ["identity"]  # no temp folder left


def test_half_made_identity_says_how_to_recover(home, capsys):
    (home / "identity").mkdir()
    (home / "identity" / "signer.key").write_text("half")
    code, _, err = run_cli(capsys, "keys", "show")
    line = one_line_error(err)
    assert code == EXIT_IDENTITY and "incomplete" in line and "move that folder aside" in line


# ---- errors are classified by what happened --------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "said"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/x/out.png"), EXIT_FILESYSTEM, "/x/out.png: the disk is full"),
        (PermissionError(errno.EACCES, "Permission denied", "/x"), EXIT_FILESYSTEM, "/x: permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "/ro"), EXIT_FILESYSTEM, "/ro: the file system is read-only"),
        (ValueError("unrelated bug"), EXIT_FAILED, "internal error: ValueError: unrelated bug"),
        (TypeError("unrelated bug"), EXIT_FAILED, "internal error: TypeError"),
        (KeyError("k"), EXIT_FAILED, "internal error: KeyError"),
    ],
)
def test_failures_are_classified_by_what_happened(error, code, said):
    message, exit_code = cli.describe_failure(error)
    assert exit_code == code and said in message and "\n" not in message


def test_cleanup_errors_never_hide_the_real_one(tmp_path):
    from avow_c2pa.errors import discard

    folder = tmp_path / "locked"
    folder.mkdir()
    discard(folder / "gone.png", folder)  # missing, and a directory: neither raises


def _mount_tmpfs(tmp_path, options: str) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    folder = tmp_path / f"mnt-{options.replace(',', '-').replace('=', '')}"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount tmpfs here")
    return folder


@pytest.fixture
def small_disk(tmp_path):
    folder = _mount_tmpfs(tmp_path, "size=1m")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only_disk(tmp_path):
    folder = _mount_tmpfs(tmp_path, "ro,size=1m")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path, home, small_disk, capsys):
    from test_upscale import nearest_model

    source = tmp_path / "big.png"
    Image.fromarray((np.random.default_rng(1).random((400, 400, 3)) * 255).astype(np.uint8)).save(source)
    model = nearest_model(tmp_path / "nearest-x2.safetensors", 2)
    code, _, err = run_cli(capsys, "upscale", source, "-o", small_disk / "out.png", "--model", model, "--tile", "0")
    line = one_line_error(err)
    assert code == EXIT_FILESYSTEM and "the disk is full" in line and str(small_disk) in line
    assert list(small_disk.iterdir()) == []


def test_disk_full_while_signing_names_the_folder_not_the_sdks_words(tmp_path, home, png_in, small_disk):
    from avow_c2pa.errors import FileSystemError
    from avow_c2pa.keys import signing_identity
    from avow_c2pa.manifest import editor_export_manifest, sign_file

    identity = signing_identity()
    source = tmp_path / "noise.png"
    Image.fromarray((np.random.default_rng(2).random((160, 160, 3)) * 255).astype(np.uint8)).save(source)
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        with pytest.raises(OSError):
            while True:
                handle.write(b"\0" * 4096)
    os.truncate(filler, filler.stat().st_size - 16384)  # room to create the file, not to write it
    dest = small_disk / "signed.png"
    with pytest.raises(FileSystemError, match="the disk is full") as raised:
        sign_file(source, dest, editor_export_manifest([], dest.name, "test"), identity, None)
    assert str(small_disk) in str(raised.value)


def test_read_only_output_folder_is_refused_before_the_work(tmp_path, home, png_in, read_only_disk, capsys):
    code, _, err = run_cli(capsys, "upscale", png_in, "-o", read_only_disk / "out.png")
    line = one_line_error(err)
    assert code == EXIT_FILESYSTEM and "read-only" in line and str(read_only_disk) in line


def test_cancel_code_is_documented():
    assert EXIT_CANCELLED == 130


# ---- the worker never dies or hangs on input --------------------------------------------------------


class RawWorker:
    """The worker as a process, spoken to in raw bytes (the editors' client only sends valid JSON)."""

    def __init__(self, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "avow.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env={**os.environ, "AVOW_CONFIG_DIR": str(home)},
        )
        assert self.read()["event"] == "ready"

    def send(self, raw: bytes) -> None:
        self.process.stdin.write(raw)
        self.process.stdin.flush()

    def read(self) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], GUARD)
        assert ready, "the worker stopped answering"
        line = self.process.stdout.readline()
        assert line, "the worker died"
        return json.loads(line)

    def ask(self, request: dict) -> dict:
        self.send(json.dumps(request).encode() + b"\n")
        while (reply := self.read())["event"] == "progress":
            pass
        return reply


HOSTILE_LINES = {
    "id [1]": b'{"id": [1], "op": "describe"}\n',
    "cancel id {a:1}": b'{"op": "cancel", "id": {"a": 1}}\n',
    "id true": b'{"id": true, "op": "describe"}\n',
    "200,000 [": b"[" * 200_000 + b"\n",
    "non-UTF-8": b'{"id": 1, "op": "\xff\xfe"}\n',
    "not an object": b"[1, 2]\n",
    "not JSON": b"describe please\n",
    "a line over the limit": b'"' + b"a" * (2 << 20) + b'"\n',
    "huge integer id": b'{"id": ' + b"9" * 5000 + b', "op": "describe"}\n',
}


def test_worker_answers_every_malformed_line_and_reads_on(tmp_path):
    worker = RawWorker(tmp_path)
    for name, raw in HOSTILE_LINES.items():
        worker.send(raw)
        reply = worker.read()
        assert reply["error"] == "ProtocolError" and reply["id"] is None and reply["exit_code"] == EXIT_USAGE, name
    for request, said in [
        ({"id": 7, "op": "describe", "extra": 1}, "unexpected keyword"),
        ({"id": 8, "op": "nope"}, "unknown op"),
        ({"id": 9, "op": "upscale", "input": 5, "output": "x.npy"}, "input has the wrong type"),
        ({"id": 10, "op": "upscale", "input": "a.npy", "output": "b.npy", "tile": -5}, "tile"),
    ]:
        reply = worker.ask(request)
        assert reply["id"] == request["id"] and reply["error"] == "ProtocolError" or "tile" in reply["message"], reply
        assert said in reply["message"]
    assert worker.ask({"id": "still-alive", "op": "describe"})["event"] == "result"
    worker.process.stdin.close()  # EOF ends it
    assert worker.process.wait(timeout=GUARD) == 0


def test_worker_upscale_refuses_existing_output_and_the_input(tmp_path):
    source = tmp_path / "in.npy"
    np.save(source, np.zeros((4, 4, 3), np.float32))
    existing = tmp_path / "out.npy"
    existing.write_bytes(b"precious")
    worker = RawWorker(tmp_path)
    for target in (existing, source):
        reply = worker.ask({"id": 1, "op": "upscale", "input": str(source), "output": str(target), "tile": 0})
        assert reply["error"] == "UsageError" and reply["exit_code"] == EXIT_USAGE, reply
    reply = worker.ask({"id": 2, "op": "upscale", "input": str(source), "output": str(source), "force": True})
    assert "the input" in reply["message"]  # force never allows overwriting the input
    assert existing.read_bytes() == b"precious" and np.load(source).shape == (4, 4, 3)
    worker.process.stdin.close()
    assert worker.process.wait(timeout=GUARD) == 0


def test_worker_verify_goes_through_the_isolated_pool(tmp_path, png_in):
    worker = RawWorker(tmp_path)
    reply = worker.ask({"id": 1, "op": "verify", "file": str(png_in)})
    assert reply["event"] == "result" and reply["verdict"] == "no-provenance"
    reply = worker.ask({"id": 2, "op": "verify", "file": str(tmp_path / "missing.png")})
    assert reply["verdict"] == "unreadable"
    worker.process.stdin.close()
    assert worker.process.wait(timeout=GUARD) == 0


def test_worker_and_cli_share_exit_codes():
    from avow import worker

    kind, message, code = worker.classify(OSError(errno.ENOSPC, "No space", "/x/y.npy"), "upscale")
    assert (kind, code) == ("FileSystemError", EXIT_FILESYSTEM) and message == cli.describe_failure(
        OSError(errno.ENOSPC, "No space", "/x/y.npy"))[0].removesuffix("; no file was written")
