"""`avow install gimp|krita`: put an editor hook where the editor looks, and tell it which Python runs the worker.

The hooks run in the editor's own Python, which cannot import Avow; ``avow.json`` beside each hook
names this environment's interpreter so the hook can start ``python -m avow.worker``. The shared
stdlib client is copied next to each hook, so the hooks stay single-source.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import PROTOCOL, __version__
from .errors import UsageError

CONFIG_NAME = "avow.json"
CLIENT_NAMES = ("avow_client.py", "avow_warm.py")  # the stdlib worker client, copied beside each hook
KRITA_PLUGIN = "avow_krita"  # the .desktop file's X-KDE-Library and the package folder


def hooks_dir() -> Path:
    """Where the hooks are: ``avow/hooks/`` in an installed wheel, ``plugin/`` (beside ``avow/``) in a checkout."""
    package = Path(__file__).resolve().parent
    return package.parent if (package.parent / "client").is_dir() else package / "hooks"


@dataclass(frozen=True)
class Step:
    description: str
    action: Callable[[], object]


def _xdg(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or Path.home() / default)


def gimp_plugins_dir() -> Path:
    """GIMP 3's per-user plug-in folder (Flatpak GIMP: ~/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "GIMP" / "3.0" / "plug-ins"


def krita_pykrita_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "krita" / "pykrita"


def install_steps(editor: str, target: Path | None = None) -> list[Step]:
    """The steps, once every file they copy is known to be there (so `--print` fails as the install would)."""
    if editor not in ("gimp", "krita"):
        raise UsageError(f"unknown editor {editor!r}: gimp or krita")
    _require_sources(editor)
    if editor == "gimp":
        return _gimp_steps((target or gimp_plugins_dir()) / "avow-upscale")
    return _krita_steps(target or krita_pykrita_dir())


def _sources(editor: str) -> list[Path]:
    hooks = hooks_dir()
    if editor == "gimp":
        return [hooks / "gimp" / "avow-upscale" / "avow-upscale.py", *_clients()]
    return [hooks / "krita" / KRITA_PLUGIN / "__init__.py", hooks / "krita" / f"{KRITA_PLUGIN}.desktop", *_clients()]


def _clients() -> list[Path]:
    return [hooks_dir() / "client" / name for name in CLIENT_NAMES]


def _copy_clients(folder: Path) -> Step:
    def copy() -> None:
        for source in _clients():
            _copy(source, folder / source.name, 0o644)

    return Step(f"copy the worker client ({', '.join(CLIENT_NAMES)}) to {folder}", copy)


def _require_sources(editor: str) -> None:
    missing = [str(path) for path in _sources(editor) if not path.is_file()]
    if missing:
        raise UsageError(f"this installation of Avow lacks its {editor} hook ({', '.join(missing)} missing); "
                         "reinstall it from a wheel or a checkout")


def _gimp_steps(folder: Path) -> list[Step]:
    hooks = hooks_dir()
    source, plugin = hooks / "gimp" / "avow-upscale" / "avow-upscale.py", folder / "avow-upscale.py"
    return _removed_on_failure(folder, [
        Step(f"create {folder}", lambda: folder.mkdir(parents=True, exist_ok=True)),
        Step(f"copy the plug-in to {plugin} (executable)", lambda: _copy(source, plugin, 0o755)),
        _copy_clients(folder),
        _config_step(folder, "gimp"),
    ])


def _krita_steps(pykrita: Path) -> list[Step]:
    hooks = hooks_dir()
    package = pykrita / KRITA_PLUGIN
    desktop = f"{KRITA_PLUGIN}.desktop"
    kritarc = _xdg("XDG_CONFIG_HOME", ".config") / "kritarc"
    return _removed_on_failure(package, [
        Step(f"copy the plugin to {package}", lambda: _copytree(hooks / "krita" / KRITA_PLUGIN, package)),
        Step(f"copy {pykrita / desktop}", lambda: _copy(hooks / "krita" / desktop, pykrita / desktop, 0o644)),
        _copy_clients(package),
        _config_step(package, "krita"),
        Step(f"enable the plugin in {kritarc} ([python] enable_{KRITA_PLUGIN}=true)", lambda: _enable_in_kritarc(kritarc)),
    ])


def _removed_on_failure(folder: Path, steps: list[Step]) -> list[Step]:
    """A failed install leaves no half-filled hook folder behind (the editor would load it); one that was there stays."""
    existed = folder.exists()

    def guarded(action: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            try:
                return action()
            except BaseException:
                if not existed:
                    shutil.rmtree(folder, ignore_errors=True)
                raise
        return run

    return [Step(step.description, guarded(step.action)) for step in steps]


def package_krita(target: Path) -> None:
    """A zip for Krita's "Tools > Scripts > Import Python Plugin from File...", worker config included."""
    _require_sources("krita")
    with tempfile.TemporaryDirectory() as staging:
        for step in _krita_steps(Path(staging))[:-1]:  # all but kritarc: Krita enables imported plugins itself
            step.action()
        archive = shutil.make_archive(str(target.with_suffix("")), "zip", staging)
    if Path(archive) != target:
        os.replace(archive, target)


def _config_step(folder: Path, editor: str) -> Step:
    """The worker's Python, and the version and protocol the hook was installed for: the hook's client
    refuses a worker of another (a venv upgraded without reinstalling the hook)."""
    config = {"python": sys.executable, "version": __version__, "protocol": PROTOCOL, "editor": editor}
    return Step(
        f"write {folder / CONFIG_NAME}: worker runs with {sys.executable}",
        lambda: (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8"),
    )


def _copy(source: Path, target: Path, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def _copytree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


def _enable_in_kritarc(kritarc: Path) -> None:
    config = configparser.ConfigParser(interpolation=None, strict=False)
    config.optionxform = str  # type: ignore[method-assign,assignment]  # Krita's keys are case-sensitive
    if kritarc.exists():
        config.read(kritarc, encoding="utf-8")
    if not config.has_section("python"):
        config.add_section("python")
    config.set("python", f"enable_{KRITA_PLUGIN}", "true")
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    with open(kritarc, "w", encoding="utf-8") as handle:
        config.write(handle, space_around_delimiters=False)
