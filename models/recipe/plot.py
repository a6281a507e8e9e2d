"""Draw a run's training curves (held-out gain over bicubic and training loss against CPU hours).

    .venv/bin/python models/recipe/plot.py models/recipe/runs/x4-rep56/log.csv docs/training-x4.png

Pillow only (no plotting library in Avow's environment): two stacked panels sharing the x axis.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, PANEL, MARGIN = 640, 200, 56


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    with open(args.log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    hours = [float(row["cpu_hours"]) for row in rows]
    series = [
        ("held-out gain over MATLAB bicubic, bare model (dB)", [float(row["delta_db"]) for row in rows]),
        ("training loss (L1, mean since the previous point)", [float(row["train_loss"]) for row in rows]),
    ]
    image = Image.new("RGB", (WIDTH, 2 * PANEL + 40), "white")
    draw = ImageDraw.Draw(image)
    x_max = max(hours[-1], 1e-6)
    for index, (title, values) in enumerate(series):
        top = 10 + index * PANEL
        points = [(h, v) for h, v in zip(hours, values, strict=True) if not math.isnan(v)]
        low, high = min(v for _, v in points), max(v for _, v in points)
        pad = (high - low) * 0.1 or 0.01
        low, high = low - pad, high + pad
        box = (MARGIN, top + 16, WIDTH - 10, top + PANEL - 20)
        draw.rectangle(box, outline=(160, 160, 160))
        draw.text((MARGIN, top), title, fill=(0, 0, 0))
        for value in (low + pad, high - pad):
            y = box[3] - (value - low) / (high - low) * (box[3] - box[1])
            draw.text((4, y - 6), f"{value:.4g}", fill=(90, 90, 90))
        xy = [(box[0] + h / x_max * (box[2] - box[0]), box[3] - (v - low) / (high - low) * (box[3] - box[1])) for h, v in points]
        draw.line(xy, fill=(30, 90, 200), width=2)
        for x, y in xy:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(30, 90, 200))
    draw.text((MARGIN, 2 * PANEL + 14), f"CPU hours (one shared core): 0 to {x_max:.2f}", fill=(0, 0, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)


if __name__ == "__main__":
    main()
