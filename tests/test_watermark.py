"""Invisible watermark: round trips, absence, visibility, limits."""

import io

import numpy as np
import pytest
from PIL import Image

from pixmend import watermark
from pixmend.errors import PixmendError
from pixmend.metrics import psnr


def natural(h=512, w=512, seed=0, noise=0.03):
    """Smooth gradients, soft blobs and sensor-like noise: a stand-in for a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(6 * x + seed), 0.5 + 0.3 * np.cos(4 * y + 2 * x), 0.3 + 0.5 * x * y], -1)
    coarse = rng.random((h // 32 + 2, w // 32 + 2, 3))
    blobs = np.kron(coarse, np.ones((32, 32, 1)))[:h, :w]  # blocky, then smoothed below
    k = np.ones(31) / 31
    for axis in (0, 1):
        blobs = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), axis, blobs)
    img = 0.6 * img + 0.4 * blobs + rng.normal(0, noise, (h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


def png_round_trip(img):
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buf, format="PNG")
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).astype(np.float32) / 255


@pytest.fixture(scope="module")
def photo():
    return natural()


@pytest.mark.parametrize("text", ["pixmend", "", "x" * 32, "héllo ✓ 0.1"])
def test_round_trip_through_png(photo, text):
    marked = watermark.embed(photo, text)
    assert marked.dtype == np.float32 and marked.shape == photo.shape
    assert 0.0 <= marked.min() and marked.max() <= 1.0
    assert watermark.extract(marked) == text
    assert watermark.extract(png_round_trip(marked)) == text


def test_round_trip_on_varied_content():
    flat_white = np.ones((256, 320, 3), np.float32)
    half_white = natural(300, 400, seed=2)
    half_white[:, :250] = 1.0
    cases = [natural(256, 256, seed=1), natural(384, 640, seed=3, noise=0.1), flat_white, half_white]
    for img in cases:
        assert watermark.extract(png_round_trip(watermark.embed(img, "pixmend"))) == "pixmend"


def test_uint8_input_is_accepted(photo):
    marked8 = np.round(watermark.embed(photo, "u8") * 255).astype(np.uint8)
    assert watermark.extract(marked8) == "u8"


def test_unmarked_image_gives_none(photo):
    assert watermark.extract(photo) is None
    assert watermark.extract(png_round_trip(photo)) is None
    assert watermark.extract(np.full((256, 256, 3), 0.5, np.float32)) is None


def test_mark_is_invisible(photo):
    marked = watermark.embed(photo, "pixmend")
    assert psnr(photo, marked) > 35
    assert psnr(photo, png_round_trip(marked)) > 35


def test_stock_imwatermark_decoder_reads_our_marks(photo):
    from imwatermark import WatermarkDecoder

    bgr = np.round(watermark.embed(photo, "stock")[:, :, ::-1] * 255).astype(np.uint8)
    raw = WatermarkDecoder("bytes", watermark.PAYLOAD_BYTES * 8).decode(bgr, "dwtDctSvd")
    assert watermark._unpack(raw) == "stock"


def test_reads_raw_legacy_mark_with_known_length():
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", b"seed")
    # Stock dwtDct only round-trips reliably on flat content, hence the flat image.
    bgr = encoder.encode(np.full((256, 256, 3), 128, np.uint8), "dwtDct")
    assert watermark.extract(bgr[:, :, ::-1].copy(), length_bytes=4) == "seed"


def test_text_too_long():
    with pytest.raises(PixmendError, match=r"too long \(max 32 bytes\)"):
        watermark.embed(natural(256, 256), "é" * 17)  # 34 UTF-8 bytes


def test_too_small_image():
    small = natural(200, 600)
    with pytest.raises(PixmendError, match="256x256"):
        watermark.embed(small, "pixmend")
    assert watermark.extract(small) is None


def test_not_rgb():
    with pytest.raises(PixmendError):
        watermark.embed(np.zeros((300, 300)), "pixmend")


def test_python_api_verify(photo):
    import pixmend

    pil = Image.fromarray(np.round(photo * 255).astype(np.uint8))
    marked = Image.fromarray(np.round(watermark.embed(photo, "api ✓") * 255).astype(np.uint8))
    assert pixmend.verify(marked) == "api ✓"  # PIL in
    assert pixmend.verify(np.asarray(marked)) == "api ✓"  # uint8 array in
    assert pixmend.verify(pil) is None
