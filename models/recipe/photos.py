"""Photographs from Debian packages: installed at training time, each with author and licence.

The recipe asks the Debian registry (``apt-get download``, no root needed) for two wallpaper
packages and unpacks them with ``dpkg-deb -x`` into a cache folder; nothing is fetched at run
time, and nothing here is needed to *use* the models. Every picture is listed below with the
author and licence its package's ``copyright`` file (DEP-5) gives; ``install`` re-reads that file
and refuses to go on if a listed licence no longer matches, so a repackaged upstream cannot slip
a differently licensed picture into training.

What is trained on, and why: only CC0 and CC-BY pictures. Avow's weights are MIT; whether weights
are an adaptation of their training pictures is unsettled, and a share-alike (CC-BY-SA) or
copyleft (GPL/LGPL) picture could then bind the weights to its licence. Those pictures are used
only as *held-out* photographs: measuring a model on a picture makes and distributes nothing
derived from it. CC-BY asks for attribution, which the model card gives (author, licence, source
package and file for every picture).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path.home() / ".cache" / "avow-recipe"


@dataclass(frozen=True)
class Photo:
    package: str
    version: str
    path: str  # inside the package
    author: str
    license: str  # SPDX, as the package's copyright file states it
    use: str  # "training" or "held-out"

    @property
    def name(self) -> str:
        return Path(self.path).name


def _lomiri(file: str, author: str, license: str, use: str) -> Photo:
    return Photo("lomiri-wallpapers-16.04", "20.04.0-2", f"usr/share/backgrounds/{file}", author, license, use)


def _mate(file: str, author: str) -> Photo:
    return Photo("mate-backgrounds", "1.26.0-1", f"usr/share/backgrounds/mate/nature/{file}", author, "GPL-2+", "held-out")


# Debian 12 (bookworm). Chosen before any training; the held-out ones are never trained on.
PHOTOS = (
    _lomiri("seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0", "training"),
    _lomiri("aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "training"),
    _lomiri("friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "training"),
    _lomiri("life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "training"),
    _lomiri("picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "training"),
    _lomiri("sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "training"),
    _lomiri("Picture_0B_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0", "training"),
    _lomiri("Picture_1A_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0", "training"),
    _lomiri("umang_by_Abhishek_Mudgal.jpg", "Abhishek Mudgal", "CC-BY-4.0", "training"),
    _lomiri("Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0", "training"),
    _lomiri("Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0", "held-out"),
    _lomiri("Dragonfly_by_Bolly.jpg", '"Bolly"', "CC-BY-SA-4.0", "held-out"),
    _lomiri("analogpattern_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0", "held-out"),
    _lomiri("free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0", "held-out"),
    _lomiri("greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0", "held-out"),
    _mate("Garden.jpg", "Charles Barbin"),
    _mate("LadyBird.jpg", "Charles Barbin"),
    _mate("TwoWings.jpg", "Charles Barbin, Hylke Bons"),
    _mate("Wood.jpg", "Jean-François Fortin Tam"),
)


class PhotoError(RuntimeError):
    pass


def install(cache: Path = CACHE) -> dict[str, Path]:
    """Download and unpack the packages once; return {picture name: path} for every listed photo."""
    paths: dict[str, Path] = {}
    for package in sorted({photo.package for photo in PHOTOS}):
        root = cache / "packages" / package
        if not (root / "usr/share/doc" / package / "copyright").is_file():
            _download(package, root)
        licences = _copyright_licences((root / "usr/share/doc" / package / "copyright").read_text())
        for photo in (p for p in PHOTOS if p.package == package):
            path = root / photo.path
            stated = licences.get(photo.name)
            if stated != photo.license or not path.is_file():
                raise PhotoError(
                    f"{package}: {photo.name} is {stated or 'missing'} in the copyright file, the recipe expects {photo.license}"
                )
            paths[photo.name] = path
    return paths


def _download(package: str, root: Path) -> None:
    version = next(p.version for p in PHOTOS if p.package == package)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=work, check=True, capture_output=True)
        (deb,) = Path(work).glob("*.deb")
        staging = root.with_name(root.name + ".partial")
        subprocess.run(["rm", "-rf", str(staging)], check=True)
        staging.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
        staging.replace(root)


def _copyright_licences(text: str) -> dict[str, str]:
    """{file base name: License} from a machine-readable (DEP-5) copyright file."""
    licences: dict[str, str] = {}
    for paragraph in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", paragraph, re.M)
        licence = re.search(r"^License:\s*(\S+)", paragraph, re.M)
        if files and licence:
            for name in files.group(1).split():
                licences[Path(name).name] = licence.group(1)
    return licences
