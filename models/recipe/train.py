"""Train Avow's default compact upscaler (SRVGGNetCompact) for one scale, reproducibly, on CPU or CUDA.

    PYTHONPATH=models .venv/bin/python models/recipe/train.py --scale 4 --rep --run models/recipe/runs/x4

With ``--run DIR`` everything the run needs to continue lives in DIR, small enough to commit:
``checkpoint.safetensors`` (the whole training state, ``checkpoint.py``), ``model.safetensors`` (the folded EMA, shippable),
``log.csv`` (loss and held-out PSNR against CPU hours). Rerunning the same command, in this
session or a later one, continues from the checkpoint.

Recipe: every training picture is used at full size and MATLAB-bicubic shrunk to 3/4 and 1/2
(cleaner HR, more scales of detail); low-resolution inputs are precomputed once per picture with
MATLAB-style bicubic, rounded to 8 bits and cached (``data.training_pairs``) (flips and 90° rotations commute with that kernel,
so augmenting the aligned pair is exact up to the picture's border). Random aligned crops
(mostly flat ones are usually re-drawn), random flip/rot90/RGB-channel order, L1 loss (then an
optional short L2 phase), Adam with cosine decay, an EMA of the weights (what is saved), fixed
seeds. Everything the result depends on is a command-line flag, recorded in the weights'
metadata. ``--run`` makes the run resumable: rerunning the same command continues it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import evaluate
from checkpoint import load_state, save_state
from rep import RepSRVGG

import data
from avow_models.archs.srvgg import SRVGGNetCompact


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=(2, 4), required=True)
    parser.add_argument("--run", type=Path, required=True, help="folder of the run's checkpoint, weights and log")
    parser.add_argument("--rep", action="store_true", help="train with re-parameterisable blocks (folded for shipping)")
    parser.add_argument("--init", type=Path, default=None, help="start from these plain SRVGGNetCompact weights (--rep)")
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
    parser.add_argument("--save-every", type=int, default=250, help="checkpoint + held-out PSNR every N iters")
    return parser.parse_args(argv)


class PairSampler:
    """Random aligned (LR, HR) crops with flips/rot90/channel order, pictures drawn ∝ sqrt(area)."""

    def __init__(self, scale: int, lr_patch: int, seed: int) -> None:
        self.scale, self.lr_patch = scale, lr_patch
        self.pairs = [(lr, hr) for _, lr, hr in data.training_pairs(scale, 2 * lr_patch * scale)]
        areas = np.array([lr.shape[0] * lr.shape[1] for lr, _ in self.pairs], dtype=np.float64)
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
            if lr_crop.std() >= 0.02 * 255 or self.rng.random() < 0.1:
                break
        hr_crop = hr[top * s : (top + p) * s, left * s : (left + p) * s]
        turns, flip, order = (
            self.rng.integers(0, 4),
            self.rng.integers(0, 2),
            self.rng.permutation(3),
        )
        lr_crop, hr_crop = np.rot90(lr_crop, int(turns)), np.rot90(hr_crop, int(turns))
        if flip:
            lr_crop, hr_crop = lr_crop[:, ::-1], hr_crop[:, ::-1]
        return lr_crop[..., order], hr_crop[..., order]

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        crops = [self.crop() for _ in range(size)]

        def as_tensor(xs: list[np.ndarray]) -> torch.Tensor:
            stacked = torch.from_numpy(np.ascontiguousarray(np.stack(xs)))
            return stacked.permute(0, 3, 1, 2).float().div_(255.0).contiguous()

        return as_tensor([lr for lr, _ in crops]), as_tensor([hr for _, hr in crops])


class HeldOut:
    """Mean Y-PSNR of the bare model (no pixel mark) over the held-out photographs, for the log."""

    def __init__(self, scale: int) -> None:
        images = data.held_out_images()
        self.scale = scale
        self.pairs = []
        for name, image in images.items():
            if name.startswith("synthetic"):
                continue
            hr = data.crop_to_multiple(image, scale)
            self.pairs.append((data.degrade(hr, scale), hr))
        self.bicubic = self.mean(lambda lr: evaluate.bicubic(lr, scale))

    def mean(self, method: Callable[[np.ndarray], np.ndarray]) -> float:
        return float(np.mean([evaluate.psnr_ssim(method(lr), hr, self.scale, ssim=False)[0] for lr, hr in self.pairs]))


def build(args: argparse.Namespace) -> torch.nn.Module:
    if not args.rep:
        return SRVGGNetCompact(num_feat=args.num_feat, num_conv=args.num_conv, scale=args.scale)
    model = RepSRVGG(args.num_feat, args.num_conv, args.scale)
    if args.init is not None:
        model.widen(load_file(str(args.init)), torch.Generator().manual_seed(args.seed))
    return model


def shippable(model: torch.nn.Module) -> SRVGGNetCompact:
    return model.fold() if isinstance(model, RepSRVGG) else model


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    lr_patch = args.lr_patch or (40 if args.scale == 2 else 32)
    device = torch.device(args.device)
    model = build(args).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    params = sum(p.numel() for p in shippable(model).parameters())
    sampler = PairSampler(args.scale, lr_patch, args.seed)
    held_out = HeldOut(args.scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step / args.iters, 1.0))),
    )
    args.run.mkdir(parents=True, exist_ok=True)
    checkpoint, log = args.run / "checkpoint.safetensors", args.run / "log.csv"
    start, average, cpu_before = 0, 0.0, 0.0
    if checkpoint.is_file():
        state = load_state(checkpoint)
        if state["recipe"] != recipe(args, lr_patch):
            sys.exit(f"{checkpoint} belongs to another recipe: {state['recipe']}")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        start, average, cpu_before = state["step"], state["loss_average"], state["cpu_seconds"]
        init = state["init"]
        print(f"resumed from {checkpoint} at iter {start}", flush=True)
    else:
        init = (
            f"{args.init.name} sha256 {hashlib.sha256(args.init.read_bytes()).hexdigest()}" if args.init is not None else "random"
        )
        with open(log, "w") as handle:
            handle.write("iteration,cpu_hours,train_loss,held_out_psnr_db,bicubic_psnr_db,delta_db\n")
        write_log(log, 0, cpu_before, float("nan"), held_out, ema)
    print(
        f"x{args.scale}: {params} params, {len(sampler.pairs)} training pictures (incl. rescaled), "
        f"{args.iters} iters of {args.batch}x{lr_patch}px on {device}",
        flush=True,
    )
    cpu_started, running, counted, skipped = time.process_time(), 0.0, 0, 0
    for step in range(start + 1, args.iters + 1):
        lr_batch, hr_batch = (t.to(device, non_blocking=True) for t in sampler.batch(args.batch))
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
        if step % args.save_every == 0 or step == args.iters:
            cpu_seconds = cpu_before + time.process_time() - cpu_started
            psnr = write_log(log, step, cpu_seconds, running / counted, held_out, ema)
            print(
                f"iter {step}: loss {running / counted:.5f}, held-out {psnr:.2f} dB "
                f"({psnr - held_out.bicubic:+.2f} vs bicubic), lr {schedule.get_last_lr()[0]:.2e}, "
                f"{skipped} skipped, {cpu_seconds / 3600:.2f} CPU h",
                flush=True,
            )
            running, counted = 0.0, 0
            save(shippable(ema), args, lr_patch, params, step, cpu_seconds, init)
            state = {
                "recipe": recipe(args, lr_patch),
                "init": init,
                "step": step,
                "loss_average": average,
                "cpu_seconds": cpu_seconds,
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "sampler_rng": sampler.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
            }
            save_state(state, checkpoint)


def write_log(log: Path, step: int, cpu_seconds: float, loss: float, held_out: HeldOut, ema: torch.nn.Module) -> float:
    plain = shippable(ema).cpu().eval()
    psnr = held_out.mean(lambda lr: evaluate.run_model(plain, lr))
    with open(log, "a") as handle:
        handle.write(
            f"{step},{cpu_seconds / 3600:.4f},{loss:.6f},{psnr:.4f},{held_out.bicubic:.4f},{psnr - held_out.bicubic:.4f}\n"
        )
    return psnr


def recipe(args: argparse.Namespace, lr_patch: int) -> str:
    """What a checkpoint must match to be resumed (``--init`` is read only when a run starts, so
    it is recorded by content in ``init`` instead: the shipped weights it names may change since)."""
    return (
        f"train.py --scale {args.scale} --num-feat {args.num_feat} --num-conv {args.num_conv} "
        f"--iters {args.iters} --batch {args.batch} --lr-patch {lr_patch} --lr {args.lr} "
        f"--l2-from {args.l2_from} --clip {args.clip} --ema {args.ema} --seed {args.seed}"
        + (" --rep" if args.rep else "")
        + f" (pairs v{data.PAIRS_VERSION})"
    )


def save(
    model: SRVGGNetCompact,
    args: argparse.Namespace,
    lr_patch: int,
    params: int,
    step: int,
    cpu_seconds: float,
    init: str,
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
        "init": init,
        "iterations_done": str(step),
        "cpu_hours": f"{cpu_seconds / 3600:.3f}",
        "license": "MIT",
    }
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    out = args.run / "model.safetensors"
    partial = out.with_name(out.name + ".partial")
    save_file(state, str(partial), metadata=metadata)
    os.chmod(partial, 0o644)
    os.replace(partial, out)


if __name__ == "__main__":
    main()
