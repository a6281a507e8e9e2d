"""Training and held-out images, and the degradation the models learn to undo.

Three sources: pictures that ship inside scikit-image's wheel and are public domain or CC0 (per
the docstrings of ``skimage/data/_fetchers.py``); photographs from Debian packages, installed at
training time by ``photos.py`` (CC0 / CC-BY ones for training, share-alike and GPL ones held out);
synthetic images drawn from a fixed seed. The held-out pictures never enter training. skimage
pictures whose docstring states no licence (moon, page, logo, motorcycle_*, ...) or only "no known
copyright restrictions" for a museum/lab object (coins, ihc) are not used at all.

The degradation is MATLAB's ``imresize`` bicubic (a = -0.5, antialiased when shrinking), the
convention super-resolution benchmarks are reported in; PyTorch's bicubic uses a = -0.75.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path

import numpy as np
import photos
import skimage.data
from PIL import Image, ImageDraw

SKIMAGE_DATA = Path(skimage.data.__file__).parent

# file -> license, as stated in the docstrings of skimage/data/_fetchers.py (scikit-image 0.26)
TRAIN_FILES = {
    "astronaut.png": "public domain (NASA, Eileen Collins portrait)",
    "rocket.jpg": "public domain (SpaceX, DSCOVR launch)",
    "hubble_deep_field.jpg": "public domain (NASA, Hubble eXtreme Deep Field)",
    "retina.jpg": "CC0 1.0 (Mikael Häggström, fundus photograph)",
    "brick.png": "CC0 (CC0Textures, Bricks25)",
    "grass.png": "CC0 (linolafett, DeviantArt Grass-01)",
    "gravel.png": "CC0 (CC0Textures, Gravel04)",
    "cell.png": "CC0 (Paul Müller, quantitative phase image)",
    "text.png": "public domain (Wikipedia File:Corner.png)",
}
HELD_OUT_FILES = {
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "camera.png": "CC0 (Lav Varshney)",
}
TRAIN_SYNTHETIC_SEEDS = (1, 2, 3, 4, 5, 6)
HR_FACTORS = (1.0, 0.75, 0.5)  # every training picture also serves shrunk: cleaner HR, more scales
HELD_OUT_CROP = 768
PAIRS_VERSION = 1  # bump when the degradation or the cached pairs' layout changes
HELD_OUT_SYNTHETIC_SEED = 1000


def load_rgb(name: str) -> np.ndarray:
    """float32 H x W x 3 in [0, 1]; grey pictures are repeated into three channels."""
    array = np.asarray(Image.open(SKIMAGE_DATA / name).convert("RGB"), dtype=np.float32) / 255.0
    return array


def synthetic(seed: int, size: int = 384) -> np.ndarray:
    """Edges, strokes, gradients and texture: the structures upscalers get wrong first."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x, y, (x + y) / 2], axis=2) * rng.uniform(0.3, 1.0, 3)
    image = Image.fromarray((base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.integers(0, size, 2)
        x1, y1 = x0 + rng.integers(8, 120), y0 + rng.integers(8, 120)
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse([x0, y0, x1, y1], outline=colour, width=int(rng.integers(1, 5)))
        elif kind == 1:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 4)))
    for _ in range(6):
        left, top = (int(v) for v in rng.integers(0, size - 60, 2))
        draw.text((left, top), "Avow 0123 abc", fill=(0, 0, 0))
    noise = rng.normal(0, 0.01, (size, size, 3))
    return np.clip(np.asarray(image, dtype=np.float32) / 255.0 + noise, 0, 1).astype(np.float32)


def held_out_images() -> dict[str, np.ndarray]:
    """The held-out photographs (float32 HR) and the synthetic one; chosen before any training.

    The registry's held-out photographs are MATLAB-shrunk to half size (as the training pictures'
    cleaner copies are) and centre-cropped to HELD_OUT_CROP square, so the set measures detail,
    not JPEG noise and lens softness at 100 %, and stays quick to run through ``avow upscale``."""
    images = {name: load_rgb(name) for name in HELD_OUT_FILES}
    paths = photos.install()
    for photo in photos.PHOTOS:
        if photo.use == "held-out":
            half = rescale(_read(paths[photo.name]), 0.5)
            top = (half.shape[0] - HELD_OUT_CROP) // 2
            left = (half.shape[1] - HELD_OUT_CROP) // 2
            images[photo.name] = half[top : top + HELD_OUT_CROP, left : left + HELD_OUT_CROP]
    images[f"synthetic-{HELD_OUT_SYNTHETIC_SEED}"] = synthetic(HELD_OUT_SYNTHETIC_SEED)
    return images


