"""Evaluate upscalers on the held-out pictures: PSNR and SSIM on the Y channel against bicubic and Lanczos.

    PYTHONPATH=models .venv/bin/python models/recipe/evaluate.py [WEIGHTS ...]

Conventions of the super-resolution literature, so figures compare: MATLAB bicubic degradation
(antialiased), the low-resolution input quantised to 8 bits, outputs rounded to 8 bits, Y of
ITU-R BT.601 as MATLAB's rgb2ycbcr, a border of ``scale`` pixels cropped, SSIM with an 11x11
Gaussian window (sigma 1.5). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

from avow_models import load_model  # noqa: E402
from avow_models.catalog import WEIGHTS_DIR  # noqa: E402


def luma(rgb: np.ndarray) -> np.ndarray:
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def quantise(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 255) / 255


def scores(output: np.ndarray, truth: np.ndarray, scale: int) -> tuple[float, float]:
    y_out, y_true = (luma(quantise(x))[scale:-scale, scale:-scale] for x in (output, truth))
    psnr = 10 * np.log10(255.0**2 / np.mean((y_out - y_true) ** 2))
    ssim = structural_similarity(
        y_out, y_true, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    return psnr, ssim


def lanczos(lr: np.ndarray, height: int, width: int) -> np.ndarray:
    planes = [Image.fromarray(lr[..., c].astype(np.float32), "F").resize((width, height), Image.LANCZOS) for c in range(3)]
    return np.stack([np.asarray(p) for p in planes], axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="*", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    weights = args.weights or sorted(WEIGHTS_DIR.glob("avow-compact-x*.safetensors"))
    held_out = data.held_out_images()
    print(f"held-out: {', '.join(held_out)}\n")
    print("| method | scale | PSNR (dB) | SSIM | Δ PSNR vs bicubic | params | file size | CPU s / output MP |")
    print("|---|---|---|---|---|---|---|---|")
    for path in weights:
        model = load_model(path)
        scale = model.descriptor.scale
        results = {"bicubic": [], "lanczos": [], model.descriptor.name: []}
        seconds, megapixels = 0.0, 0.0
        for hr in held_out.values():
            hr = data.crop_to_multiple(hr, scale)
            lr = quantise(data.degrade(hr, scale))
            results["bicubic"].append(scores(data.imresize(lr, *hr.shape[:2]), hr, scale))
            results["lanczos"].append(scores(lanczos(lr, *hr.shape[:2]), hr, scale))
            started = time.perf_counter()
            with torch.inference_mode():
                out = model.module(torch.from_numpy(lr).float().permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
            seconds += time.perf_counter() - started
            megapixels += hr.shape[0] * hr.shape[1] / 1e6
            results[model.descriptor.name].append(scores(out, hr, scale))
        bicubic = np.mean([p for p, _ in results["bicubic"]])
        for method, values in results.items():
            psnr, ssim = np.mean([p for p, _ in values]), np.mean([s for _, s in values])
            is_model = method == model.descriptor.name
            print(
                f"| {method} | x{scale} | {psnr:.2f} | {ssim:.4f} | {psnr - bicubic:+.2f} | "
                + (f"{model.descriptor.params} | {model.descriptor.size_bytes / 1024:.0f} KiB | {seconds / megapixels:.2f} |"
                   if is_model else "– | – | – |")
            )


if __name__ == "__main__":
    main()
