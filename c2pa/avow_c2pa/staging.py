"""Files a job writes before its output is complete: beside the target, never under an image name.

A staged file ends in ``.avow-partial``, so no viewer, editor or ``avow verify -r`` takes its
undisclosed pixels for a picture, and the final ``os.replace`` is the only moment an image name
appears. Writers are told the format explicitly (nothing may pick it from this name).

A crash or SIGKILL leaves staged files behind; the next run in that folder sweeps them. The rule is
the owner's process id, which the name carries: a file is removed only once no process with that
id exists on this machine. A live run's files are therefore never touched; a recycled id only
delays the sweep until that process ends too.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

SUFFIX = ".avow-partial"
_STAGED = re.compile(r"^\..+\.(\d{1,10})-[0-9a-f]{8}\.[a-z]+" + re.escape(SUFFIX) + "$")


def staged_path(target: Path, step: str) -> Path:
    """A fresh name beside ``target`` for one step of this process's job (``step``: lowercase letters)."""
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.{step}{SUFFIX}")


def sweep(folder: Path) -> list[Path]:
    """Remove the staged files in ``folder`` whose owner process is gone; returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # the run itself reports an unusable folder
    for entry in entries:
        match = _STAGED.match(entry.name)
        if match is None or _alive(int(match[1])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # swept by another run meanwhile, or not ours to remove
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except (OverflowError, ValueError):
        return False  # no process can have that id
    return True
