"""The cheap ways to rule a file in or out: the period a manifest's scale names, tried first, must
never stand between a laundered copy and the full search, nor make an unmarked file read as marked;
and the faster correlation surfaces must give the values the complex transform gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from avow_c2pa import pixels, watermark
from avow_c2pa.watermark import calibration, coding, detect, embed, measure, search
from test_watermark import PAYLOAD, SOURCE, _jpeg, _picture, _to8, _upscale, marked, output  # noqa: F401 (fixtures)


def test_a_true_hint_finds_the_mark_from_its_period_alone(marked, monkeypatch):  # noqa: F811
    """A signed output whose manifest names its scale: found, payload read, with no full search."""
    examined = []

    def full_search(*args):
        examined.append(args)
        return iter(())

    monkeypatch.setattr(search, "_examine", full_search)
    found = detect(_to8(marked), scale=2)
    assert found.found and found.payload == PAYLOAD
    assert found.false_positive_probability <= watermark.FOUND_FALSE_POSITIVE
    assert not examined


@pytest.mark.parametrize("scale", [2, 3, 7])
@pytest.mark.parametrize("attack", ["half size + JPEG q75", "x0.75", "input size + JPEG q75", "crop", "rot90 + JPEG"])
def test_a_laundered_copy_is_found_whatever_its_records_claim(marked, scale, attack):  # noqa: F811
    """The hint's period is wrong for a resized or turned copy (and any scale may be forged): the
    full search must still run and find it, as it does with no hint."""
    image = _to8(marked)
    height, width = image.shape[:2]

    def resized(size, resample=Image.BICUBIC):
        return np.asarray(Image.fromarray(image).resize(size, resample))

    laundered = {
        "half size + JPEG q75": lambda: _jpeg(resized((width // 2, height // 2)), 75),
        "x0.75": lambda: resized((width * 3 // 4, height * 3 // 4)),
        "input size + JPEG q75": lambda: _jpeg(resized(SOURCE, Image.LANCZOS), 75),
        "crop": lambda: image[57 : 57 + 300, 91 : 91 + 330],
        "rot90 + JPEG": lambda: _jpeg(np.ascontiguousarray(np.rot90(image)), 75),
    }[attack]()
    found = detect(laundered, scale=scale)
    assert found.found and found.payload == PAYLOAD


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_a_hint_never_makes_an_unmarked_picture_marked(output, scale):  # noqa: F811
    for image in (_to8(output), _jpeg(_to8(output), 75)):
        hinted, plain = detect(image, scale=scale), detect(image)
        assert not hinted.found and hinted.payload is None
        assert (hinted.score, hinted.false_positive_probability) == (plain.score, plain.false_positive_probability)


def test_the_hinted_period_is_charged_among_the_decoded_words():
    """Each decoded word may pass the keyed CRC by chance: the hinted one is counted with the rest."""
    words = calibration._CRC_FALSE_PASS * 2.0**coding._CRC_BITS
    assert words == calibration._CANDIDATES + 2 * len(calibration._NATIVE_SCALES) + 1 + 2  # hinted: centre, whole


def test_a_claimed_period_reads_a_large_output_from_its_centre_alone(monkeypatch, tmp_path):
    """verify's cheapest rule-in: a file as Avow wrote it (1024 x 768, x2, JPEG q90) reads its
    payload from the centre window alone, a third of the picture; that window is never the
    whole, and without it the whole picture still reads the payload."""
    source = _picture(384, 512, seed=4)
    path = tmp_path / "out.jpg"
    Image.fromarray(_to8(embed(_upscale(source, 2), PAYLOAD, source_size=(512, 384)))).save(path, quality=90)
    windows = []
    real = search._claimed_windows

    def only(which):
        def windows_(luma, qx, qy):
            every = list(real(luma, qx, qy))
            windows.append((luma.size, [w.size for w in every]))
            return iter(every[which])
        return windows_

    examined = []
    monkeypatch.setattr(search, "_examine", lambda *args: examined.append(args) or iter(()))
    for which in (slice(0, 1), slice(1, 2)):
        monkeypatch.setattr(search, "_claimed_windows", only(which))
        found = pixels.search_file(path, 2)
        assert found["found"] and found["identifier"] == f"{PAYLOAD:08x}"
    assert not examined  # the claim alone read it, both times
    whole, sizes = windows[0]
    assert len(sizes) == 2 and 2 * sizes[0] <= whole and sizes[1] == whole


def test_real_correlation_surfaces_equal_the_complex_transforms_real_part():
    layout = coding._layout(watermark.DEFAULT_KEY)
    rng = np.random.default_rng(0)
    for grid in (64, 128):
        unit = np.exp(2j * np.pi * rng.random((3, int(layout.pilot.sum())))).astype(np.complex64)
        planes = np.zeros((3, grid, grid), np.complex64)
        planes.reshape(3, -1)[:, (layout.ky[layout.pilot] % grid) * grid + layout.kx[layout.pilot] % grid] = unit
        expected = np.fft.ifft2(planes).real * grid * grid
        assert np.allclose(measure._correlation(unit, layout, grid), expected, atol=1e-3)


@pytest.mark.parametrize("scale", [2, 3, None])
def test_a_file_claiming_a_scale_is_searched_fully_unless_the_claim_reads_a_payload(marked, output, tmp_path, scale):  # noqa: F811
    """verify passes the manifest's scale to search_file, which decodes a JPEG as small as that
    period allows: a wrong claim, a laundered copy or an unmarked file must then get the full
    search on the usual decode, with the verdict it gets with no claim."""
    image = _to8(marked)
    height, width = image.shape[:2]
    files = {
        "output": image,
        "x0.75": np.asarray(Image.fromarray(image).resize((width * 3 // 4, height * 3 // 4), Image.BICUBIC)),
        "unmarked": _to8(output),
    }
    for name, pixels_ in files.items():
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(pixels_).save(path, quality=90)
        claimed, plain = pixels.search_file(path, scale), pixels.search_file(path)
        assert claimed["checked"] and claimed["found"] == (name != "unmarked")
        assert claimed["identifier"] == (None if name == "unmarked" else f"{PAYLOAD:08x}")
        if name == "unmarked" or scale != 2 or name != "output":
            assert claimed == plain  # the claim read nothing: the full search's own verdict


@pytest.mark.parametrize("period", [128.0, 102.4])  # lattice points on bins; half of them half a bin off
def test_the_scan_reads_a_period_between_bins_almost_as_the_exact_transform_does(period):
    """The scan reads each lattice point from the spectrum's bins. A period whose points fall
    half a bin off (256 / 102.4 = 2.5 bins a cycle: every odd one) read from the nearest bin
    alone scored about 0.66 of the exact transform's z (0.68 with this noise), and a resized
    small picture's true period sank among the noise; read between bins it keeps about 0.9."""
    layout = coding._layout(watermark.DEFAULT_KEY)
    side = 256
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    pilot = layout.pilot
    k = (layout.kx[pilot][:, None, None] * x + layout.ky[pilot][:, None, None] * y) / period
    pattern = np.real(layout.phase[pilot][:, None, None] * np.exp(2j * np.pi * k)).sum(axis=0)
    image = (np.random.default_rng(0).normal(0, 1, (side, side)) + 0.006 * pattern).astype(np.float32)
    centred = measure._centred(np.fft.rfft2(image), side, side)
    read = measure._pilot_surfaces(centred, image.shape, layout, np.array([period]))[0]
    exact = search._measure(image, layout, period, period, "scan").z
    assert exact > 10 and read >= 0.85 * exact
