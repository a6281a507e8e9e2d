"""A PNG output is written band by band as it is made (``pngstream``, ``canvas.PngCanvas``): the
file decodes bit-exact to the levels the buffered path gives, in every layout, 8 and 16 bits,
with its ICC profile; its thumbnail matches the one made from the whole picture; and a stop in
the middle of the stream leaves only a staged, non-image name behind while it runs and nothing after."""

from __future__ import annotations

import io

import numpy as np
import png
import pytest
import torch
from PIL import Image, ImageCms

import test_stream
from avow.canvas import LevelsCanvas, PngCanvas
from avow.engine import UpscaleOptions, prepare_model, synthesize_into, upscale_file
from avow.errors import Cancelled
from avow.images import PNG_COMPRESSION, BandThumbnail, Levels, from_array, thumbnail
from avow.pngstream import PngStream
from avow_c2pa.formats import OUTPUT_SUFFIXES
from conftest import photo

CPU = torch.device("cpu")
model_path = test_stream.model_path  # the same small random model (a module-scoped fixture)
LAYOUTS = {1: [0], 2: [0, 3], 3: [0, 1, 2], 4: [0, 1, 2, 3]}


def streamed(levels: np.ndarray, icc: bytes | None = None, cuts=(0, 1, 7, 40)) -> bytes:
    handle = io.BytesIO()
    stream = PngStream(handle, levels.shape[1], levels.shape[0], levels.shape[2], 8 * levels.itemsize, icc,
                       PNG_COMPRESSION)
    for top, bottom in zip(cuts, (*cuts[1:], len(levels)), strict=True):
        stream.write(levels[top:bottom])
    stream.close()
    return handle.getvalue()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_8bit_streamed_png_is_pillows_decode_of_the_same_levels(channels):
    levels = photo(61, 37, channels=4)[..., LAYOUTS[channels]]
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with Image.open(io.BytesIO(streamed(levels, icc))) as image:
        decoded = np.asarray(image)
        assert image.info.get("icc_profile") == icc
    assert np.array_equal(decoded.reshape(levels.shape), levels)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_streamed_png_decodes_to_the_same_levels(channels):
    levels = np.random.default_rng(channels).integers(0, 65536, size=(45, 19, channels), dtype=np.uint16)
    width, height, rows, info = png.Reader(bytes=streamed(levels)).asDirect()
    assert (width, height, info["bitdepth"], info["planes"]) == (19, 45, 16, channels)
    assert np.array_equal(np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(levels.shape), levels)


def test_a_short_stream_is_refused_at_close():
    stream = PngStream(io.BytesIO(), 4, 3, 3, 8, None, PNG_COMPRESSION)
    stream.write(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        stream.close()


@pytest.mark.parametrize(("channels", "depth"), [(1, 8), (2, 16), (3, 8), (4, 8), (3, 16)])
def test_the_streamed_file_holds_the_buffered_paths_levels(model_path, channels, depth):
    model = prepare_model(UpscaleOptions(model=str(model_path)))
    pixels = photo(70, 33, channels=4)[..., LAYOUTS[channels]].astype(np.float32) / 255
    picture = from_array(pixels, "png", depth)
    buffered = LevelsCanvas(picture, 2, "png")
    synthesize_into(buffered, picture, model, CPU, 24, 77)
    expected = buffered.levels().pixels
    expected = np.asarray(expected).reshape(140, 66, -1) if isinstance(expected, Image.Image) else expected
    handle = io.BytesIO()
    canvas = PngCanvas(picture, 2, handle, 32)
    synthesize_into(canvas, picture, model, CPU, 24, 77)
    small = canvas.close()
    width, height, rows, info = png.Reader(bytes=handle.getvalue()).asDirect()
    assert info["bitdepth"] == depth
    written = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, -1)
    assert np.array_equal(written, expected)
    eight = np.rint(expected / 257).astype(np.uint8) if depth == 16 else expected  # area means, not a sample
    with Image.open(io.BytesIO(small)) as streamed_thumb, Image.open(io.BytesIO(
            thumbnail(Levels(eight, "png", None), 32))) as whole_thumb:
        assert streamed_thumb.size == whole_thumb.size
        difference = np.abs(np.asarray(streamed_thumb, np.float64) - np.asarray(whole_thumb, np.float64))
        assert difference.mean() < 3


@pytest.mark.parametrize(("edge", "factor", "size"), [
    (120, 9, (58, 115)),  # a box factor of 9 lands within the edge: partial blocks at the right and bottom
    (500, 2, (251, 500)),  # a factor of 3 (344 px) would keep too little: 2, then Pillow's bicubic
])
def test_the_band_thumbnail_is_the_box_reduction_of_the_whole(edge, factor, size):
    levels = photo(1030, 517)
    reducer = BandThumbnail(1030, 517, 3, edge)
    assert reducer.factor == factor
    for top in range(0, 1030, 128):
        reducer.add(levels[top : top + 128])
    with Image.open(io.BytesIO(reducer.jpeg())) as streamed_thumb, Image.open(io.BytesIO(
            thumbnail(Levels(Image.fromarray(levels), "png", None), edge))) as whole_thumb:
        assert streamed_thumb.size == whole_thumb.size == size
        assert np.abs(np.asarray(streamed_thumb, np.float64) - np.asarray(whole_thumb, np.float64)).mean() < 2


def test_a_stop_mid_stream_leaves_no_image_named_file(tmp_path, model_path):
    source = tmp_path / "in.png"
    Image.fromarray(photo(300, 90)).save(source)
    target = tmp_path / "out.png"
    seen: list[set[str]] = []

    def stop() -> bool:
        seen.append({path.name for path in tmp_path.iterdir() if path != source})
        return len(seen) > 12  # strips written

    with pytest.raises(Cancelled):
        upscale_file(source, target, UpscaleOptions(model=str(model_path), tile=32), should_stop=stop)
    names = set().union(*seen)  # the staged file, open while the strips are written
    assert names and not any(name.lower().endswith(tuple(OUTPUT_SUFFIXES)) for name in names)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.png"]
