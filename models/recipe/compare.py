"""A side-by-side crop of several models' ``avow upscale`` output on one held-out picture.

    PYTHONPATH=plugin:c2pa:models .venv/bin/python models/recipe/compare.py --picture Dragonfly_by_Bolly.jpg \\
        --out docs/models-side-by-side.png avow-compact-x4 models/recipe/runs/x4-rep56/model.safetensors realesrgan-x4plus

Panels, left to right: the low-resolution input (nearest-neighbour enlarged), each model's output
as ``avow upscale`` writes it (pixel mark included), and the original. Each panel is labelled with
the model and its Y-PSNR against the original on that crop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate

import data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--picture", required=True, help="a held-out picture's name")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256, help="HR crop side (centre of the picture)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    hr = data.crop_to_multiple(evaluate.centre_crop(data.held_out_images()[args.picture], args.crop), args.scale)
    lr = data.degrade(hr, args.scale)
    nearest = lr.repeat(args.scale, axis=0).repeat(args.scale, axis=1)
    panels = [(f"input (x{args.scale} nearest)", nearest)]
    for model in args.models:
        results, _ = evaluate.through_cli(model, args.scale, {args.picture: (lr, hr)})
        psnr, _ = evaluate.psnr_ssim(results[args.picture], hr, args.scale, ssim=False)
        panels.append((f"{Path(model).stem} {psnr:.2f} dB", results[args.picture]))
    panels.append(("original", hr))

    label_height, gap = 18, 4
    height, width = hr.shape[:2]
    sheet = Image.new("RGB", (len(panels) * (width + gap) - gap, height + label_height), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (label, image) in enumerate(panels):
        left = index * (width + gap)
        sheet.paste(Image.fromarray(data.to_uint8(np.asarray(image))), (left, label_height))
        draw.text((left + 2, 3), label, fill=(0, 0, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({', '.join(label for label, _ in panels)})")


if __name__ == "__main__":
    main()
