"""Fuzz `verify_file` with random mutations of signed files for a set time, and report what happened.

    AVOW_CONFIG_DIR=$(mktemp -d) .venv/bin/python bench/fuzz_verify.py --seconds 600

Runs in this process for speed. Before each execution the input is written to ``last-input``,
so a native crash leaves the input that caused it behind; an escaping Python exception is saved
as ``finding-N`` and counted. Prints executions, executions/s, verdict counts and findings.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from avow_c2pa.verify import trust_anchors, verify_file
from hostile import signed


def mutate(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(buffer))
        action = rng.random()
        if action < 0.5:
            buffer[position] = rng.randrange(256)
        elif action < 0.75:
            buffer[position:position] = rng.randbytes(rng.randint(1, 16))
        else:
            del buffer[position : position + rng.randint(1, 64)]
    if rng.random() < 0.2:
        del buffer[rng.randrange(len(buffer)) :]
    return bytes(buffer) or b"\xff"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="avow-fuzz-")))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seeds = {ext: signed(args.out, ext).read_bytes() for ext in ("jpg", "png", "webp", "tiff")}
    anchors = trust_anchors()
    verdicts, findings, executions = Counter(), 0, 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        ext = rng.choice(list(seeds))
        path = args.out / f"last-input.{ext}"
        path.write_bytes(mutate(seeds[ext], rng))
        try:
            verdicts[verify_file(path, anchors).verdict] += 1
        except Exception:  # noqa: BLE001  (any exception is a finding: verify_file must never raise)
            findings += 1
            (args.out / f"finding-{findings}.{ext}").write_bytes(path.read_bytes())
            traceback.print_exc()
        executions += 1
    print(f"{executions} executions in {args.seconds:.0f} s ({executions / args.seconds:.0f}/s), seed {args.seed}")
    print("verdicts: " + ", ".join(f"{verdict} {count}" for verdict, count in verdicts.most_common()))
    print(f"findings: {findings} (inputs in {args.out})")


if __name__ == "__main__":
    main()
