"""Robustness, false positives, imperceptibility and speed of Avow's pixel watermark: figures, not pass/fail.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_watermark.py [--images 40] [--unmarked 1000]
        [--upscaler model|bicubic] [--seed 0] [--save part.json] [--merge a.json b.json ...]
        [--calibrate-keys 0] [--png DIR] [--no-timing] [--inputs 96 384 [--oracle]] [--amplitude 1]

Marked outputs are made from varied pictures (faces, text, foliage, flat sky and gradients, night
scenes, general photos): random crops, at random content scales, of the photographs shipped in
scikit-image's wheel plus synthetic gradients and text, upscaled x2 or x4 to 768-1536 px sides by
Avow's own model (``--upscaler model``, the default; the weights in models/avow_models/weights)
or by plain bicubic, then marked with a random 32-bit payload and saved as 8-bit pixels. Each is
attacked (alone, and followed by JPEG q75) and detected with the public default key.

Printed:
  * the robustness matrix: per attack, the detection rate (found) and the payload rate (found with
    the right 32 bits), alone and with JPEG q75, with the mean score; for all pictures, then for
    the photographs and the synthetic pictures (clean digital text, flat gradients) apart;
    outputs have 768-1536 px sides by default (inputs of 192-768 px); ``--sizes 320 768`` gives
    the harder case of small inputs (80-384 px); ``--inputs 96 384`` runs issue 17's small-input
    matrix (inputs of 96-384 px, x2 and x4, and the re-posts that launder them), and with
    ``--oracle`` sets each attacked photograph's detection beside what a reader that knows the
    mark's period and position finds (``mark_oracle``): a row the oracle cannot reach needs a
    stronger mark, not a better search; ``--amplitude 1.5`` makes every mark 1.5 times stronger,
    to see what that would buy and cost;
  * false positives on unmarked images (originals, bicubic, Lanczos and model upscales, some of
    them JPEG-compressed), and the check that the reported false-positive probability is
    calibrated (fraction of unmarked images with probability <= 1e-2 and <= 1e-3); with
    --calibrate-keys K, every unmarked image is also searched with K random keys and the
    effective number of independent tests is fitted (calibration._EFFECTIVE_TESTS);
  * imperceptibility: PSNR and SSIM of marked vs unmarked output (float, and as 8-bit files);
  * embed and detect time per megapixel on one CPU core, and detect on a 12 MP image.

Longer runs in pieces that each take a few minutes: ``--images 50 --seed 1 --save a.json``,
``--seed 2 --save b.json`` ... then ``--merge a.json b.json ...`` prints the pooled matrix.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "c2pa"))
from mark_oracle import ORACLE_Z, Geometry, oracle_found  # noqa: E402 - bench/, beside this script

from avow_c2pa import watermark  # noqa: E402 - after the sys.path entry above
from avow_c2pa.watermark import calibration, coding, search  # noqa: E402

# --------------------------------------------------------------------------- pictures


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=2)
    if image.shape[2] == 4:  # over white
        alpha = image[..., 3:4].astype(np.float32) / 255
        image = (image[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


def _text_picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    paper = rng.integers(215, 256)
    ink = rng.integers(0, 70)
    image = Image.new("RGB", (width, height), (int(paper),) * 3)
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(9, 22))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    words = ["Avow", "upscales", "pictures", "and", "says", "so", "the", "quick", "brown", "fox", "jumps", "over",
             "lazy", "dog", "0123456789"]
    y = int(rng.integers(2, 10))
    while y < height - size:
        line = " ".join(rng.choice(words, size=12))
        draw.text((int(rng.integers(2, 12)), y), line, fill=(int(ink),) * 3, font=font)
        y += int(size * rng.uniform(1.3, 1.8))
    return np.asarray(image)


def _gradient_picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    t = (x * np.cos(angle) + y * np.sin(angle)) / max(height, width)
    top, bottom = rng.uniform(0.2, 1.0, 3), rng.uniform(0.0, 0.9, 3)
    image = top[None, None, :] * (1 - t[..., None]) + bottom[None, None, :] * t[..., None]
    if rng.random() < 0.5:  # a soft object on the sky
        cy, cx, r = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width, rng.uniform(0.05, 0.2) * width
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None]
        image = image * (1 - 0.6 * blob) + 0.6 * blob * rng.uniform(0, 1, 3)[None, None, :]
    image += rng.normal(0, 0.6 / 255, image.shape)  # a camera's faint noise
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


CATEGORIES = {
    "face": ["astronaut:face", "chelsea", "cat", "astronaut"],
    "text": ["page", "text", "synthetic-text", "synthetic-text"],
    "foliage": ["grass", "gravel", "coffee", "motorcycle"],
    "sky/flat": ["synthetic-gradient", "rocket:sky", "moon", "synthetic-gradient"],
    "night": ["hubble_deep_field", "night:astronaut", "night:rocket", "night:coffee"],
    "general": ["rocket", "camera", "coins", "immunohistochemistry", "clock", "brick", "retina", "cell"],
}


_CACHE: dict[str, np.ndarray] = {}


def source_picture(spec: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A height x width 8-bit RGB crop of the named picture at a random content scale."""
    if spec == "synthetic-text":
        return _text_picture(rng, height, width)
    if spec == "synthetic-gradient":
        return _gradient_picture(rng, height, width)
    name, _, variant = spec.partition(":")
    if name == "night":
        name, variant = variant, "night"
    if name not in _CACHE:
        _CACHE[name] = _skimage(name)
    full = _CACHE[name]
    fit = min(full.shape[0] / height, full.shape[1] / width)
    shrink = rng.uniform(min(1.0, fit), min(2.5, fit)) if fit > 1 else fit
    picture = Image.fromarray(full)
    if shrink > 1.01 or shrink < 1:
        size = (max(width, round(full.shape[1] / shrink)), max(height, round(full.shape[0] / shrink)))
        picture = picture.resize(size, Image.BOX)
    image = np.asarray(picture)
    if variant == "face":  # the astronaut's face region
        cy, cx = int(image.shape[0] * 0.3), int(image.shape[1] * 0.45)
        top = int(np.clip(cy - height // 2 + rng.integers(-20, 21), 0, image.shape[0] - height))
        left = int(np.clip(cx - width // 2 + rng.integers(-20, 21), 0, image.shape[1] - width))
    elif variant == "sky":
        top, left = 0, int(rng.integers(0, image.shape[1] - width + 1))
    else:
        top = int(rng.integers(0, image.shape[0] - height + 1))
        left = int(rng.integers(0, image.shape[1] - width + 1))
    crop = image[top : top + height, left : left + width]
    if variant == "night":
        crop = (np.power(crop / 255.0, 1.8) * rng.uniform(0.25, 0.45) * 255 + rng.normal(0, 1.5, crop.shape))
        crop = np.clip(crop + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(crop)


class Upscaler:
    def __init__(self, kind: str):
        self.kind = kind
        self.models = {}
        if kind == "model":
            import torch

            torch.set_num_threads(1)
            from avow import tiling  # noqa: F401
            from avow_models import find_model, load_model

            for scale in (2, 4):
                self.models[scale] = load_model(find_model(None, scale))

    def __call__(self, image: np.ndarray, scale: int, kind: str | None = None) -> np.ndarray:
        """float32 [0, 1] output of upscaling the 8-bit ``image``."""
        kind = kind or self.kind
        height, width = image.shape[:2]
        if kind == "model":
            from avow import tiling

            model = self.models[scale]
            return tiling.upscale(model.module.eval(), image.astype(np.float32) / 255, scale, 0, model.descriptor.tiling)
        resample = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}[kind]
        return np.asarray(Image.fromarray(image).resize((width * scale, height * scale), resample)).astype(np.float32) / 255


def to8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- attacks


def _encode(image: np.ndarray, fmt: str, **options) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **options)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _resize(image: np.ndarray, width: int, height: int, resample=Image.BICUBIC) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((max(1, width), max(1, height)), resample))


def _crop(image: np.ndarray, area: float, rng: np.random.Generator, corner: list[int] | None = None) -> np.ndarray:
    """``corner``, when given, gets the crop's (top, left)."""
    height, width = image.shape[:2]
    side = math.sqrt(area)
    h, w = round(height * side), round(width * side)
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    if corner is not None:
        corner[:] = top, left
    return image[top : top + h, left : left + w]


def _tone(image: np.ndarray, function) -> np.ndarray:
    return to8(function(image.astype(np.float32) / 255))


BACK_FILTERS = [Image.BICUBIC, Image.LANCZOS, Image.BILINEAR, Image.BOX]


def small_input_attacks(sample: dict, rng: np.random.Generator) -> dict:
    """Issue 17's list for small inputs: how a re-post launders an upscaled thumbnail."""
    w0, h0 = sample["source_size"]
    back_filter = BACK_FILTERS[sample["index"] % len(BACK_FILTERS)]

    def shrink_crop(u8, _):
        small = _resize(u8, round(u8.shape[1] * 0.6), round(u8.shape[0] * 0.6))
        return _encode(_crop(small, 0.7, rng, sample.setdefault("corner", [0, 0])), "JPEG", quality=70)

    def rotate(u8, _):
        angle = float(rng.uniform(0.5, 2.0) * rng.choice([-1, 1]))
        return _encode(np.asarray(Image.fromarray(u8).rotate(angle, Image.BICUBIC)), "JPEG", quality=90)

    return {
        "metadata strip": lambda u8, _: _encode(u8, "PNG"),
        "JPEG q75": lambda u8, _: _encode(u8, "JPEG", quality=75),
        "WebP q75": lambda u8, _: _encode(u8, "WEBP", quality=75),
        "back to input size": lambda u8, _: _resize(u8, w0, h0, back_filter),
        "x0.6, crop 70%, JPEG q70": shrink_crop,
        "gamma 0.87": lambda u8, _: _tone(u8, lambda x: np.power(x, 0.87)),
        "gamma 1.15": lambda u8, _: _tone(u8, lambda x: np.power(x, 1.15)),
        "rotate 0.5-2 deg, JPEG q90": rotate,
    }


def small_input_geometry(sample: dict, name: str) -> Geometry | None:
    """Where issue 17's attack ``name`` put the output's pixels, per axis (rows, columns): output
    pixel = s * attacked pixel + c (Pillow's resize maps pixel centres); None for a rotation."""
    height, width = sample["output"].shape[:2]
    w0, h0 = sample["source_size"]
    if name.startswith("back to input size"):
        rows, columns = ((n / m, 0.5 * n / m - 0.5) for n, m in ((height, h0), (width, w0)))
        return rows, columns
    if name.startswith("x0.6"):
        scales = (height / round(height * 0.6), width / round(width * 0.6))
        rows, columns = ((s, (corner + 0.5) * s - 0.5) for s, corner in zip(scales, sample["corner"], strict=True))
        return rows, columns
    return None if name.startswith("rotate") else ((1.0, 0.0), (1.0, 0.0))


def attacks(sample: dict, rng: np.random.Generator) -> dict:
    """name -> function(uint8 marked, float marked) -> attacked uint8."""
    w0, h0 = sample["source_size"]
    back_filter = BACK_FILTERS[sample["index"] % len(BACK_FILTERS)]

    def scaled(f):
        return lambda u8, _: _resize(u8, round(u8.shape[1] * f), round(u8.shape[0] * f))

    def screenshot(_, marked):
        # A screen grab of the 16-bit output: truncating 8-bit quantisation, window chrome cropped.
        u8 = (np.clip(marked, 0, 1) * 255).astype(np.uint8)
        top, left, bottom, right = (int(v) for v in rng.integers(0, 9, 4))
        return _encode(u8[top : u8.shape[0] - bottom, left : u8.shape[1] - right], "PNG")

    return {
        "metadata strip": lambda u8, _: _encode(u8, "PNG"),
        "JPEG q90": lambda u8, _: _encode(u8, "JPEG", quality=90),
        "JPEG q75": lambda u8, _: _encode(u8, "JPEG", quality=75),
        "JPEG q60": lambda u8, _: _encode(u8, "JPEG", quality=60),
        "JPEG q50": lambda u8, _: _encode(u8, "JPEG", quality=50),
        "WebP q75": lambda u8, _: _encode(u8, "WEBP", quality=75),
        "resize x0.5": scaled(0.5),
        "resize x0.75": scaled(0.75),
        "resize x1.5": scaled(1.5),
        "back to input size": lambda u8, _: _resize(u8, w0, h0, back_filter),
        "crop 80% area": lambda u8, _: _crop(u8, 0.8, rng),
        "crop 50% area": lambda u8, _: _crop(u8, 0.5, rng),
        "brightness +10%": lambda u8, _: _tone(u8, lambda x: x * 1.1),
        "brightness -10%": lambda u8, _: _tone(u8, lambda x: x * 0.9),
        "contrast +10%": lambda u8, _: _tone(u8, lambda x: (x - x.mean()) * 1.1 + x.mean()),
        "contrast -10%": lambda u8, _: _tone(u8, lambda x: (x - x.mean()) * 0.9 + x.mean()),
        "gamma 0.9": lambda u8, _: _tone(u8, lambda x: np.power(x, 0.9)),
        "gamma 1.1": lambda u8, _: _tone(u8, lambda x: np.power(x, 1.1)),
        "noise sigma 2/255": lambda u8, _: to8(u8 / 255.0 + rng.normal(0, 2 / 255, u8.shape)),
        "8-bit PNG screenshot": screenshot,
    }


# --------------------------------------------------------------------------- runs


def make_sample(index: int, rng: np.random.Generator, upscaler: Upscaler, sizes=(768, 1536), inputs=None) -> dict:
    """A marked-to-be output: its outputs' sides in ``sizes``, or its inputs' in ``inputs``."""
    category = list(CATEGORIES)[index % len(CATEGORIES)]
    spec = CATEGORIES[category][int(rng.integers(0, len(CATEGORIES[category])))]
    scale = 2 if (index // len(CATEGORIES)) % 2 == 0 else 4  # every kind of picture at both scales
    low, high = inputs or (sizes[0] // scale, sizes[1] // scale)
    out_w, out_h = (int(rng.integers(low, high + 1)) * scale for _ in range(2))
    source = source_picture(spec, rng, out_h // scale, out_w // scale)
    output = upscaler(source, scale)
    return {"index": index, "category": category, "picture": spec, "scale": scale, "source": source,
            "source_size": (source.shape[1], source.shape[0]), "output": output,
            "payload": int(rng.integers(0, 1 << watermark.PAYLOAD_BITS))}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def robustness(args, upscaler: Upscaler) -> dict:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(args.seed)
    results = {"rows": defaultdict(lambda: [0, 0, 0, 0.0]), "groups": defaultdict(lambda: [0, 0, 0]),
               "kinds": defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0.0])),
               "quality": [], "wrong_key": [], "failures": [], "oracle": defaultdict(lambda: [0, 0, 0])}
    started = time.perf_counter()
    for index in range(args.images):
        sample = make_sample(index, rng, upscaler, args.sizes, args.inputs)
        output = sample["output"]
        # as the engine marks: the amplitude map from the upscaler's input
        marked = watermark.embed(output, sample["payload"], source_size=sample["source_size"],
                                 reference=sample["source"].astype(np.float32) / 255)
        if args.amplitude != 1.0:  # what a stronger mark would buy, and cost
            marked = np.clip(output + np.float32(args.amplitude) * (marked - output), 0.0, 1.0)
        marked8 = to8(marked)
        results["quality"].append({
            "category": sample["category"],
            "psnr": psnr(marked, output),
            "psnr8": psnr(marked8 / 255.0, to8(output) / 255.0),
            "ssim": float(structural_similarity(marked, output, channel_axis=2, data_range=1.0)),
        })
        wrong = watermark.detect(marked8, key=f"not-avow-{index}")
        results["wrong_key"].append(wrong.found)
        for name, attack in (small_input_attacks if args.inputs else attacks)(sample, rng).items():
            attacked = attack(marked8, marked)
            for combo, image in ((name, attacked), (name + " + JPEG q75", _encode(attacked, "JPEG", quality=75))):
                found = watermark.detect(image)
                kind = "synthetic pictures" if sample["picture"].startswith("synthetic") else "photographs"
                geometry = small_input_geometry(sample, name) if args.oracle and args.inputs else None
                if geometry is not None and kind == "photographs":
                    cell = results["oracle"][combo]
                    cell[0] += 1
                    cell[1] += found.found
                    cell[2] += found.found or oracle_found(image, output.shape[:2], sample["source_size"], geometry,
                                                           sample["payload"])[0]
                for row in (results["rows"][combo], results["kinds"][kind][combo]):
                    row[0] += 1
                    row[1] += found.found
                    row[2] += found.found and found.payload == sample["payload"]
                    row[3] += found.score
                short = min(sample["source_size"])
                size_group = "input <128 px" if short < 128 else "input 128-191 px" if short < 192 else "input >=192 px"
                for group in (sample["category"], f"x{sample['scale']}", size_group,
                              f"{sample['category']} x{sample['scale']}"):
                    cell = results["groups"][group]
                    cell[0] += 1
                    cell[1] += found.found
                    cell[2] += found.found and found.payload == sample["payload"]
                if not found.found:
                    results["failures"].append(f"{combo}: #{index} {sample['category']}/{sample['picture']} "
                                               f"x{sample['scale']} {output.shape[1]}x{output.shape[0]} z={found.score:.1f}")
        if args.verbose:
            print(f"  sample {index + 1}/{args.images} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    results["rows"] = dict(results["rows"])
    results["groups"] = dict(results["groups"])
    results["oracle"] = dict(results["oracle"])
    results["kinds"] = {kind: dict(rows) for kind, rows in results["kinds"].items()}
    results["seconds"] = time.perf_counter() - started
    return results


def print_rows(rows: dict, title: str) -> None:
    names = [n for n in rows if not n.endswith(" + JPEG q75")]
    total = rows[names[0]][0]
    print(f"\nRobustness, {title}: {total} marked outputs, default key; found / found with the right payload, mean score")
    print(f"{'attack':24s} {'alone':>22s}   {'then JPEG q75':>22s}")
    for name in names:
        cells = []
        for key in (name, name + " + JPEG q75"):
            n, found, payload, score = rows[key]
            cells.append(f"{100 * found / n:6.1f}% {100 * payload / n:6.1f}% z={score / n:5.1f}")
        print(f"{name:24s} {cells[0]:>22s}   {cells[1]:>22s}")


def print_oracle(cells: dict) -> None:
    print(f"\nPhotographs, the detector beside an oracle that reads the mark at its true period and position "
          f"(no search beyond +-1 pixel: pilot >= {ORACLE_Z:.2f}, one test's threshold, or the payload read "
          f"there); found by the detector / by either:")
    for name, (n, found, either) in cells.items():
        print(f"  {name:40s} {100 * found / n:5.1f}% / {100 * either / n:5.1f}%  ({found} / {either} of {n})")


def print_matrix(results: dict) -> None:
    print_rows(results["rows"], "all pictures")
    for kind, rows in sorted(results.get("kinds", {}).items()):
        print_rows(rows, kind)
    groups = results.get("groups", {})
    attacks_per_picture = 2 * len([n for n in results["rows"] if not n.endswith(" + JPEG q75")])
    if groups:
        print(f"All attacks pooled (found / found with the right payload, over samples x {attacks_per_picture} attacks):")
        for name in sorted(groups, key=lambda n: (" x" in n and n[0] != "x", n)):
            g = groups[name]
            print(f"  {name:24s} {100 * g[1] / g[0]:5.1f}% {100 * g[2] / g[0]:5.1f}%  ({g[0] // attacks_per_picture} pictures)")
    quality = results["quality"]
    for field, label in (("psnr", "PSNR float (dB)"), ("psnr8", "PSNR 8-bit (dB)"), ("ssim", "SSIM")):
        values = np.array([q[field] for q in quality])
        print(f"{label:16s} mean {values.mean():.4g}  min {values.min():.4g}  max {values.max():.4g}")
    by = defaultdict(list)
    for q in quality:
        by[q["category"]].append(q["psnr"])
    print("PSNR by category: " + ", ".join(f"{c} {np.mean(v):.1f}" for c, v in by.items()))
    print(f"wrong key found: {sum(results['wrong_key'])} of {len(results['wrong_key'])}")
    if results["failures"]:
        per_picture = defaultdict(list)
        for line in results["failures"]:
            attack, _, picture = line.partition(": ")
            per_picture[picture.rsplit(" z=", 1)[0]].append(attack)
        print(f"misses: {len(results['failures'])} detections on {len(per_picture)} pictures; the worst:")
        for picture, missed in sorted(per_picture.items(), key=lambda item: -len(item[1]))[:25]:
            print(f"  {picture}: {len(missed)} of {attacks_per_picture} missed")


def unmarked_images(count: int, rng: np.random.Generator, upscaler: Upscaler):
    kinds = ["original", "bicubic", "lanczos"] + (["model"] if upscaler.kind == "model" else [])
    for index in range(count):
        category = list(CATEGORIES)[index % len(CATEGORIES)]
        spec = CATEGORIES[category][int(rng.integers(0, len(CATEGORIES[category])))]
        kind = kinds[index % len(kinds)]
        if kind == "original":
            w, h = int(rng.integers(256, 769)), int(rng.integers(256, 769))
            image = source_picture(spec, rng, h, w)
        else:
            scale = 2 if rng.random() < 0.5 else 4
            w, h = int(rng.integers(320 // scale, 768 // scale + 1)), int(rng.integers(320 // scale, 768 // scale + 1))
            image = to8(upscaler(source_picture(spec, rng, h, w), scale, kind))
        if rng.random() < 0.3:
            image = _encode(image, "JPEG", quality=int(rng.integers(50, 96)))
            kind += "+jpeg"
        yield kind, image


def false_positives(args, upscaler: Upscaler) -> dict:
    rng = np.random.default_rng(args.seed + 10_000)
    keys = [watermark.DEFAULT_KEY] + [f"calibration-{i}" for i in range(args.calibrate_keys)]
    scores, probabilities, found, kinds = [], [], 0, defaultdict(lambda: [0, 0])
    searches = defaultdict(list)  # search -> its best score per image and key, to fit its number of tests
    started = time.perf_counter()
    for kind, image in unmarked_images(args.unmarked, rng, upscaler):
        for key in keys:
            detection = watermark.detect(image, key=key)
            scores.append(detection.score)
            probabilities.append(detection.false_positive_probability)
            if key == watermark.DEFAULT_KEY:
                found += detection.found
                kinds[kind][0] += 1
                kinds[kind][1] += detection.found
            if args.calibrate_keys:
                best = {}
                for candidate in search._examine(image, coding._layout(key)):
                    best[candidate.search] = max(best.get(candidate.search, -math.inf), candidate.z)
                for name, z in best.items():
                    searches[name].append(z)
    return {"count": args.unmarked, "found": found, "scores": scores, "probabilities": probabilities,
            "kinds": dict(kinds), "keys": len(keys), "searches": dict(searches), "seconds": time.perf_counter() - started}


def print_false_positives(fp: dict) -> None:
    n = fp["count"]
    print(f"\nFalse positives: {fp['found']} of {n} unmarked images found ({100 * fp['found'] / n:.2f}%); "
          + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(fp["kinds"].items())))
    p = np.array(fp["probabilities"])
    z = np.array(fp["scores"])
    print(f"calibration over {p.size} searches ({fp['keys']} key(s) per image): "
          f"P(fpp <= 1e-1) = {np.mean(p <= 0.1):.4f}, P(fpp <= 1e-2) = {np.mean(p <= 1e-2):.4f}, "
          f"P(fpp <= 1e-3) = {np.mean(p <= 1e-3):.4f} (calibrated: at most 0.1, 0.01, 0.001)")
    needed = ", ".join(f"{threshold(tests):.2f} ({search})" for search, tests in calibration._SEARCH_TESTS.items())
    print(f"unmarked scores: median {np.median(z):.2f}, 99th percentile {np.percentile(z, 99):.2f}, max {z.max():.2f}; "
          f"found at score >= {needed} by the pilot alone, at any score with a payload whose keyed CRC checks")
    for name, best in sorted(fp.get("searches", {}).items()):
        # Fit each search's effective number of independent tests: P(max > z) = 1 - (1 - Q(z))^A.
        fits = []
        for quantile in (0.5, 0.9, 0.99):
            zq = float(np.quantile(best, quantile))
            tail = 0.5 * math.erfc(zq / math.sqrt(2))
            fits.append(f"{quantile:.0%} quantile z={zq:.2f}: {math.log(quantile) / math.log1p(-tail):.3g}")
        print(f"  {name} search, effective tests ({len(best)} searches; watermark uses "
              f"{calibration._SEARCH_TESTS[name]:.3g}): " + ", ".join(fits))


def threshold(tests: float) -> float:
    """The score at which a search of ``tests`` effective tests reports "found" by its pilot alone."""
    probability = watermark.FOUND_FALSE_POSITIVE / len(calibration._SEARCH_TESTS)
    low, high = 0.0, 40.0
    for _ in range(100):
        mid = (low + high) / 2
        if calibration._false_positive(mid, tests) > probability:
            low = mid
        else:
            high = mid
    return high


def timing() -> None:
    from skimage import data

    print("\nSpeed on one CPU core (best of 3):")
    base = Image.fromarray(data.astronaut())
    for width, height, scale in ((4000, 3000, 2), (2048, 1536, 4), (768, 768, 4)):
        output = np.asarray(base.resize((width, height), Image.BICUBIC)).astype(np.float32) / 255
        mp = width * height / 1e6
        source = (width // scale, height // scale)
        embed_s = min(_timed(watermark.embed, output, 1234, source_size=source) for _ in range(3))
        marked = to8(watermark.embed(output, 1234, source_size=source))
        detect_s = min(_timed(watermark.detect, marked) for _ in range(3))
        jpeg = _encode(marked, "JPEG", quality=85)
        found = watermark.detect(jpeg)
        print(f"  {width}x{height} ({mp:.1f} MP, x{scale}): embed {embed_s:.2f} s ({embed_s / mp:.3f} s/MP), "
              f"detect {detect_s:.2f} s ({detect_s / mp:.3f} s/MP); after JPEG q85 found={found.found} "
              f"payload ok={found.payload == 1234}")


def _timed(function, *args, **kwargs) -> float:
    started = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - started


def write_pngs(directory: Path, upscaler: Upscaler) -> None:
    """Zoomed crops (nearest x3): unmarked | marked | difference x25 around grey, to look at."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    cases = [("gradient", "synthetic-gradient", 2), ("text", "synthetic-text", 2), ("page", "page", 4),
             ("sky", "rocket:sky", 4), ("face", "astronaut:face", 4), ("night", "night:coffee", 2), ("foliage", "grass", 2)]
    for name, spec, scale in cases:
        source = source_picture(spec, rng, 192, 192)
        output = upscaler(source, scale)
        marked = watermark.embed(output, 0xA5A5A5A5, source_size=(192, 192))
        half = 96
        c = output.shape[0] // 2
        crop = slice(c - half, c + half)
        a, b = to8(output)[crop, crop], to8(marked)[crop, crop]
        diff = to8(0.5 + 25 * (marked - output)[crop, crop])
        gap = np.full((2 * half, 4, 3), 255, np.uint8)
        strip = np.concatenate([a, gap, b, gap, diff], axis=1)
        Image.fromarray(strip).resize((strip.shape[1] * 3, strip.shape[0] * 3), Image.NEAREST).save(directory / f"{name}.png")
        Image.fromarray(to8(marked)).save(directory / f"{name}-full-marked.png")
        Image.fromarray(to8(output)).save(directory / f"{name}-full-unmarked.png")
    print(f"wrote zoomed crops to {directory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="marked outputs for the robustness matrix")
    parser.add_argument("--unmarked", type=int, default=1000, help="unmarked images for the false-positive figure")
    parser.add_argument("--upscaler", choices=["model", "bicubic"], default="model")
    parser.add_argument("--sizes", type=int, nargs=2, default=(768, 1536), metavar=("MIN", "MAX"),
                        help="range of the marked outputs' sides in pixels")
    parser.add_argument("--inputs", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="small-input matrix: inputs' sides in this range (e.g. 96 384), issue 17's attacks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate-keys", type=int, default=0, help="extra random keys per unmarked image")
    parser.add_argument("--save", type=Path, help="write the raw results as JSON (to --merge later)")
    parser.add_argument("--merge", type=Path, nargs="+", help="print the pooled results of saved runs")
    parser.add_argument("--png", type=Path, help="write zoomed crops of marked pictures to look at")
    parser.add_argument("--oracle", action="store_true",
                        help="small-input matrix: each attacked photograph also read at the mark's true period and "
                             "position with no search, which the detector's search cannot beat")
    parser.add_argument("--amplitude", type=float, default=1.0,
                        help="the robustness matrix with every mark this many times stronger (same shape): what a "
                             "stronger mark would buy, and cost in PSNR and SSIM; not a setting of Avow's")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    if args.merge:
        merged = {"rows": defaultdict(lambda: [0, 0, 0, 0.0]), "groups": defaultdict(lambda: [0, 0, 0]),
                  "kinds": defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0.0])),
                  "quality": [], "wrong_key": [], "failures": []}
        fp = None
        for path in args.merge:
            part = json.loads(path.read_text())
            for name, row in part.get("robustness", {}).get("rows", {}).items():
                merged["rows"][name] = [a + b for a, b in zip(merged["rows"][name], row, strict=True)]
            for name, row in part.get("robustness", {}).get("groups", {}).items():
                merged["groups"][name] = [a + b for a, b in zip(merged["groups"][name], row, strict=True)]
            for kind, rows in part.get("robustness", {}).get("kinds", {}).items():
                for name, row in rows.items():
                    merged["kinds"][kind][name] = [a + b for a, b in zip(merged["kinds"][kind][name], row, strict=True)]
            for field in ("quality", "wrong_key", "failures"):
                merged[field] += part.get("robustness", {}).get(field, [])
            if part.get("false_positives"):
                f = part["false_positives"]
                if fp is None:
                    fp = {"count": 0, "found": 0, "scores": [], "probabilities": [], "kinds": {}, "keys": f["keys"]}
                fp["count"] += f["count"]
                fp["found"] += f["found"]
                fp["scores"] += f["scores"]
                fp["probabilities"] += f["probabilities"]
                for search, best in f.get("searches", {}).items():
                    fp.setdefault("searches", {}).setdefault(search, []).extend(best)
                for k, v in f["kinds"].items():
                    fp["kinds"][k] = [a + b for a, b in zip(fp["kinds"].get(k, [0, 0]), v, strict=True)]
        if merged["rows"]:
            merged["rows"] = dict(merged["rows"])
            merged["groups"] = dict(merged["groups"])
            print_matrix(merged)
        if fp:
            print_false_positives(fp)
        return

    try:
        upscaler = Upscaler(args.upscaler)
    except (ImportError, OSError, ValueError, RuntimeError) as error:  # no torch or no weights: fall back
        print(f"model unavailable ({error}); using bicubic upscales", file=sys.stderr)
        upscaler = Upscaler("bicubic")
    print(f"upscaler: {upscaler.kind}; mark: tile {coding.TILE_SOURCE_PX} source px, band {coding.K_LO}-{coding.K_HI} "
          f"cycles/tile, found at false-positive probability <= {watermark.FOUND_FALSE_POSITIVE:g}")
    if args.png:
        write_pngs(args.png, upscaler)
    saved = {}
    if args.images:
        results = robustness(args, upscaler)
        print_matrix(results)
        if results["oracle"]:
            print_oracle(results["oracle"])
        print(f"({results['seconds']:.0f} s)")
        saved["robustness"] = results
    if args.unmarked:
        fp = false_positives(args, upscaler)
        print_false_positives(fp)
        print(f"({fp['seconds']:.0f} s)")
        saved["false_positives"] = fp
    if not args.no_timing:
        timing()
    if args.save:
        args.save.write_text(json.dumps(saved))


if __name__ == "__main__":
    main()
