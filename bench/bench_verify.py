"""`avow verify` at scale: cold start, and files per second on a folder of signed JPEGs, beside exiftool.

    .venv/bin/python bench/bench_verify.py [--files 1000] [--jobs N]

Makes the folder first (signed by a throwaway identity), then times whole commands as a user
runs them, each twice (the second run has warm file caches), and prints the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--jobs", type=int)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="avow-bench-home-")
    os.environ["AVOW_CONFIG_DIR"] = home
    from hostile import signed

    folder = Path(tempfile.mkdtemp(prefix="avow-bench-verify-"))
    first = signed(folder, "jpg", name="0000.jpg")
    for index in range(1, args.files):
        shutil.copyfile(first, folder / f"{index:04d}.jpg")
    env = {**os.environ}
    avow = [sys.executable, "-m", "avow", "verify"]
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    print(f"{args.files} signed JPEGs of {first.stat().st_size} bytes; {os.cpu_count()} CPUs")
    print(f"avow --version (imports only):  {timed([sys.executable, '-m', 'avow', '--version'], env):.2f} s")
    print(f"avow verify, one file (cold):   {timed(avow + [str(first)], env):.2f} s")
    for attempt in (1, 2):
        seconds = timed(avow + ["-r", "--json", *jobs, str(folder)], env)
        print(f"avow verify -r, run {attempt}:         {seconds:.2f} s, {args.files / seconds:.0f} files/s, "
              f"{1000 * seconds / args.files:.1f} ms/file")
    if shutil.which("exiftool"):
        for attempt in (1, 2):
            seconds = timed(["exiftool", "-j", str(folder)], env)
            print(f"exiftool -j, run {attempt}:            {seconds:.2f} s, {args.files / seconds:.0f} files/s, "
                  f"{1000 * seconds / args.files:.1f} ms/file")
    else:
        print("exiftool not installed (apt-get install libimage-exiftool-perl) for the side-by-side figure")
    shutil.rmtree(folder)
    shutil.rmtree(home)


if __name__ == "__main__":
    main()
