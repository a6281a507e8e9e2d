"""The pixel watermark: found after recompression and downscaling with the right payload, absent
where it was never put, keyed, deterministic, invisible by the numbers, and never a crash.

Robustness rates and false-positive figures are a benchmark (bench/bench_watermark.py), not tests.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from avow_c2pa import watermark
from avow_c2pa.watermark import DEFAULT_KEY, PAYLOAD_BITS, Detection, calibration, detect, embed, embedding, search

SOURCE = (256, 192)  # width, height of the "upscaler's input"
PAYLOAD = 0xA5C3_0F96


def _picture(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like 8-bit picture: smooth shading, objects with edges, fine texture, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for _ in range(6):  # smooth shading
        fy, fx = rng.uniform(-0.02, 0.02, 2)
        image += rng.uniform(0.05, 0.15, 3) * np.cos(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 6.3))[..., None]
    for _ in range(12):  # objects
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 40)
        inside = ((y - cy) ** 2 + (x - cx) ** 2 < r * r)[..., None]
        image = np.where(inside, image * 0.5 + rng.uniform(-0.2, 0.3, 3), image)
    texture = rng.normal(0, 1, (height, width))
    low_pass = np.hypot(*np.meshgrid(np.fft.fftfreq(width), np.fft.fftfreq(height))) < 0.25
    texture = np.real(np.fft.ifft2(np.fft.fft2(texture) * low_pass))
    image += 0.04 * texture[..., None] + rng.normal(0, 0.006, image.shape)
    return (np.clip(image + 0.5, 0, 1) * 255 + 0.5).astype(np.uint8)


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    height, width = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((width * scale, height * scale), Image.BICUBIC)).astype(np.float32) / 255


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _to8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def output() -> np.ndarray:
    """The unmarked synthesized output: a x2 upscale, float32 in [0, 1]."""
    return _upscale(_picture(SOURCE[1], SOURCE[0], seed=1), 2)


@pytest.fixture(scope="module")
def marked(output) -> np.ndarray:
    return embed(output, PAYLOAD, source_size=SOURCE)


def test_api_shape():
    assert isinstance(DEFAULT_KEY, str) and DEFAULT_KEY
    assert PAYLOAD_BITS >= 32
    detection = Detection(False, 0.0, 1.0, None)
    with pytest.raises(AttributeError):
        detection.found = True  # frozen


def test_marked_output_found_after_jpeg75_and_half_size(marked):
    height, width = marked.shape[:2]
    laundered = _jpeg(np.asarray(Image.fromarray(_to8(marked)).resize((width // 2, height // 2), Image.BICUBIC)), 75)
    found = detect(laundered)
    assert found.found
    assert found.payload == PAYLOAD
    assert found.false_positive_probability <= watermark.FOUND_FALSE_POSITIVE


def test_marked_output_found_back_at_input_size_after_jpeg(marked):
    laundered = _jpeg(np.asarray(Image.fromarray(_to8(marked)).resize(SOURCE, Image.LANCZOS)), 75)
    found = detect(laundered)
    assert found.found and found.payload == PAYLOAD


def test_cropped_marked_output_found(marked):
    crop = _to8(marked)[57:57 + 300, 91:91 + 330]  # ~50% of the area, odd offset and size
    found = detect(crop)
    assert found.found and found.payload == PAYLOAD


def test_native_periods_cover_avow_outputs_at_their_size_and_back_at_input_size():
    """A copy that kept its size (re-saved, cropped, retouched) or was shrunk back to the input is
    searched at the exact period first, with a far smaller multiple test than the scan's."""
    for source in ((128, 96), (512, 341), (1000, 750)):
        for scale in (1, 2, 3, 4):
            width, height = source[0] * scale, source[1] * scale
            period = embedding._period(height, width, source)
            assert min(abs(p / period - 1) for p in search._native_periods(height, width)) < 1e-3
            back = period * source[0] / width
            assert min(abs(p / back - 1) for p in search._native_periods(source[1], source[0])) < 1e-3


def test_reduced_decode_is_searched_at_the_full_size_periods(marked):
    """verify decodes a large JPEG at reduced scale; the native periods are the full picture's."""
    height, width = marked.shape[:2]
    reduced = np.asarray(Image.fromarray(_to8(marked)).reduce(2))
    found = detect(reduced, full_size=(width, height))
    assert found.found and found.payload == PAYLOAD
    wrong_size = detect(reduced, full_size=(width * 3, height * 3))  # only the scan finds it
    assert found.false_positive_probability < wrong_size.false_positive_probability / 10


@pytest.mark.parametrize("turn", ["rot90", "rot180", "rot270", "mirror", "flip", "transpose"])
def test_turned_or_mirrored_copy_found(marked, turn):
    image = _to8(marked)
    turned = {"rot90": np.rot90(image), "rot180": np.rot90(image, 2), "rot270": np.rot90(image, 3),
              "mirror": image[:, ::-1], "flip": image[::-1], "transpose": image.transpose(1, 0, 2)}[turn]
    found = detect(_jpeg(np.ascontiguousarray(turned), 75))
    assert found.found and found.payload == PAYLOAD