def training_pairs(scale: int, min_side: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR uint8, HR uint8) for every training picture and its 3/4 and 1/2 copies whose short
    side is at least ``min_side`` HR pixels. Built once and cached as .npy (memory-mapped on
    reuse), keyed by the picture's sha256, the factor, the scale and PAIRS_VERSION."""
    sources: list[tuple[str, bytes | None, Callable[[], np.ndarray]]] = [
        (name, (SKIMAGE_DATA / name).read_bytes(), partial(load_rgb, name)) for name in TRAIN_FILES
    ]
    paths = photos.install()
    sources += [
        (photo.name, paths[photo.name].read_bytes(), partial(_read, paths[photo.name]))
        for photo in photos.PHOTOS
        if photo.use == "training"
    ]
    sources += [(f"synthetic-{seed}", None, partial(synthetic, seed)) for seed in TRAIN_SYNTHETIC_SEEDS]
    folder = photos.CACHE / "pairs"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for name, content, loader in sources:
        load = cache(loader)  # read once, and only if a pair has to be made
        if content is None:  # synthetic: its bytes are its pixels (Pillow's text rendering may vary)
            content = load().tobytes()
        digest = hashlib.sha256(content).hexdigest()[:16]
        for factor in HR_FACTORS:
            lr_u8, hr_u8 = cached_pair(folder, digest, load, factor, scale)
            if min(hr_u8.shape[:2]) >= min_side:
                pairs.append((f"{name}@{factor}", lr_u8, hr_u8))
    return pairs


def pair_paths(folder: Path, digest: str, factor: float, scale: int) -> tuple[Path, Path]:
    """The cached (LR, HR) files of a picture at ``factor`` for ``scale``. The names end in the
    suffixes whole: ``Path.with_suffix`` on "…-f0.75-x2-v1" cut at the factor's decimal point,
    so every factor and scale of a picture shared two files (up to iteration 3,750 of the x4 run
    its 1/2 copies were its 3/4 copies again, and x2 trained on x4 pairs)."""
    stem = f"{digest}-f{factor}-x{scale}-v{PAIRS_VERSION}"
    return folder / f"{stem}.lr.npy", folder / f"{stem}.hr.npy"


def cached_pair(
    folder: Path, digest: str, load: Callable[[], np.ndarray], factor: float, scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8 of the picture ``load`` gives, shrunk by ``factor`` for ``scale``: made once
    (the HR file, written last, says both exist), memory-mapped after."""
    lr_path, hr_path = pair_paths(folder, digest, factor, scale)
    if not hr_path.is_file():
        picture = load()
        hr = picture if factor == 1.0 else rescale(picture, factor)
        hr = crop_to_multiple(hr, scale)
        _save_npy(lr_path, to_uint8(degrade(hr, scale)))
        _save_npy(hr_path, to_uint8(hr))
    return np.load(lr_path, mmap_mode="r"), np.load(hr_path, mmap_mode="r")


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _save_npy(path: Path, array: np.ndarray) -> None:
    staging = path.with_name(path.name + ".staging")
    with open(staging, "wb") as handle:
        np.save(handle, array)
    os.replace(staging, path)


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return np.where(
        ax <= 1,
        1.5 * ax**3 - 2.5 * ax**2 + 1,
        np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0),
    )


def _resize_taps(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB imresize's bicubic taps: (indices, weights), each out_len x taps (symmetric borders).

    Banded rather than a dense out_len x in_len matrix: a 16 MP picture's dense matrices cost
    seconds and hundreds of MB; its taps cost nothing."""
    scale = out_len / in_len
    kernel_scale = min(scale, 1.0)  # antialiasing: widen the kernel when shrinking
    width = 4.0 / kernel_scale
    centres = (np.arange(out_len) + 0.5) / scale - 0.5
    left = np.floor(centres - width / 2).astype(int)
    taps = int(np.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = kernel_scale * _cubic(kernel_scale * (centres[:, None] - indices))
    weights /= weights.sum(axis=1, keepdims=True)
    mirrored = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    return mirrored[np.mod(indices, 2 * in_len)], weights.astype(np.float32)


def _resize_axis(image: np.ndarray, out_len: int, axis: int) -> np.ndarray:
    indices, weights = _resize_taps(image.shape[axis], out_len)
    shape = [1] * image.ndim
    shape[axis] = out_len
    out = np.zeros(image.shape[:axis] + (out_len,) + image.shape[axis + 1 :], np.float32)
    for k in range(indices.shape[1]):
        out += weights[:, k].reshape(shape) * np.take(image, indices[:, k], axis=axis)
    return out


def imresize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """MATLAB-style bicubic resize of H x W x C float32 (no clipping, as MATLAB on doubles)."""
    return _resize_axis(_resize_axis(image.astype(np.float32, copy=False), height, 0), width, 1)


def quantize(image: np.ndarray) -> np.ndarray:
    """Round to 8 bits, as a picture saved to an ordinary file is."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """The low-resolution input a model sees for ``hr`` (whose sides must be multiples of ``scale``):
    MATLAB bicubic downscale, then clipped and rounded to 8 bits like MATLAB's uint8 imresize."""
    return quantize(imresize(hr, hr.shape[0] // scale, hr.shape[1] // scale))


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """An 8-bit, MATLAB-bicubic rescaled copy (used to make extra, cleaner HR pictures)."""
    height, width = (max(1, round(side * factor)) for side in image.shape[:2])
    return quantize(imresize(image, height, width))
