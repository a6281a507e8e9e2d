"""`avow verify` over many files: budgets, crashes, odd names, deep or unreadable trees, bad arguments.

No test waits on the clock: the budget is CPU time counted by the kernel, and the crash is sent
once the parser is seen holding the file open.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avow_c2pa.isolation import VerifierPool, spawn
from avow_c2pa.verify import OVER_BUDGET, UNREADABLE, trust_anchors
from conftest import photo


def avow_verify(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avow", "verify", *args], capture_output=True, timeout=600,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def heavy(tmp_path_factory) -> Path:
    """A 62-megapixel noisy gradient whose decoding and watermark search take about 4 CPU seconds: twice
    the most a 1 s budget can allow (the child's limit is whole seconds, so it grants 1-2 s). A clean
    gradient stopped being enough once the search got faster (1.8-2.5 s), and the test turned flaky."""
    path = tmp_path_factory.mktemp("heavy") / "heavy.png"
    ramp = np.linspace(0, 127, 7900, dtype=np.float32).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 32, (7900, 7900, 3), dtype=np.uint8)
    Image.fromarray(ramp[:, None, None] + noise).save(path, compress_level=1)
    return path


@pytest.fixture
def plain(tmp_path) -> Path:
    path = tmp_path / "plain.png"
    Image.fromarray(photo()).save(path)
    return path


def test_a_spent_cpu_budget_blames_avow_not_the_file_and_the_run_goes_on(heavy, plain):
    reports = list(VerifierPool(trust_anchors(), processes=1, cpu_budget=1).verify([heavy, plain, heavy]))
    assert [r.verdict for r in reports] == [OVER_BUDGET, "no-provenance", OVER_BUDGET]
    assert reports[0].summary.startswith("Not checked: Avow's CPU budget (1 s per file) ran out while reading it")
    assert "says nothing about the file" in reports[0].summary and reports[0].exit_code == 10


def test_a_crashed_parser_keeps_its_stderr_and_is_replaced(heavy, plain):
    """A real SIGSEGV delivered while the parser holds the file open: what a native crash looks like."""
    pool = VerifierPool(trust_anchors(), processes=1)
    stop = threading.Event()

    def crash_the_parser():
        while not stop.is_set():
            for pid in _children_reading(heavy):
                os.kill(pid, signal.SIGSEGV)
                return

    threading.Thread(target=crash_the_parser, daemon=True).start()
    try:
        reports = list(pool.verify([heavy, plain]))
    finally:
        stop.set()
    assert reports[0].verdict == UNREADABLE and "crashed the parser (signal SIGSEGV)" in reports[0].summary
    assert "Segmentation fault" in reports[0].diagnostics  # faulthandler's report, kept from the child's stderr
    assert reports[1].verdict == "no-provenance"


def test_a_parser_keeps_its_memory_from_file_to_file(tmp_path):
    """The watermark search's multi-megabyte temporaries stay in the parser's heap between files
    (``CHILD_ALLOCATOR``): the same 0.5 MP JPEG again costs few page faults. With glibc's defaults
    each file faulted them in afresh, about 8,600 times, a quarter of the search's CPU on a VM."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo(578, 866)).save(path, quality=90)
    children = spawn(1, 4)
    pid = children[0].process.pid
    faults: list[int] = []
    reports = list(VerifierPool(trust_anchors(), processes=1, spawned=children).verify(
        [path] * 4, on_done=lambda _: faults.append(_minor_faults(pid))))
    assert [r.verdict for r in reports] == ["no-provenance"] * 4
    assert max(np.diff(faults)) < 1500, faults


def _minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def _children_reading(path: Path) -> list[int]:
    """Processes of this user that hold ``path`` open (the parser, once it reads the file)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if any(os.readlink(fd) == str(path) for fd in (entry / "fd").iterdir()):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_non_utf8_file_name_does_not_stop_the_batch(tmp_path, plain):
    odd = os.fsencode(tmp_path) + b"/caf\xe9-\xff.png"
    with open(odd, "wb") as handle:
        handle.write(plain.read_bytes())
    done = avow_verify(os.fsdecode(odd), str(plain), LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8")
    out = done.stdout.decode("utf-8")
    assert done.returncode == 2 and b"Traceback" not in done.stderr, done.stderr
    assert "caf\\xe9-\\xff.png: No provenance: cannot tell." in out
    assert "plain.png: No provenance: cannot tell." in out and out.strip().endswith("no-provenance: 2")


def test_a_very_deep_tree_is_walked_without_recursion(tmp_path, plain):
    deep = tmp_path / "tree"
    deep.mkdir()
    _make_deep(deep, "d", 1100, "bottom.png", plain.read_bytes())
    try:
        done = avow_verify("-r", str(deep))
    finally:
        _remove_deep(deep, "d", 1100)  # shutil.rmtree would recurse as deep as the tree
    assert b"RecursionError" not in done.stderr and b"Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 2 and b"bottom.png: No provenance" in done.stdout


def _make_deep(top: Path, name: str, depth: int, leaf: str, data: bytes) -> None:
    """``depth`` nested folders called ``name`` under ``top``, ``leaf`` at the bottom: built relative,
    since the whole path may be longer than one system call can name. The working directory is restored."""
    before = os.getcwd()
    os.chdir(top)
    try:
        for _ in range(depth):
            os.mkdir(name)
            os.chdir(name)
        Path(leaf).write_bytes(data)
    finally:
        os.chdir(before)


def _remove_deep(top: Path, name: str, depth: int) -> None:
    os.chdir(top)
    for _ in range(depth):
        os.chdir(name)
    for entry in os.listdir("."):
        os.unlink(entry)
    for _ in range(depth):
        os.chdir("..")
        os.rmdir(name)
    os.chdir(top.parent)


def test_an_unreadable_folder_is_a_finding(tmp_path, plain):
    """A path longer than the system allows cannot be opened even by root: the folder is reported, the rest walked."""
    root = tmp_path / "walk"
    root.mkdir()
    (root / "ok.png").write_bytes(plain.read_bytes())
    _make_deep(root, "x" * 120, 40, "lost.png", plain.read_bytes())  # 40 x 120 characters: past PATH_MAX (4096)
    try:
        done = avow_verify("-r", str(root))
    finally:
        shutil.rmtree(root / ("x" * 120))  # fd-relative, so past PATH_MAX too; pytest's own clean-up is not
    assert b"Traceback" not in done.stderr, done.stderr
    assert b"Unreadable folder: File name too long; nothing in it was verified." in done.stdout
    assert b"ok.png: No provenance" in done.stdout and done.returncode == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_a_permission_denied_folder_is_a_finding(tmp_path, plain):
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed" / "hidden.png").write_bytes(plain.read_bytes())
    (tmp_path / "closed").chmod(0)
    try:
        done = avow_verify("-r", str(tmp_path))
    finally:
        (tmp_path / "closed").chmod(0o755)
    assert b"Unreadable folder: Permission denied" in done.stdout and done.returncode == 3


def test_an_empty_walk_is_not_success(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    done = avow_verify("-r", str(tmp_path / "empty"))
    assert done.returncode == 3 and b"Nothing verified: no image files in this folder" in done.stdout


@pytest.mark.parametrize("jobs", ["-1", "0", "many"])
def test_jobs_is_validated(jobs, plain):
    done = avow_verify("-j", jobs, str(plain))
    assert done.returncode == 3 and b"argument -j/--jobs" in done.stderr and b"Traceback" not in done.stderr
