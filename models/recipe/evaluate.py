"""Evaluate Avow's compact upscalers on the held-out set, against bicubic and Lanczos, on CPU.

    PYTHONPATH=models .venv/bin/python models/recipe/evaluate.py \\
        models/avow_models/weights/avow-compact-x2.safetensors models/avow_models/weights/avow-compact-x4.safetensors

Protocol (the one super-resolution papers report): the held-out picture, cropped to a multiple
of the scale, is shrunk with MATLAB-style bicubic (antialiased) and rounded to 8 bits; each
method brings it back to full size; the result is rounded to 8 bits and compared with the
original on the Y channel (ITU-R BT.601, MATLAB ``rgb2ycbcr``, range 16-235) with ``scale``
pixels cropped off every border. PSNR in dB (peak 255); SSIM as Wang et al. 2004 (11x11
Gaussian window, sigma 1.5, K1 0.01, K2 0.03). The headline figures are means over the held-out
photographs; the synthetic held-out picture is listed per image only. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data
from avow_models.archs.srvgg import SRVGGNetCompact


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Y of ITU-R BT.601 as MATLAB's rgb2ycbcr gives it, in [16, 235], from RGB in [0, 1]."""
    return 16.0 + image.astype(np.float64) @ np.array([65.481, 128.553, 24.966])


def psnr_ssim(
    result: np.ndarray, reference: np.ndarray, border: int
) -> tuple[float, float]:
    a = rgb_to_y(result)[border:-border, border:-border]
    b = rgb_to_y(reference)[border:-border, border:-border]
    mse = float(np.mean((a - b) ** 2))
    psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")
    ssim = structural_similarity(
        a,
        b,
        data_range=255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        win_size=11,
    )
    return psnr, float(ssim)


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    return data.quantize(data.imresize(lr, lr.shape[0] * scale, lr.shape[1] * scale))


def lanczos(lr: np.ndarray, scale: int) -> np.ndarray:
    image = Image.fromarray(np.round(lr * 255).astype(np.uint8))
    up = image.resize(
        (lr.shape[1] * scale, lr.shape[0] * scale), Image.Resampling.LANCZOS
    )
    return np.asarray(up, dtype=np.float32) / 255.0


def load(path: Path) -> tuple[SRVGGNetCompact, dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    state = load_file(str(path))
    model = SRVGGNetCompact(
        num_feat=int(metadata["num_feat"]),
        num_conv=int(metadata["num_conv"]),
        scale=int(metadata["scale"]),
    )
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False), metadata


def run_model(
    model: SRVGGNetCompact, lr: np.ndarray, dtype: torch.dtype = torch.float32
) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        out = model.to(dtype)(tensor.to(dtype)).float()
    model.float()
    return data.quantize(out[0].permute(1, 2, 0).numpy())


def seconds_per_megapixel(
    model: SRVGGNetCompact, lr: np.ndarray, repeats: int
) -> float:
    scale = model.scale
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run_model(model, lr)
        best = min(best, time.perf_counter() - started)
    return best / (lr.shape[0] * scale * lr.shape[1] * scale / 1e6)


def fp16_check(model: SRVGGNetCompact, lr: np.ndarray) -> tuple[float, float]:
    """(max abs difference in 8-bit levels, PSNR of fp16 output against fp32 output)."""
    full = run_model(model, lr)
    half = run_model(model, lr, torch.float16)
    diff = np.abs(full - half) * 255
    mse = float(np.mean(diff**2))
    return float(diff.max()), (
        10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for the timing (default 1)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--per-image", action="store_true", help="also print every held-out picture"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    held_out = data.held_out_images()
    photos = [name for name in held_out if name in data.HELD_OUT_FILES]
    rows, per_image, notes = [], [], []
    models = [(path, *load(path)) for path in args.weights]
    for scale in sorted({model.scale for _, model, _ in models}):
        pairs = {}
        for name, image in held_out.items():
            hr = data.crop_to_multiple(image, scale)
            pairs[name] = (data.degrade(hr, scale), hr)
        methods = [
            ("bicubic (MATLAB)", lambda lr, s=scale: bicubic(lr, s), None),
            ("Lanczos (Pillow)", lambda lr, s=scale: lanczos(lr, s), None),
        ]
        methods += [
            (path.stem, lambda lr, m=model: run_model(m, lr), (path, model))
            for path, model, _ in models
            if model.scale == scale
        ]
        baseline = None
        for label, method, source in methods:
            scores = {
                name: psnr_ssim(method(lr), hr, scale)
                for name, (lr, hr) in pairs.items()
            }
            psnr = statistics.mean(scores[name][0] for name in photos)
            ssim = statistics.mean(scores[name][1] for name in photos)
            baseline = psnr if baseline is None else baseline
            if source is None:
                params = size = timing = "–"
            else:
                path, model = source
                params = f"{sum(p.numel() for p in model.parameters()):,}"
                size = f"{path.stat().st_size / 1e6:.2f} MB"
                timing = f"{seconds_per_megapixel(model, pairs[photos[1]][0], args.repeats):.2f} s"
                max_diff, fp16_psnr = fp16_check(model, pairs[photos[0]][0])
                notes.append(
                    f"{path.stem}: fp16 vs fp32 output on {photos[0]}: max |diff| {max_diff:.0f}/255, PSNR {fp16_psnr:.1f} dB"
                )
            rows.append(
                (
                    label,
                    f"x{scale}",
                    f"{psnr:.2f}",
                    f"{ssim:.4f}",
                    f"{psnr - baseline:+.2f}",
                    params,
                    size,
                    timing,
                )
            )
            for name, (p, s) in scores.items():
                per_image.append((label, f"x{scale}", name, f"{p:.2f}", f"{s:.4f}"))

    print(
        f"Held-out photographs: {', '.join(photos)} (mean). Y channel, border = scale, 8-bit in and out."
    )
    print(
        f"CPU time: best of {args.repeats}, {args.threads} thread(s), whole {photos[1]} picture, float32.\n"
    )
    header = (
        "model",
        "scale",
        "PSNR (dB)",
        "SSIM",
        "Δ vs bicubic (dB)",
        "params",
        "file size",
        "CPU s / output MP",
    )
    print(markdown(header, rows))
    if args.per_image:
        print()
        print(markdown(("model", "scale", "image", "PSNR (dB)", "SSIM"), per_image))
    for note in notes:
        print(f"\n{note}", end="")
    print()


def markdown(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