@pytest.mark.parametrize("degrees", [-2.0, 1.2])
def test_slightly_rotated_copy_found(marked, degrees):
    """A straightened horizon: the picture turned by a small angle (corners filled), then JPEG."""
    turned = np.asarray(Image.fromarray(_to8(marked)).rotate(degrees, Image.BICUBIC))
    found = detect(_jpeg(turned, 85))
    assert found.found and found.payload == PAYLOAD


@pytest.mark.parametrize("search", ["native", "turned", "rotated", "scan"])
def test_a_payload_whose_crc_checks_is_found_whatever_the_pilot_says(search):
    """The keyed CRC is a second, independent test: a weak but readable mark is reported, from any search."""
    candidate = calibration._Found(0.0, np.zeros(1, complex), 0.0, 0.0, search)
    assert candidate.false_positive(decoded=False) == 1.0
    assert candidate.false_positive(decoded=True) <= watermark.FOUND_FALSE_POSITIVE


def test_unmarked_output_not_found(output):
    for image in (_to8(output), _jpeg(_to8(output), 75), np.ascontiguousarray(np.rot90(_to8(output)))):
        found = detect(image)
        assert not found.found
        assert found.payload is None
        assert found.false_positive_probability > watermark.FOUND_FALSE_POSITIVE


def test_wrong_key_finds_nothing(marked):
    found = detect(_to8(marked), key="someone-else's key")
    assert not found.found and found.payload is None
    other = embed(marked, 1, key="someone-else's key", source_size=SOURCE)
    assert detect(_to8(other), key="someone-else's key").payload == 1


@pytest.mark.parametrize("payload", [0, 1, 0xDEADBEEF, (1 << PAYLOAD_BITS) - 1])
def test_payload_round_trip(output, payload):
    found = detect(embed(output, payload, source_size=SOURCE))  # float input, unquantised
    assert found.found and found.payload == payload


def test_payload_out_of_range_is_refused(output):
    with pytest.raises(ValueError):
        embed(output, 1 << PAYLOAD_BITS)
    with pytest.raises(ValueError):
        embed(output, -1)


def test_embedding_is_deterministic(output, marked):
    again = embed(output.copy(), PAYLOAD, source_size=SOURCE)
    assert again.dtype == np.float32 and again.shape == output.shape
    assert np.array_equal(again, marked)
    assert not np.array_equal(embed(output, PAYLOAD + 1, source_size=SOURCE), marked)


def test_imperceptible_by_psnr(output, marked):
    assert marked.min() >= 0 and marked.max() <= 1
    mse = float(np.mean((marked.astype(np.float64) - output) ** 2))
    assert 10 * np.log10(1 / mse) >= 40.0
    flat = np.full((256, 256, 3), 0.6, np.float32)  # on a flat area the mark is far weaker
    mse = float(np.mean((embed(flat, PAYLOAD, source_size=(128, 128)) - flat) ** 2))
    assert 10 * np.log10(1 / mse) >= 48.0


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        np.full((7, 5, 3), 200, np.uint8),
        np.full((300, 300, 3), 128, np.uint8),  # flat
        np.full((257, 131, 3), 0.25, np.float32),
        np.random.default_rng(0).integers(0, 256, (131, 517, 3), dtype=np.uint8),  # odd sizes, noise
        np.random.default_rng(1).integers(0, 256, (2, 900, 3), dtype=np.uint8),  # a sliver
        np.random.default_rng(2).integers(0, 256, (97, 123), dtype=np.uint8),  # grey
        np.random.default_rng(3).integers(0, 65536, (160, 200, 4), dtype=np.uint16),  # 16-bit with alpha
        np.full((120, 90, 3), np.nan, np.float32),
    ],
    ids=["empty", "1x1", "7x5", "flat", "odd-flat-float", "odd-noise", "sliver", "grey", "uint16-rgba", "nan"],
)
def test_detect_never_crashes(image):
    found = detect(image)
    assert not found.found
    assert 0.0 <= found.false_positive_probability <= 1.0


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 17, 3), (61, 47, 4), (129, 255, 3)])
def test_embed_handles_small_and_odd_sizes(shape):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = embed(image, 7, source_size=(max(1, shape[1] // 2), max(1, shape[0] // 2)))
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.all((out >= 0) & (out <= 1))
    if shape[2] == 4:
        assert np.array_equal(out[..., 3], image[..., 3])  # alpha untouched


def test_module_needs_neither_torch_nor_scipy():
    code = "import sys, avow_c2pa.watermark; print(any(m in sys.modules for m in ('torch', 'scipy')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
