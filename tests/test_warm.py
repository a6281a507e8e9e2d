"""The warm worker (avow.warm) through the hooks' stdlib client (avow_warm), without an editor:
real processes, a real socket, real files. GIMP's own use of it is in tests/test_gimp.py."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from avow import PROTOCOL, __version__
from avow_c2pa.config import settings
from avow_c2pa.errors import EXIT_USAGE, SettingsError
from editor_run import process_gone

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugin" / "client"))
import avow_client  # noqa: E402
import avow_warm  # noqa: E402

CONFIG = {"python": sys.executable, "version": __version__, "protocol": PROTOCOL, "editor": "gimp"}


@pytest.fixture
def session(tmp_path, monkeypatch):
    """A stand-in editor (a process that lives until its stdin closes), a private runtime folder and config."""
    runtime = Path(tempfile.mkdtemp(prefix="avow-warm-"))  # short: a socket's path is at most 107 bytes
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    home = tmp_path / "config"
    home.mkdir()
    editor = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    env = {**os.environ, "AVOW_CONFIG_DIR": str(home)}
    state = {"editor": editor, "env": env, "home": home, "runtime": runtime / "avow", "pids": set()}

    def connect(config=CONFIG, scratch=None):
        worker = avow_warm.open_worker(config, env, "gimp", editor.pid, scratch)
        state["pids"].add(worker.ready.get("pid"))
        return worker

    state["connect"] = connect
    yield state
    editor.stdin.close()
    editor.wait()
    for pid in state["pids"] - {None}:  # the editor is gone: each of its workers exits by itself
        assert process_gone(pid), f"warm worker {pid} outlived its editor"
    shutil.rmtree(runtime, ignore_errors=True)


def test_the_next_run_is_answered_by_the_same_warm_worker(session):
    first = session["connect"]()
    assert isinstance(first, avow_warm.WarmWorker) and first.started
    pid = first.ready["pid"]
    assert first.request("describe")["version"] == __version__
    first.close()
    second = session["connect"]()
    assert not second.started and second.ready["pid"] == pid
    assert os.getsid(pid) == pid  # its own session: a plug-in's end or GIMP's kill of it leaves the worker
    folder = session["runtime"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (sock,) = folder.glob("*.sock")
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
    assert sock.name.startswith(f"gimp-{session['editor'].pid}-")
    second.close()


def test_a_closed_connection_cancels_its_job_and_removes_its_scratch_the_worker_stays(session, tmp_path):
    scratch = avow_client.scratch_dir(str(tmp_path / "job-"))
    source, target = os.path.join(scratch, "in.npy"), os.path.join(scratch, "out.npy")
    np.save(source, np.random.default_rng(1).random((360, 480, 3), dtype=np.float32))
    worker = session["connect"](scratch=scratch)
    pid = worker.ready["pid"]
    progress = []

    def close_at_first_tile(done, total):
        progress.append(done)
        worker.close()  # as GIMP's Cancel kills the plug-in: the connection ends mid-job

    with pytest.raises(avow_client.WorkerUnavailable):
        worker.request("upscale", on_progress=close_at_first_tile, input=source, output=target, scale=4, tile=64,
                       device="cpu")
    assert len(progress) == 1
    # One job at a time: the next connection is served once the cancelled job has ended and its scratch is gone.
    after = session["connect"]()
    assert after.ready["pid"] == pid and not after.started
    assert not os.path.exists(scratch), "the closed connection's scratch folder was left behind"
    assert after.request("describe")["version"] == __version__
    after.close()


def test_a_killed_worker_is_replaced_by_the_next_run(session):
    first = session["connect"]()
    pid = first.ready["pid"]
    first.close()
    os.kill(pid, 9)
    assert process_gone(pid)
    assert list(session["runtime"].glob("*.sock")), "a killed worker leaves its socket: the stale case"
    second = session["connect"]()
    assert second.started and second.ready["pid"] != pid
    assert second.request("describe")["version"] == __version__
    second.close()


def test_idle_worker_exits_and_removes_its_socket(session):
    (session["home"] / "config.toml").write_text("[worker]\nidle_minutes = 0.01\n")  # 0.6 s
    worker = session["connect"]()
    pid = worker.ready["pid"]
    worker.close()
    assert process_gone(pid), "the idle worker did not exit"
    assert not list(session["runtime"].glob("*.sock"))


def test_the_worker_exits_when_its_editor_is_gone(session):
    worker = session["connect"]()
    pid = worker.ready["pid"]
    worker.close()
    session["editor"].stdin.close()
    session["editor"].wait()
    assert process_gone(pid), "the worker outlived its editor"
    assert not list(session["runtime"].iterdir()), "the ended session's socket, lock or log was left behind"


def test_a_second_run_while_one_is_served_gets_a_worker_of_its_own(session):
    first = session["connect"]()
    with pytest.raises(avow_client.WorkerBusy):
        avow_warm.WarmWorker(
            avow_warm.socket_path(CONFIG, session["env"], "gimp", session["editor"].pid), session["editor"].pid,
            sys.executable, session["env"], None, CONFIG,
        ).start()
    own = session["connect"]()  # what the hook does: a private pipe worker
    assert not isinstance(own, avow_warm.WarmWorker) and own.ready["pid"] != first.ready["pid"]
    assert own.request("describe")["version"] == __version__
    own.close()
    first.close()


def test_a_hook_of_another_release_is_refused_with_what_to_run(session):
    other = {**CONFIG, "version": "0.0.1"}
    with pytest.raises(avow_client.WorkerUnavailable, match="avow install gimp") as refused:
        session["connect"](other)
    assert "version 0.1.0" in refused.value.message and "0.0.1" in refused.value.message


def test_protocol_garbage_on_the_socket_gets_an_answer_and_the_worker_reads_on(session):
    worker = session["connect"]()
    worker._socket.sendall(b"\xff not json\n")
    event = worker._next_event(60)
    assert event["event"] == "error" and event["error"] == "ProtocolError"
    assert worker.request("describe")["version"] == __version__
    worker.close()


def test_no_warm_worker_where_the_folder_is_not_private(tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    for folder in (runtime / "avow", tmp_path / f"avow-{os.getuid()}"):  # $XDG_RUNTIME_DIR's and the temp fallback
        folder.mkdir(parents=True)
        folder.chmod(0o755)  # open to others: never used
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(avow_warm.tempfile, "gettempdir", lambda: str(tmp_path))
    with pytest.raises(avow_warm.NoWarmWorker):
        avow_warm.runtime_dir()
    result = subprocess.run([sys.executable, "-m", "avow.warm", "--socket", str(runtime / "avow" / "x.sock")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_USAGE and "not a private folder" in result.stderr
    assert not (runtime / "avow" / "x.sock").exists()


def test_a_socket_of_another_kind_is_not_connected_to(session):
    folder = Path(avow_warm.runtime_dir())
    path = avow_warm.socket_path(CONFIG, session["env"], "gimp", session["editor"].pid)
    Path(path).write_text("not a socket")
    with pytest.raises(avow_client.WorkerUnavailable, match="not this user's Avow worker socket"):
        session["connect"]()
    assert folder == session["runtime"]


@pytest.mark.parametrize("value", ["0", "-1", '"ten"', "true", "100000"])
def test_idle_minutes_setting_is_checked(tmp_path, monkeypatch, value):
    (tmp_path / "config.toml").write_text(f"[worker]\nidle_minutes = {value}\n")
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(tmp_path))
    with pytest.raises(SettingsError, match=r"\[worker\] idle_minutes"):
        settings()


def test_a_socket_path_too_long_means_no_warm_worker(tmp_path, monkeypatch):
    runtime = tmp_path / ("long-" * 20)
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with pytest.raises(avow_warm.NoWarmWorker, match="too long for a Unix socket"):
        avow_warm.socket_path(CONFIG, {}, "gimp", 1)


def test_a_worker_that_cannot_start_says_what_to_run(session):
    """A Python that fails at once (here /bin/false; in life a venv of an older Avow, without avow.warm)."""
    with pytest.raises(avow_client.WorkerUnavailable, match=r"did not start .*avow install gimp"):
        session["connect"]({**CONFIG, "python": "/bin/false"})


def test_a_stop_signal_cancels_the_job_and_the_worker_leaves_nothing(session, tmp_path):
    """SIGTERM (a logout, `kill`) mid-upscale: the job stops as on a closed connection, its scratch folder
    goes, and the worker exits and removes its socket."""
    scratch = avow_client.scratch_dir(str(tmp_path / "job-"))
    source, target = os.path.join(scratch, "in.npy"), os.path.join(scratch, "out.npy")
    np.save(source, np.random.default_rng(2).random((360, 480, 3), dtype=np.float32))
    worker = session["connect"](scratch=scratch)
    pid = worker.ready["pid"]

    def stop_at_first_tile(done, total):
        if done == 1:
            os.kill(pid, 15)

    with pytest.raises(avow_client.WorkerError):
        worker.request("upscale", on_progress=stop_at_first_tile, input=source, output=target, scale=4, tile=64,
                       device="cpu")
    worker.close()
    assert process_gone(pid)
    assert not os.path.exists(scratch), "the stopped job's scratch folder was left behind"
    assert not list(session["runtime"].glob("*.sock"))
