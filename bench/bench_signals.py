"""Fail closed under signals: SIGTERM and SIGKILL trials at random moments of a real `avow upscale`,
then what the output folder holds. Figures, not pass/fail (but it exits 1 on any violation).

    nice .venv/bin/python bench/bench_signals.py [--trials 20] [--seed 1] [--input IMG] [--scale 2]

The run's own duration is measured first (median of two clean runs); each trial then starts the
CLI, sleeps a delay drawn uniformly from [0, that duration], sends the signal and waits. Each
signal's trials share one folder, so each trial is also "the next run" for the one before it.
After a trial the folder may hold only: the complete output (checked with `avow verify --json`:
ai-synthesized), nothing, or staged files under non-image names. A last clean run per folder shows
what is swept. Random delays mostly land in start-up and inference, so the same trials are also run
at random moments after the staged file is opened (the output phase, measured in a clean run) and
once at each exact moment of the commit path (tests/signal_at.py), where a stray file would appear.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTIAL = ".avow-partial"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".avif", ".gif"}
MOMENTS = ("model", "tile", "stage", "sign", "sdk-read", "sdk-write", "replace")


def command(source: Path, target: Path, scale: int) -> list[str]:
    return [sys.executable, "-m", "avow", "upscale", str(source), "-o", str(target), "--scale", str(scale)]


def verdict(path: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "avow", "verify", "--json", str(path)], capture_output=True, text=True)
    try:
        return json.loads(done.stdout)["verdict"]
    except (ValueError, KeyError):
        return f"unreadable ({done.stderr.strip()[:80]})"


def inspect(folder: Path, target: Path) -> tuple[str, list[str], list[str]]:
    """The trial's outcome: 'full', 'nothing' or 'VIOLATION ...'; its staged files; any other file."""
    names = sorted(p.name for p in folder.iterdir())
    staged = [n for n in names if n.startswith(f".{target.name}.") and n.endswith(PARTIAL)]
    strays = [n for n in names if n != target.name and not n.endswith(PARTIAL)]
    if target.exists():
        seen = verdict(target)
        outcome = "full" if seen == "ai-synthesized" else f"VIOLATION: {target.name} is {seen}"
    else:
        outcome = "nothing"
    return outcome, staged, strays


def trial(cmd: list[str], signum: int, delay: float) -> int:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signum)
    return process.wait()


def run_trials(name: str, runs, folder: Path, args) -> int:
    """``runs``: (label, target name, start) where start(target) returns the exit code; returns the violations."""
    folder.mkdir()
    outcomes: Counter = Counter()
    codes: Counter = Counter()
    staged_total, swept_by_next, violations = 0, 0, []
    previous: list[str] = []
    for label, target, start in runs:
        codes[start(folder / target)] += 1
        outcome, staged, strays = inspect(folder, folder / target)
        outcomes[outcome if not outcome.startswith("VIOLATION") else "violation"] += 1
        if outcome.startswith("VIOLATION") or strays:
            violations.append(f"{label}: {outcome}; strays {strays}")
        staged_total += len(staged)
        swept_by_next += sum(not (folder / n).exists() for n in previous)
        previous = staged
        (folder / target).unlink(missing_ok=True)  # keep only what a trial leaves behind unasked
    final = subprocess.run(command(args.input, folder / "final.png", args.scale), capture_output=True, text=True)
    remaining = sorted(p.name for p in folder.iterdir() if p.name.endswith(PARTIAL))
    swept_by_next += sum(not (folder / n).exists() for n in previous)
    print(
        f"{name}: {sum(outcomes.values())} trials; complete output {outcomes['full']}, nothing {outcomes['nothing']}, "
        f"violations {outcomes['violation']}; exit codes {dict(sorted(codes.items()))}; staged files left "
        f"{staged_total}, swept by the next run {swept_by_next}, remaining after a final clean run "
        f"{len(remaining)} (final run exit {final.returncode})"
    )
    for line in violations:
        print(f"  {line}")
    return len(violations) + len(remaining) + (final.returncode != 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="per signal, at random moments of the whole run")
    parser.add_argument("--late-trials", type=int, default=10, help="per signal, at random moments after staging")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--input", type=Path, default=ROOT / "models" / "samples" / "chelsea.jpg")
    parser.add_argument("--scale", type=int, default=2)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="avow-signals-"))
    os.environ.setdefault("AVOW_CONFIG_DIR", str(work / "home"))

    durations = []
    for number in range(2):
        started = time.perf_counter()
        done = subprocess.run(command(args.input, work / f"clean-{number}.png", args.scale), capture_output=True,
                              text=True)
        durations.append(time.perf_counter() - started)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
    duration = statistics.median(durations)
    print(f"clean run: {duration:.1f} s median of {len(durations)} (x{args.scale}, {args.input.name}); "
          f"delays drawn from [0, {duration:.1f}] s; machine shared and loaded")

    at = [sys.executable, str(ROOT / "tests" / "signal_at.py")]
    probe = subprocess.run([*at, "times", "TERM", "avow", *command(args.input, work / "probe.png", args.scale)[3:]],
                           capture_output=True, text=True)
    times = json.loads(probe.stderr.strip().splitlines()[-1])
    late = times["exit"] - times["stage"]
    print("moments of a clean run (s): " + ", ".join(f"{k} {v:.2f}" for k, v in times.items()))

    bad = 0
    for signame in ("TERM", "KILL"):
        signum = getattr(signal, f"SIG{signame}")

        def at_moment(target: Path, moment: str, signame: str = signame) -> int:
            return subprocess.run([*at, moment, signame, "avow", *command(args.input, target, args.scale)[3:]],
                                  capture_output=True).returncode

        delays = [rng.uniform(0, duration) for _ in range(args.trials)]
        runs = [
            (f"t{i} at {d:.2f}s", f"t{i}.png",
             lambda target, d=d, signum=signum: trial(command(args.input, target, args.scale), signum, d))
            for i, d in enumerate(delays)
        ]
        bad += run_trials(f"SIG{signame} at random moments of the run", runs, work / f"random-{signame}", args)
        delays = [rng.uniform(0, late) for _ in range(args.late_trials)]
        runs = [
            (f"s{i} at stage+{d:.3f}s", f"s{i}.png", lambda target, d=d: at_moment(target, f"stage+{d:.3f}"))
            for i, d in enumerate(delays)
        ]
        bad += run_trials(f"SIG{signame} at random moments after staging [0, {late:.2f}] s", runs,
                          work / f"late-{signame}", args)
        runs = [(moment, f"{moment}.png", lambda target, m=moment: at_moment(target, m)) for moment in MOMENTS]
        bad += run_trials(f"SIG{signame} at {', '.join(MOMENTS)}", runs, work / f"moments-{signame}", args)
    print(f"violations: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
