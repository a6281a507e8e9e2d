"""Train Avow's default compact upscaler (SRVGGNetCompact) for one scale, reproducibly, on CPU or CUDA.

    PYTHONPATH=models .venv/bin/python models/recipe/train.py --scale 4 --out models/avow_models/weights/avow-compact-x4.safetensors

Recipe: low-resolution inputs are precomputed once per training picture with MATLAB-style
bicubic (flips and 90° rotations commute with that kernel, so augmenting the aligned pair is
exact); random aligned crops, random flip/rot90, L1 loss, Adam with cosine decay, fixed seed.
Everything the result depends on is a command-line flag, recorded in the weights' metadata.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

from avow_models.archs.srvgg import SRVGGNetCompact  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=(2, 4), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num-feat", type=int, default=32)
    parser.add_argument("--num-conv", type=int, default=8)
    parser.add_argument("--iters", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr-patch", type=int, default=None, help="LR crop side (default 48 at x2, 32 at x4)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args()


class PairSampler:
    """Random aligned (LR, HR) crops with flips/rot90, drawn in proportion to picture area."""

    def __init__(self, scale: int, lr_patch: int, seed: int) -> None:
        self.scale, self.lr_patch = scale, lr_patch
        self.pairs = []
        for hr in data.training_images():
            hr = data.crop_to_multiple(hr, scale)
            self.pairs.append((data.degrade(hr, scale), hr))
        areas = np.array([lr.shape[0] * lr.shape[1] for lr, _ in self.pairs], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        lrs, hrs = [], []
        p, s = self.lr_patch, self.scale
        for index in self.rng.choice(len(self.pairs), size=size, p=self.weights):
            lr, hr = self.pairs[index]
            top, left = self.rng.integers(0, lr.shape[0] - p + 1), self.rng.integers(0, lr.shape[1] - p + 1)
            lr_crop = lr[top : top + p, left : left + p]
            hr_crop = hr[top * s : (top + p) * s, left * s : (left + p) * s]
            turns, flip = self.rng.integers(0, 4), self.rng.integers(0, 2)
            lr_crop, hr_crop = np.rot90(lr_crop, turns), np.rot90(hr_crop, turns)
            if flip:
                lr_crop, hr_crop = lr_crop[:, ::-1], hr_crop[:, ::-1]
            lrs.append(np.ascontiguousarray(lr_crop))
            hrs.append(np.ascontiguousarray(hr_crop))
        as_tensor = lambda crops: torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
        return as_tensor(lrs), as_tensor(hrs)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    lr_patch = args.lr_patch or (48 if args.scale == 2 else 32)
    device = torch.device(args.device)
    model = SRVGGNetCompact(num_feat=args.num_feat, num_conv=args.num_conv, scale=args.scale).to(device)
    params = sum(p.numel() for p in model.parameters())
    sampler = PairSampler(args.scale, lr_patch, args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step / args.iters, 1.0)))
    )
    print(f"x{args.scale}: {params} params, {args.iters} iters of {args.batch}x{lr_patch}px on {device}", flush=True)
    started, running = time.perf_counter(), 0.0
    for step in range(1, args.iters + 1):
        lr_batch, hr_batch = (t.to(device) for t in sampler.batch(args.batch))
        loss = torch.nn.functional.l1_loss(model(lr_batch), hr_batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running += loss.item()
        if step % 100 == 0 or step == args.iters:
            elapsed = time.perf_counter() - started
            print(f"iter {step}: L1 {running / 100:.5f}, {elapsed:.0f}s", flush=True)
            running = 0.0
        if step % 500 == 0 or step == args.iters:
            save(model, args, lr_patch, params, step)


def save(model: SRVGGNetCompact, args: argparse.Namespace, lr_patch: int, params: int, step: int) -> None:
    metadata = {
        "arch": "SRVGGNetCompact",
        "scale": str(args.scale),
        "num_feat": str(args.num_feat),
        "num_conv": str(args.num_conv),
        "params": str(params),
        "recipe": (
            f"train.py --scale {args.scale} --num-feat {args.num_feat} --num-conv {args.num_conv} "
            f"--iters {args.iters} --batch {args.batch} --lr-patch {lr_patch} --lr {args.lr} --seed {args.seed}"
        ),
        "iterations_done": str(step),
    }
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    save_file(state, str(partial), metadata=metadata)
    os.replace(partial, args.out)


if __name__ == "__main__":
    main()
