"""Train Avow's default compact upscaler (SRVGGNetCompact) for one scale, reproducibly, on CPU or CUDA.

    PYTHONPATH=models .venv/bin/python models/recipe/train.py --scale 4 \\
        --out models/avow_models/weights/avow-compact-x4.safetensors --checkpoint models/recipe/runs/x4.ckpt

Recipe: every training picture is used at full size and MATLAB-bicubic shrunk to 3/4 and 1/2
(cleaner HR, more scales of detail); low-resolution inputs are precomputed once per picture with
MATLAB-style bicubic and rounded to 8 bits (flips and 90° rotations commute with that kernel,
so augmenting the aligned pair is exact up to the picture's border). Random aligned crops
(mostly flat ones are usually re-drawn), random flip/rot90/RGB-channel order, L1 loss (then an
optional short L2 phase), Adam with cosine decay, an EMA of the weights (what is saved), fixed
seeds. Everything the result depends on is a command-line flag, recorded in the weights'
metadata. ``--checkpoint`` makes the run resumable: rerunning the same command continues it.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data
from avow_models.archs.srvgg import SRVGGNetCompact

HR_FACTORS = (1.0, 0.75, 0.5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=(2, 4), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num-feat", type=int, default=48)
    parser.add_argument("--num-conv", type=int, default=10)
    parser.add_argument("--iters", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--lr-patch",
        type=int,
        default=None,
        help="LR crop side (default 40 at x2, 32 at x4)",
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--l2-from",
        type=float,
        default=1.0,
        help="fraction of iters after which the loss is L2",
    )
    parser.add_argument("--clip", type=float, default=0.2, help="gradient-norm clip")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="resumable training state (.pt)"
    )
    parser.add_argument("--save-every", type=int, default=500)
    return parser.parse_args(argv)


class PairSampler:
    """Random aligned (LR, HR) crops with flips/rot90/channel order, pictures drawn ∝ sqrt(area)."""

    def __init__(self, scale: int, lr_patch: int, seed: int) -> None:
        self.scale, self.lr_patch = scale, lr_patch
        self.pairs = []
        for picture in data.training_images():
            for factor in HR_FACTORS:
                hr = picture if factor == 1.0 else data.rescale(picture, factor)
                if min(hr.shape[:2]) < 2 * lr_patch * scale:
                    continue
                hr = data.crop_to_multiple(hr, scale)
                self.pairs.append((data.degrade(hr, scale), hr))
        areas = np.array(
            [lr.shape[0] * lr.shape[1] for lr, _ in self.pairs], dtype=np.float64
        )
        self.weights = np.sqrt(areas) / np.sqrt(areas).sum()
        self.rng = np.random.default_rng(seed)

    def crop(self) -> tuple[np.ndarray, np.ndarray]:
        p, s = self.lr_patch, self.scale
        for _ in range(10):
            lr, hr = self.pairs[self.rng.choice(len(self.pairs), p=self.weights)]
            top, left = (
                self.rng.integers(0, lr.shape[0] - p + 1),
                self.rng.integers(0, lr.shape[1] - p + 1),
            )
            lr_crop = lr[top : top + p, left : left + p]
            # Flat crops (sky, the retina's black surround) teach nothing: keep only one in ten.
            if lr_crop.std() >= 0.02 or self.rng.random() < 0.1:
                break
        hr_crop = hr[top * s : (top + p) * s, left * s : (left + p) * s]
        turns, flip, order = (
            self.rng.integers(0, 4),
            self.rng.integers(0, 2),
            self.rng.permutation(3),
        )
        lr_crop, hr_crop = np.rot90(lr_crop, turns), np.rot90(hr_crop, turns)
        if flip:
            lr_crop, hr_crop = lr_crop[:, ::-1], hr_crop[:, ::-1]
        return lr_crop[..., order], hr_crop[..., order]

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        crops = [self.crop() for _ in range(size)]

        def as_tensor(xs):
            return torch.from_numpy(np.ascontiguousarray(np.stack(xs))).permute(0, 3, 1, 2).contiguous()

        return as_tensor([lr for lr, _ in crops]), as_tensor([hr for _, hr in crops])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    lr_patch = args.lr_patch or (40 if args.scale == 2 else 32)
    device = torch.device(args.device)
    model = SRVGGNetCompact(
        num_feat=args.num_feat, num_conv=args.num_conv, scale=args.scale
    ).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    params = sum(p.numel() for p in model.parameters())
    sampler = PairSampler(args.scale, lr_patch, args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step / args.iters, 1.0)))
        ),
    )
    start, state_average = 0, 0.0
    if args.checkpoint is not None and args.checkpoint.is_file():
        # Only tensors, numbers, strings and containers are in it: the weights-only unpickler reads it
        # without running code, as every other weights file Avow reads.
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if state["recipe"] != recipe(args, lr_patch):
            sys.exit(f"{args.checkpoint} belongs to another recipe: {state['recipe']}")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        start, state_average = state["step"], state["loss_average"]
        print(f"resumed from {args.checkpoint} at iter {start}", flush=True)
    print(
        f"x{args.scale}: {params} params, {len(sampler.pairs)} training pictures (incl. rescaled), "
        f"{args.iters} iters of {args.batch}x{lr_patch}px on {device}",
        flush=True,
    )
    started, running, counted, average, skipped = (
        time.perf_counter(),
        0.0,
        0,
        state_average,
        0,
    )
    for step in range(start + 1, args.iters + 1):
        lr_batch, hr_batch = (
            t.to(device, non_blocking=True) for t in sampler.batch(args.batch)
        )
        output = model(lr_batch)
        if step > args.l2_from * args.iters:
            loss = torch.nn.functional.mse_loss(output, hr_batch)
        else:
            loss = torch.nn.functional.l1_loss(output, hr_batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Guard against the rare divergent step of a PReLU net at a high learning rate: clip the
        # gradient norm, and skip the update outright when the loss jumps far above its average.
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        value = loss.item()
        if step <= 50 or value < 5 * average:
            optimizer.step()
            average = value if step == 1 else 0.98 * average + 0.02 * value
        else:
            skipped += 1
        schedule.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        running += value
        counted += 1
        if step % 100 == 0 or step == args.iters:
            elapsed = time.perf_counter() - started
            print(
                f"iter {step}: loss {running / counted:.5f}, lr {schedule.get_last_lr()[0]:.2e}, "
                f"{skipped} skipped, {elapsed:.0f}s",
                flush=True,
            )
            running, counted = 0.0, 0
        if step % args.save_every == 0 or step == args.iters:
            save(ema, args, lr_patch, params, step)
            if args.checkpoint is not None:
                state = {
                    "recipe": recipe(args, lr_patch),
                    "step": step,
                    "loss_average": average,
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "sampler_rng": sampler.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                }
                partial = args.checkpoint.with_name(args.checkpoint.name + ".partial")
                torch.save(state, partial)
                os.replace(partial, args.checkpoint)


def recipe(args: argparse.Namespace, lr_patch: int) -> str:
    return (
        f"train.py --scale {args.scale} --num-feat {args.num_feat} --num-conv {args.num_conv} "
        f"--iters {args.iters} --batch {args.batch} --lr-patch {lr_patch} --lr {args.lr} "
        f"--l2-from {args.l2_from} --clip {args.clip} --ema {args.ema} --seed {args.seed}"
    )


def save(
    model: SRVGGNetCompact,
    args: argparse.Namespace,
    lr_patch: int,
    params: int,
    step: int,
) -> None:
    metadata = {
        "format": "pt",
        "arch": "SRVGGNetCompact",
        "scale": str(args.scale),
        "num_feat": str(args.num_feat),
        "num_conv": str(args.num_conv),
        "act_type": "prelu",
        "params": str(params),
        "recipe": recipe(args, lr_patch),
        "iterations_done": str(step),
        "license": "MIT",
    }
    state = {
        k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    save_file(state, str(partial), metadata=metadata)
    os.chmod(partial, 0o644)
    os.replace(partial, args.out)


if __name__ == "__main__":
    main()
