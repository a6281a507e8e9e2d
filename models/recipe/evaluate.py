"""Evaluate upscalers through ``avow upscale`` on the held-out set, against bicubic and Lanczos, on CPU.

    PYTHONPATH=plugin:c2pa:models .venv/bin/python models/recipe/evaluate.py --per-image \\
        avow-compact-x4 models/recipe/runs/x4-rep56/model.safetensors realesr-animevideov3

Models are built-in or user model names (``avow models list``) or weights paths. Each is run the
way a user runs it, one ``avow upscale`` over all the low-resolution pictures, so the figures
include what the pixel mark costs; the bare network's mean PSNR is listed beside it.

Protocol (the one super-resolution papers report): the held-out picture, cropped to a multiple
of the scale, is shrunk with MATLAB-style bicubic (antialiased) and rounded to 8 bits; each
method brings it back to full size; the result is rounded to 8 bits and compared with the
original on the Y channel (ITU-R BT.601, MATLAB ``rgb2ycbcr``, range 16-235) with ``scale``
pixels cropped off every border. PSNR in dB (peak 255); SSIM as Wang et al. 2004 (11x11
Gaussian window, sigma 1.5, K1 0.01, K2 0.03). The headline figures are means over the held-out
photographs (``data.held_out_images``); the synthetic one is listed per image only. Nothing is
downloaded at evaluation time (the registry photographs are installed by ``photos.install``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data
from avow_models import ModelDescriptor, find_model, load_model


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Y of ITU-R BT.601 as MATLAB's rgb2ycbcr gives it, in [16, 235], from RGB in [0, 1]."""
    return 16.0 + image.astype(np.float64) @ np.array([65.481, 128.553, 24.966])


def psnr_ssim(result: np.ndarray, reference: np.ndarray, border: int, ssim: bool = True) -> tuple[float, float]:
    a = rgb_to_y(result)[border:-border, border:-border]
    b = rgb_to_y(reference)[border:-border, border:-border]
    mse = float(np.mean((a - b) ** 2))
    psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")
    if not ssim:
        return psnr, float("nan")
    similarity = structural_similarity(
        a,
        b,
        data_range=255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        win_size=11,
    )
    return psnr, float(similarity)


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    return data.quantize(data.imresize(lr, lr.shape[0] * scale, lr.shape[1] * scale))


def lanczos(lr: np.ndarray, scale: int) -> np.ndarray:
    image = Image.fromarray(np.round(lr * 255).astype(np.uint8))
    up = image.resize((lr.shape[1] * scale, lr.shape[0] * scale), Image.Resampling.LANCZOS)
    return np.asarray(up, dtype=np.float32) / 255.0


def load(model: str) -> tuple[torch.nn.Module, ModelDescriptor]:
    """A built-in or user model name, or a weights path, through Avow's own registry and loader."""
    from avow_c2pa.config import user_models_dir

    loaded = load_model(find_model(model, user_dir=user_models_dir()))
    return loaded.module, loaded.descriptor


def run_model(model: torch.nn.Module, lr: np.ndarray, dtype: torch.dtype = torch.float32) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        out = model.to(dtype)(tensor.to(dtype)).float()
    model.float()
    return data.quantize(out[0].permute(1, 2, 0).numpy())


