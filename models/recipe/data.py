"""Training and held-out images, and the degradation the models learn to undo.

Only pictures that ship inside scikit-image's wheel and are public domain or CC0 (per the
docstrings of ``skimage/data/_fetchers.py``), plus synthetic images drawn from a fixed seed:
nothing is downloaded. The held-out pictures never enter training. Pictures whose docstring
states no licence (moon, page, logo, motorcycle_*, ...) or only "no known copyright
restrictions" for a museum/lab object (coins, ihc) are not used at all.

The degradation is MATLAB's ``imresize`` bicubic (a = -0.5, antialiased when shrinking), the
convention super-resolution benchmarks are reported in; PyTorch's bicubic uses a = -0.75.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
import torch
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
HELD_OUT_SYNTHETIC_SEED = 1000


def load_rgb(name: str) -> np.ndarray:
    """float32 H x W x 3 in [0, 1]; grey pictures are repeated into three channels."""
    array = (
        np.asarray(Image.open(SKIMAGE_DATA / name).convert("RGB"), dtype=np.float32)
        / 255.0
    )
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
            draw.ellipse(
                [x0, y0, x1, y1], outline=colour, width=int(rng.integers(1, 5))
            )
        elif kind == 1:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 4)))
    for _ in range(6):
        draw.text(
            tuple(int(v) for v in rng.integers(0, size - 60, 2)),
            "Avow 0123 abc",
            fill=(0, 0, 0),
        )
    noise = rng.normal(0, 0.01, (size, size, 3))
    return np.clip(np.asarray(image, dtype=np.float32) / 255.0 + noise, 0, 1).astype(
        np.float32
    )


def training_images() -> list[np.ndarray]:
    return [load_rgb(name) for name in TRAIN_FILES] + [
        synthetic(seed) for seed in TRAIN_SYNTHETIC_SEEDS
    ]


def held_out_images() -> dict[str, np.ndarray]:
    images = {name: load_rgb(name) for name in HELD_OUT_FILES}
    images[f"synthetic-{HELD_OUT_SYNTHETIC_SEED}"] = synthetic(HELD_OUT_SYNTHETIC_SEED)
    return images


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


def _resize_matrix(in_len: int, out_len: int) -> np.ndarray:
    """MATLAB imresize's bicubic weights as a dense out_len x in_len matrix (symmetric borders)."""
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
    indices = mirrored[np.mod(indices, 2 * in_len)]
    matrix = np.zeros((out_len, in_len))
    np.add.at(
        matrix, (np.repeat(np.arange(out_len), taps), indices.ravel()), weights.ravel()
    )
    return matrix


def imresize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """MATLAB-style bicubic resize of H x W x C float32 (no clipping, as MATLAB on doubles)."""
    rows = torch.from_numpy(_resize_matrix(image.shape[0], height)).float()
    cols = torch.from_numpy(_resize_matrix(image.shape[1], width)).float()
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return (rows @ tensor @ cols.T).permute(1, 2, 0).numpy()


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
