"""The streamed engine: each row of tiles is marked and quantised into the encoder's buffer as it
comes, with the pixels of the float path (``synthesize``, the editors' one) quantised, whatever the
bands; the RMS cap holds from budgets set before any output exists; alpha, grey, 16-bit and ICC
go through the streamed encoders; and no float copy of the whole output is ever made."""

from __future__ import annotations

import io
import tracemalloc

import c2pa
import numpy as np
import png
import pytest
import torch
from PIL import Image, ImageCms
from safetensors.torch import save_file

from avow import tiling
from avow.canvas import LevelsCanvas
from avow.engine import UpscaleOptions, prepare_model, synthesize, synthesize_into, upscale_file, watermark_payload
from avow.images import from_array, read_picture, write_levels
from avow_c2pa import watermark
from avow_c2pa.watermark import embedding
from avow_models.archs.srvgg import SRVGGNetCompact
from conftest import photo

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A real SRVGGNetCompact x2 with random weights: a picture-like output, not a copy of the input."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("model") / "random-x2.safetensors"
    save_file(SRVGGNetCompact(num_feat=8, num_conv=2, scale=2).state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return prepare_model(UpscaleOptions(model=str(model_path)))


def quantised(picture, top: float) -> np.ndarray:
    planes = [picture.color[..., :1] if picture.grayscale else picture.color]
    planes += [picture.alpha[..., None]] if picture.alpha is not None else []
    return np.rint(np.clip(np.concatenate(planes, axis=2), 0, 1) * top)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("tile", [0, 12])
def test_streamed_levels_are_the_float_path_quantised(model, channels, tile):
    pixels = photo(38, 45, channels=4)[..., {1: [0], 2: [0, 3], 3: [0, 1, 2], 4: [0, 1, 2, 3]}[channels]]
    picture = from_array(pixels.astype(np.float32) / 255, "png", 8)
    payload = watermark_payload(model, picture)
    canvas = LevelsCanvas(picture, 2, "png")
    synthesize_into(canvas, picture, model, CPU, tile, payload)
    written = canvas.levels().pixels
    levels = np.asarray(written) if isinstance(written, Image.Image) else written
    expected = quantised(synthesize(picture, model, CPU, tile, payload), 255)
    assert np.array_equal(levels.reshape(expected.shape), expected)


def test_streamed_tiles_give_the_untiled_whole_picture_marked(model):
    """Bands of 16 input rows against the output made in one piece and marked by ``embed``."""
    picture = from_array(photo(70, 52).astype(np.float32) / 255, "png", 8)
    payload = watermark_payload(model, picture)
    streamed = synthesize(picture, model, CPU, 16, payload).color
    whole = tiling.upscale(model.module, picture.color, 2, 0, model.descriptor.tiling)
    marked = watermark.embed(whole, payload, (watermark.DEFAULT_KEY,), source_size=picture.size, reference=picture.color)
    assert float(np.abs(streamed - marked).max()) < 1e-4  # tiled == untiled, to float rounding


def test_the_rms_cap_holds_through_the_engine_on_one_textured_band(model):
    rng = np.random.default_rng(5)
    pixels = np.full((120, 96, 3), 0.45, np.float32)
    pixels[50:58] = rng.random((8, 96, 3), dtype=np.float32)
    picture = from_array(pixels, "png", 8)
    marked = synthesize(picture, model, CPU, 32, 0x1234).color
    unmarked = tiling.upscale(model.module, picture.color, 2, 32, model.descriptor.tiling)
    rms = float(np.sqrt(np.mean(np.square(marked.astype(np.float64) - unmarked))))
    assert 0 < rms <= embedding._MAX_RMS * 1.0001
    psnr = 10 * np.log10(1 / rms**2)
    assert psnr >= 40.4


def test_16bit_grey_with_alpha_and_icc_through_the_row_writer(tmp_path, model_path, model):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    levels = np.random.default_rng(4).integers(0, 65536, size=(18, 22, 2), dtype=np.uint16)
    source = tmp_path / "grey16.png"
    with open(source, "wb") as handle:
        png.Writer(22, 18, greyscale=True, alpha=True, bitdepth=16).write(handle, levels.reshape(18, -1))
    out = tmp_path / "grey16-x2.png"
    picture = read_picture(source)
    result = upscale_file(source, out, UpscaleOptions(model=str(model_path), tile=8))
    width, height, rows, info = png.Reader(filename=str(out)).asDirect()
    assert (width, height, info["bitdepth"], info["planes"], info["greyscale"]) == (44, 36, 16, 2, True)
    written = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(36, 44, 2)
    payload = int(result.disclosure.watermark_id, 16)
    assert np.array_equal(written, quantised(synthesize(picture, model, CPU, 8, payload), 65535))
    # the ICC profile goes in after IHDR while pypng writes the rows
    rich = tmp_path / "rich.png"
    Image.fromarray(photo(20, 16)).save(rich, icc_profile=icc)
    upscale_file(rich, tmp_path / "rich-x2.png", UpscaleOptions(model=str(model_path)))
    with Image.open(tmp_path / "rich-x2.png") as image:
        assert image.info.get("icc_profile") == icc and image.mode == "RGB"


def traced_peak(model, picture, folder) -> int:
    synthesize_into(LevelsCanvas(picture, 2, "png"), picture, model, CPU, 64, 1)  # warm
    tracemalloc.start()
    try:
        canvas = LevelsCanvas(picture, 2, "png")
        synthesize_into(canvas, picture, model, CPU, 64, 1)
        write_levels(canvas.levels(), folder / "out.png")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_working_set_is_a_few_strips_not_the_output(tmp_path, model):
    """numpy's allocations are traced (Pillow's image memory, the output itself, is not): four
    times the rows add less than their own float input (the mark's amplitude map is made at the
    input's resolution), and the whole stays under half a float copy of the output."""
    short, tall = (traced_peak(model, from_array(photo(rows, 160).astype(np.float32) / 255, "png", 8), tmp_path)
                   for rows in (300, 1200))
    added_input_float = (1200 - 300) * 160 * 3 * 4
    tall_output_float = 2400 * 320 * 3 * 4
    assert tall - short < added_input_float and tall < tall_output_float / 2


def test_the_editors_float_path_carries_a_mark_the_search_finds():
    """What the worker hands an editor (``synthesize``, float planes): the built-in model's
    output, quantised as an editor would save it, gives up its identifier to the detector."""
    model = prepare_model(UpscaleOptions(scale=2))
    picture = from_array(photo(200, 232).astype(np.float32) / 255, "png", 8)
    payload = watermark_payload(model, picture)
    result = synthesize(picture, model, CPU, 96, payload)
    found = watermark.detect(np.rint(result.color * 255).astype(np.uint8))
    assert found.found and found.payload == payload


@pytest.mark.parametrize(("channels", "depth", "suffix"), [(3, 8, "png"), (4, 16, "png"), (1, 8, "webp")])
def test_the_claims_thumbnail_is_made_from_the_pixels_in_memory(tmp_path, model_path, channels, depth, suffix):
    pixels = photo(300, 140, channels=4)[..., {1: [0], 3: [0, 1, 2], 4: [0, 1, 2, 3]}[channels]]
    source = tmp_path / f"in-{channels}-{depth}.png"
    if depth == 16:
        with open(source, "wb") as handle:
            deep = (pixels.astype(np.uint16) * 257).reshape(300, -1)
            png.Writer(140, 300, greyscale=False, alpha=True, bitdepth=16).write(handle, deep)
    else:
        Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(source)
    out = tmp_path / f"out.{suffix}"
    upscale_file(source, out, UpscaleOptions(model=str(model_path)))
    with c2pa.Reader(str(out)) as reader:
        active = reader.get_active_manifest()
        assert active["thumbnail"]["format"] == "image/jpeg"
        stream = io.BytesIO()
        reader.resource_to_stream(active["thumbnail"]["identifier"], stream)
    with Image.open(io.BytesIO(stream.getvalue())) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (239, 512)  # 280 x 600, long edge 512
        small = [np.asarray(image.convert("RGB").resize((28, 60), Image.BOX), np.float64)
                 for image in (thumb, Image.open(out))]
        assert np.abs(small[0] - small[1]).mean() < 4  # the same picture