def seconds_per_megapixel(model: torch.nn.Module, lr: np.ndarray, scale: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run_model(model, lr)
        best = min(best, time.perf_counter() - started)
    return best / (lr.shape[0] * scale * lr.shape[1] * scale / 1e6)


def fp16_check(model: torch.nn.Module, lr: np.ndarray) -> tuple[float, float]:
    """(max abs difference in 8-bit levels, PSNR of fp16 output against fp32 output)."""
    full = run_model(model, lr)
    half = run_model(model, lr, torch.float16)
    diff = np.abs(full - half) * 255
    mse = float(np.mean(diff**2))
    return float(diff.max()), (10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf"))


def through_cli(model: str, scale: int, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict, float]:
    """Every LR picture through one ``avow upscale`` run (mark, EXIF/XMP and C2PA included), as a
    user gets it: {name: 8-bit result}, and the run's CPU seconds per output megapixel."""
    with tempfile.TemporaryDirectory(prefix="avow-eval-") as work:
        inputs, outputs = Path(work, "in"), Path(work, "out")
        inputs.mkdir()
        names = {}
        for index, (name, (lr, _)) in enumerate(pairs.items()):
            names[f"p{index:02d}"] = name
            Image.fromarray(data.to_uint8(lr)).save(inputs / f"p{index:02d}.png")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(
            # A folder in, a folder out (NAME-xSCALE.png), whatever the number of pictures.
            [sys.executable, "-m", "avow", "upscale", str(inputs), "-o", str(outputs)]
            + ["--model", model, "--scale", str(scale), "--device", "cpu"],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode != 0:
            sys.exit(f"avow upscale --model {model} failed ({run.returncode}): {run.stderr.strip()}")
        results = {}
        for stem, name in names.items():
            (path,) = outputs.glob(f"{stem}-x{scale}.*")
            results[name] = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    megapixels = sum(hr.shape[0] * hr.shape[1] for _, hr in pairs.values()) / 1e6
    return results, cpu / megapixels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="built-in or user model names, or weights paths")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the timing (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-image", action="store_true", help="also print every held-out picture")
    parser.add_argument("--pictures", help="comma-separated held-out names (default: all)")
    parser.add_argument("--crop", type=int, default=0, help="centre crop of each HR picture, in pixels (0: whole)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    held_out = data.held_out_images()
    if args.pictures:
        held_out = {name: held_out[name] for name in args.pictures.split(",")}
    if args.crop:
        held_out = {name: centre_crop(image, args.crop) for name, image in held_out.items()}
    photos = [name for name in held_out if not name.startswith("synthetic")]
    rows, per_image, notes = [], [], []
    models = [(name, *load(name)) for name in args.models]
    for scale in sorted({descriptor.scale for _, _, descriptor in models}):
        pairs = {}
        for name, image in held_out.items():
            hr = data.crop_to_multiple(image, scale)
            pairs[name] = (data.degrade(hr, scale), hr)
        timing_name = max(photos, key=lambda n: pairs[n][0].size)
        timing_lr = pairs[timing_name][0]
        scores = {
            "bicubic (MATLAB)": {name: bicubic(lr, scale) for name, (lr, _) in pairs.items()},
            "Lanczos (Pillow)": {name: lanczos(lr, scale) for name, (lr, _) in pairs.items()},
        }
        details: dict[str, tuple[str, ...]] = {label: ("–",) * 4 for label in scores}
        for model, module, descriptor in models:
            if descriptor.scale != scale:
                continue
            label = f"{Path(model).parent.name}/{Path(model).name}" if os.sep in model else model
            scores[label], cli_seconds = through_cli(model, scale, pairs)
            bare = statistics.mean(psnr_ssim(run_model(module, pairs[n][0]), pairs[n][1], scale, ssim=False)[0] for n in photos)
            details[label] = (
                f"{bare:.2f}",
                f"{descriptor.params:,}",
                f"{seconds_per_megapixel(module, timing_lr, scale, args.repeats):.2f} s",
                f"{cli_seconds:.2f} s",
            )
            if descriptor.fp16_safe:
                max_diff, fp16_psnr = fp16_check(module, timing_lr)
                notes.append(f"{label}: fp16 vs fp32 on {timing_name}: max |diff| {max_diff:.0f}/255, PSNR {fp16_psnr:.1f} dB")
        baseline = None
        for label, results in scores.items():
            measured = {name: psnr_ssim(results[name], hr, scale) for name, (_, hr) in pairs.items()}
            psnr = statistics.mean(measured[name][0] for name in photos)
            ssim = statistics.mean(measured[name][1] for name in photos)
            baseline = psnr if baseline is None else baseline
            rows.append((label, f"x{scale}", f"{psnr:.2f}", f"{ssim:.4f}", f"{psnr - baseline:+.2f}", *details[label]))
            for name, (p, q) in measured.items():
                per_image.append((label, f"x{scale}", name, f"{p:.2f}", f"{q:.4f}"))

    print(f"Held-out photographs ({len(photos)}, mean): {', '.join(photos)}.")
    print("Models measured through `avow upscale` (pixel mark, EXIF/XMP and C2PA included); Y channel, border = scale.")
    print(f"Bare-model CPU time: best of {args.repeats}, {args.threads} thread(s), the largest held-out picture, float32.\n")
    header = (
        "model",
        "scale",
        "PSNR (dB)",
        "SSIM",
        "Δ vs bicubic (dB)",
        "bare model PSNR (dB)",
        "params",
        "CPU s / output MP (model)",
        "CPU s / output MP (avow upscale)",
    )
    print(markdown(header, rows))
    if args.per_image:
        print()
        print(markdown(("model", "scale", "image", "PSNR (dB)", "SSIM"), per_image))
    for note in notes:
        print(f"\n{note}", end="")
    print()


def centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    top, left = max(0, (image.shape[0] - side) // 2), max(0, (image.shape[1] - side) // 2)
    return image[top : top + side, left : left + side]


def markdown(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
