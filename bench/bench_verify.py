"""`avow verify` at scale, beside exiftool: cold start, then whole folders as a user runs them.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_verify.py [--files 200] [--distinct 10] [--jobs N] [--runs 5]

Two folders, each timed with `avow verify -r --json` and `exiftool -j` side by side, ``--runs``
times in alternation (file caches warm after the first), and the median of the ratios; on the
camera folder also the least that any verifier which looks at the pixels must do (decode every
file at 1/8 scale, luma only, one process per CPU as avow's parsers, nothing else), against
exiftool in the same alternation:
  * signed: Avow outputs as `avow upscale` writes them (0.5 MP JPEGs, x2 upscales carrying the
    pixel mark, EXIF/XMP disclosure, a signed C2PA manifest by a throwaway identity);
  * camera: unsigned 12 MP JPEGs with no mark (what a verifier mostly sees).
Unsigned 0.5 MP JPEGs with no mark get the per-file breakdown below, not a folder run.
``--distinct`` different pictures per folder, copied up to ``--files``. Then, in this process
(with the allocator settings of avow's parser processes) and on one core, the CPU time per file
of each step of the pixel search (median over the distinct files): a 1/8-scale luma decode, the
least any search of a JPEG's pixels must pay (every coefficient is still entropy-decoded;
exiftool reads only the headers), the reduced decode, the working luma and its whitening, the
native and turned periods, the same slightly rotated, the scale scan, `detect` as a whole (which
stops at the first readable payload), and what verify pays for the pixels (`search_file`: decode
and search, the signed outputs' manifest claiming their x2 scale, which is tried first on a
half-size decode).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # what importing avow does (avow/__init__.py), before numpy loads
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def decode_floor(folder: Path) -> None:
    """Decode every JPEG of ``folder`` at 1/8 scale, luma only, one process per CPU: no search,
    no manifest, no report."""
    from multiprocessing import Pool

    with Pool(os.cpu_count()) as pool:
        pool.map(_decode_eighth, sorted(folder.glob("*.jpg")), chunksize=8)


def _decode_eighth(path: Path) -> None:
    with Image.open(path) as image:
        image.draft("L", (image.width // 8, image.height // 8))
        image.load()


def picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photograph-like 8-bit picture: smooth shapes, 1/f texture, a camera's faint noise."""
    small = rng.random((max(2, height // 64), max(2, width // 64), 3))
    image = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC), np.float32)
    for cells, amplitude in ((16, 40), (4, 20), (1, 8)):
        detail = rng.normal(0, amplitude, (max(2, height // cells), max(2, width // cells))).astype(np.float32)
        image += np.asarray(Image.fromarray(detail, "F").resize((width, height), Image.BICUBIC))[..., None]
    image += rng.normal(0, 2, image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def make_folders(root: Path, files: int, distinct: int) -> dict[str, Path]:
    from avow_c2pa import watermark
    from hostile import signed

    rng = np.random.default_rng(3)
    folders = {"signed": root / "signed", "camera": root / "camera"}
    for folder in folders.values():
        folder.mkdir()
    for index in range(files):
        for kind, folder in folders.items():
            target = folder / f"{index:04d}.jpg"
            if index >= distinct:
                shutil.copyfile(folder / f"{index % distinct:04d}.jpg", target)
            elif kind == "signed":
                source = picture(rng, 433, 289)
                output = np.asarray(Image.fromarray(source).resize((866, 578), Image.BICUBIC), np.float32) / 255
                marked = watermark.embed(output, int(rng.integers(0, 1 << 32)), source_size=(433, 289))
                signed(folder, "jpg", name=target.name, picture=(marked * 255 + 0.5).astype(np.uint8))
            else:
                Image.fromarray(picture(rng, 3000, 4000)).save(target, quality=90)
    return folders


def search_steps(path: Path, claimed: int | None) -> dict[str, float]:
    """CPU seconds of each step of the pixel search on one file (the steps detect() runs, each
    run to the end here; detect itself stops at the first readable payload), then verify's whole
    search of the file with the scale its manifest claims."""
    from avow_c2pa import watermark
    from avow_c2pa.pixels import decode, search_file
    from avow_c2pa.watermark import coding, pixels, search

    layout = coding._layout(watermark.DEFAULT_KEY)
    clock = [time.process_time()]
    _decode_eighth(path)  # the least any look at a JPEG's pixels costs: its DC terms, luma only
    clock.append(time.process_time())
    decoded, full_size, _ = decode(path)
    clock.append(time.process_time())
    luma = pixels._working_luma(decoded)
    white = pixels._whiten(luma)
    clock.append(time.process_time())
    resolutions = search._Resolutions(white)
    size = (full_size[1], full_size[0])
    list(search._native_search(resolutions, layout, size, luma.shape))
    clock.append(time.process_time())
    list(search._rotated_search(resolutions, layout, size, luma.shape))
    clock.append(time.process_time())
    list(search._scan_search(resolutions, layout, size))
    clock.append(time.process_time())
    found = watermark.detect(decoded, full_size=full_size)
    clock.append(time.process_time())
    searched = search_file(path, claimed)
    clock.append(time.process_time())
    names = ("1/8-scale decode (floor)", "decode", "luma+whiten", "native+turned", "rotated", "scan", "detect()", "search_file")
    steps = dict(zip(names, np.diff(clock), strict=True))
    steps["found"] = float(found.found and bool(searched["found"]))
    return steps


def print_steps(paths: list[Path], claimed: int | None) -> None:
    steps = [search_steps(path, claimed) for path in paths]
    print(f"  pixel search, CPU ms per file (median of {len(steps)}; found in {sum(s['found'] for s in steps):.0f}): "
          + ", ".join(f"{name} {1000 * np.median([s[name] for s in steps]):.1f}" for name in steps[0] if name != "found"))


def main() -> None:
    from avow_c2pa.isolation import CHILD_ALLOCATOR

    if any(os.environ.get(name) != value for name, value in CHILD_ALLOCATOR.items()):
        # The per-file breakdown runs in this process: under the allocator settings of avow's parsers.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **CHILD_ALLOCATOR})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--distinct", type=int, default=10)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--runs", type=int, default=5, help="alternations of avow and exiftool per folder")
    parser.add_argument("--decode-floor", type=Path, help=argparse.SUPPRESS)  # the floor's own process
    args = parser.parse_args()
    if args.decode_floor:
        decode_floor(args.decode_floor)
        return
    home = tempfile.mkdtemp(prefix="avow-bench-home-")
    os.environ["AVOW_CONFIG_DIR"] = home
    root = Path(tempfile.mkdtemp(prefix="avow-bench-verify-"))
    folders = make_folders(root, args.files, min(args.distinct, args.files))
    env = {**os.environ}
    avow = [sys.executable, "-m", "avow", "verify"]
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    print(f"{os.cpu_count()} CPUs; {args.files} files per folder ({min(args.distinct, args.files)} distinct)")
    print(f"avow --version (imports only):  {timed([sys.executable, '-m', 'avow', '--version'], env):.2f} s")
    print(f"avow verify, one file (cold):   {timed(avow + [str(folders['signed'] / '0000.jpg')], env):.2f} s")
    for kind, folder in folders.items():
        size = (folder / "0000.jpg").stat().st_size
        with Image.open(folder / "0000.jpg") as image:
            print(f"\n{kind}: {image.width}x{image.height} JPEGs of ~{size // 1000} kB")
        commands = {"avow verify -r": avow + ["-r", "--json", *jobs, str(folder)]}
        if kind == "camera":
            commands["decode floor"] = [sys.executable, __file__, "--decode-floor", str(folder)]
        ratios: dict[str, list[float]] = {name: [] for name in commands}
        for attempt in range(1, args.runs + 1):
            row = {}
            for name, command in [*commands.items(), ("exiftool -j", ["exiftool", "-j", str(folder)])]:
                if name == "exiftool -j" and not shutil.which("exiftool"):
                    continue
                row[name] = timed(command, env)
                print(f"  {name:15s} run {attempt}: {row[name]:6.2f} s, {1000 * row[name] / args.files:6.1f} ms/file")
            if "exiftool -j" in row:
                for name in commands:
                    ratios[name].append(row[name] / row["exiftool -j"])
                print("  " + ", ".join(f"{name} / exiftool: {ratios[name][-1]:.2f}x" for name in commands))
        for name, values in ratios.items():
            if values:
                print(f"  {name} / exiftool, median of {len(values)} runs side by side: {np.median(values):.2f}x")
        distinct = [folder / f"{index:04d}.jpg" for index in range(min(args.distinct, args.files))]
        print_steps(distinct, 2 if kind == "signed" else None)
    print("\nunsigned 0.5 MP JPEGs with no mark (866x578, q90), the pixel search alone:")
    rng = np.random.default_rng(4)
    small = []
    for index in range(min(args.distinct, args.files)):
        small.append(root / f"small-{index}.jpg")
        Image.fromarray(picture(rng, 578, 866)).save(small[-1], quality=90)
    print_steps(small, None)
    if not shutil.which("exiftool"):
        print("exiftool not installed (apt-get install libimage-exiftool-perl) for the side-by-side figure")
    shutil.rmtree(root)
    shutil.rmtree(home)


if __name__ == "__main__":
    main()
