"""The built wheel, installed in a fresh venv, is a complete Avow: the editor hooks, the sample, the licence.

The wheel is built from a copy of this checkout (`pip wheel --no-build-isolation`, offline) and
installed with `--no-deps` into a venv of its own; the dependencies (torch, c2pa, ...) come from
the running environment through a .pth file, so nothing is downloaded. The commands then run as
a user runs them: the venv's `avow` script, no PYTHONPATH, outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a clone may hold besides the sources: built environments, the GIMP chroot, caches.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv*", ".chroot", ".cache", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")


def run(*args, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    print(f"$ {' '.join(str(a) for a in args)}  -> exit {done.returncode}\n{done.stdout}{done.stderr}".rstrip())
    return done


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                "-w", work / "dist", source)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("avow_upscale-*.whl")

    venv = work / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel)
    assert installed.returncode == 0, installed.stderr
    # Only now, so that pip above saw none of the running environment's distributions.
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "avow-test-deps.pth").write_text("\n".join(sorted(deps)) + "\n", encoding="utf-8")

    home = work / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "AVOW_", "XDG_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
               AVOW_CONFIG_DIR=str(home / "avow"))
    home.mkdir()
    return SimpleNamespace(wheel=wheel, venv=venv, python=python, site=site, avow=venv / "bin" / "avow", env=env, home=home)


def test_the_wheel_carries_the_hooks_the_sample_and_the_licence(wheel_venv):
    names = set(zipfile.ZipFile(wheel_venv.wheel).namelist())
    for name in ("avow/hooks/gimp/avow-upscale/avow-upscale.py", "avow/hooks/client/avow_client.py",
                 "avow/hooks/krita/avow_krita.desktop", "avow/hooks/krita/avow_krita/__init__.py",
                 "avow_models/samples/chelsea.jpg", "avow_models/weights/avow-compact-x4.safetensors"):
        assert name in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    hooks = {f"avow/hooks/{path.relative_to(ROOT / 'plugin').as_posix()}"
             for editor in ("gimp", "krita", "client") for path in (ROOT / "plugin" / editor).rglob("*")
             if path.is_file() and "__pycache__" not in path.parts}
    assert hooks <= names, f"pyproject's package-data misses hook files: {sorted(hooks - names)}"
    assert not any("__pycache__" in name or name.startswith(("tests/", "bench/")) for name in names)
    where = run(wheel_venv.python, "-c", "import avow, avow_c2pa, avow_models; print(avow.__file__)",
                env=wheel_venv.env, cwd=wheel_venv.home)
    assert Path(where.stdout.strip()).is_relative_to(wheel_venv.site), "the test must run the installed wheel"
    version = run(wheel_venv.avow, "--version", env=wheel_venv.env, cwd=wheel_venv.home)
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    assert version.returncode == 0 and version.stdout.split()[-1] in metadata  # one version, in both places


def test_installed_wheel_installs_and_packages_the_editor_hooks(wheel_venv):
    avow, env, home = wheel_venv.avow, wheel_venv.env, wheel_venv.home
    gimp, krita = home / "gimp-plug-ins", home / "pykrita"

    dry = run(avow, "install", "gimp", "--print", "--target", gimp, env=env, cwd=home)
    assert dry.returncode == 0 and "would copy the plug-in" in dry.stdout and not gimp.exists()

    done = run(avow, "install", "gimp", "--target", gimp, env=env, cwd=home)
    assert done.returncode == 0, done.stderr
    plugin = gimp / "avow-upscale"
    assert stat.S_IMODE((plugin / "avow-upscale.py").stat().st_mode) == 0o755
    assert (plugin / "avow_client.py").is_file() and (plugin / "avow_warm.py").is_file()
    assert json.loads((plugin / "avow.json").read_text())["python"] == str(wheel_venv.python)

    done = run(avow, "install", "krita", "--target", krita, env=env, cwd=home)
    assert done.returncode == 0, done.stderr
    assert (krita / "avow_krita.desktop").is_file() and (krita / "avow_krita" / "avow_client.py").is_file()
    assert json.loads((krita / "avow_krita" / "avow.json").read_text())["python"] == str(wheel_venv.python)
    assert "enable_avow_krita=true" in (home / "config" / "kritarc").read_text()

    done = run(avow, "package", "krita", "-o", home / "avow_krita.zip", env=env, cwd=home)
    assert done.returncode == 0, done.stderr
    names = zipfile.ZipFile(home / "avow_krita.zip").namelist()
    assert {"avow_krita.desktop", "avow_krita/__init__.py", "avow_krita/avow_client.py", "avow_krita/avow.json"} <= set(names)


def test_installed_wheel_upscales_its_sample(wheel_venv):
    sample = wheel_venv.site / "avow_models" / "samples" / "chelsea.jpg"
    out = wheel_venv.home / "chelsea-x2.png"
    done = run(wheel_venv.avow, "upscale", sample, "-o", out, "--scale", "2", env=wheel_venv.env, cwd=wheel_venv.home)
    assert done.returncode == 0, done.stderr
    done = run(wheel_venv.avow, "verify", out, env=wheel_venv.env, cwd=wheel_venv.home)
    assert done.returncode == 0 and "AI-upscaled by Avow" in done.stdout


def test_an_installation_without_its_hooks_says_so_and_leaves_nothing(wheel_venv, tmp_path):
    """Run last in this module: it removes the hooks from the installed package."""
    shutil.rmtree(wheel_venv.site / "avow" / "hooks")
    env, home, target = wheel_venv.env, wheel_venv.home, tmp_path / "target"
    for args in (("install", "gimp", "--print", "--target", target), ("install", "gimp", "--target", target),
                 ("install", "krita", "--target", target), ("package", "krita", "-o", tmp_path / "k.zip")):
        done = run(wheel_venv.avow, *args, env=env, cwd=home)
        assert done.returncode == 3 and "lacks its" in done.stderr and "Traceback" not in done.stderr
        assert "would" not in done.stdout and "installed" not in done.stdout
    assert not target.exists() and not (tmp_path / "k.zip").exists()
