"""Tests for pixmend.io: every image is made here, in tmp_path."""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile, ImageOps

from pixmend.errors import PixmendError
from pixmend.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    LoadedImage,
    collect_inputs,
    from_array_or_pil,
    plan_outputs,
    read_image,
    to_pil,
    write_image,
)

RNG = np.random.default_rng(1234)


# --------------------------------------------------------------------------- helpers


def noise(h: int, w: int, c: int = 3, dtype=np.uint8) -> np.ndarray:
    hi = np.iinfo(dtype).max
    return RNG.integers(0, hi + 1, size=(h, w, c) if c else (h, w), dtype=dtype)


def pil_open(path: Path) -> Image.Image:
    """Open from memory so no file handle is left for the garbage collector."""
    return Image.open(io.BytesIO(Path(path).read_bytes()))


def save_pil(path: Path, arr_or_im, **kwargs) -> Path:
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    im.save(path, **kwargs)
    return path


def save_cv2(path: Path, rgb: np.ndarray) -> Path:
    """Write with OpenCV (the only easy way to make 16-bit colour files); rgb in RGB(A) order."""
    if rgb.ndim == 3:
        rgb = rgb[:, :, [2, 1, 0, 3][: rgb.shape[2]]]
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(rgb))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def read_cv2(path: Path) -> np.ndarray:
    arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3:
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    return arr


def as8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def as16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 65535), 0, 65535).astype(np.uint16)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_with_size(data: bytes, width: int, height: int) -> bytes:
    """Patch a real PNG's IHDR to claim another size, with a correct CRC."""
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:8] + png_chunk(b"IHDR", ihdr) + data[33:]


def png_chunk_types(data: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


def gradient16(h: int, w: int) -> np.ndarray:
    """uint16 RGB whose values are mostly not representable at 8 bits."""
    base = (np.arange(h * w * 3, dtype=np.uint64).reshape(h, w, 3) * 7919 + 13) % 65536
    return base.astype(np.uint16)


# --------------------------------------------------------------------------- round trips


def test_rgb_png_round_trip_is_exact(tmp_path):
    src = noise(13, 17)
    li = read_image(save_pil(tmp_path / "in.png", src))
    assert li.rgb.dtype == np.float32 and li.rgb.shape == (13, 17, 3)
    assert (li.rgb.min(), li.rgb.max()) >= (0.0, 0.0) and li.rgb.max() <= 1.0
    assert np.array_equal(as8(li.rgb), src)
    assert (li.alpha, li.bit_depth, li.format, li.was_gray, li.notes) == (None, 8, "PNG", False, [])
    assert li.path == tmp_path / "in.png"

    out = write_image(tmp_path / "out.png", li.rgb, li.alpha, like=li)
    assert out == tmp_path / "out.png"
    back = np.array(pil_open(out))
    assert back.shape == (13, 17, 3) and np.array_equal(back, src)


def test_rgba_png_alpha_is_kept_exactly(tmp_path):
    src = noise(9, 11, 4)
    src[0, 0, 3], src[0, 1, 3] = 0, 255
    li = read_image(save_pil(tmp_path / "in.png", src))
    assert li.alpha is not None and li.alpha.dtype == np.float32 and li.alpha.shape == (9, 11)
    assert np.array_equal(as8(li.alpha), src[:, :, 3])
    assert np.array_equal(as8(li.rgb), src[:, :, :3])

    out = write_image(tmp_path / "out.png", li.rgb, li.alpha, like=li)
    back = pil_open(out)
    assert back.mode == "RGBA" and np.array_equal(np.array(back), src)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_keeps_full_precision(tmp_path, channels):
    src = gradient16(10, 12)
    if channels == 4:
        src = np.dstack([src, gradient16(10, 12)[:, :, 1]])
    assert np.any(src % 257 != 0)  # not representable at 8 bits
    li = read_image(save_cv2(tmp_path / "in.png", src))
    assert li.bit_depth == 16 and not li.was_gray
    assert np.array_equal(as16(li.rgb), src[:, :, :3])  # RGB order, not BGR
    if channels == 4:
        assert np.array_equal(as16(li.alpha), src[:, :, 3])

    out = write_image(tmp_path / "out.png", li.rgb, li.alpha, like=li)
    back = read_cv2(out)
    assert back.dtype == np.uint16 and np.array_equal(back, src)


def test_16bit_colour_tiff_keeps_full_precision(tmp_path):
    src = gradient16(8, 6)
    li = read_image(save_cv2(tmp_path / "in.tiff", src))
    assert (li.bit_depth, li.format) == (16, "TIFF")
    assert np.array_equal(as16(li.rgb), src)
    out = write_image(tmp_path / "out.tif", li.rgb, like=li)
    assert np.array_equal(read_cv2(out), src)


def test_16bit_gray_png_round_trip(tmp_path):
    src = gradient16(7, 9)[:, :, 0]
    path = save_pil(tmp_path / "in.png", Image.fromarray(src))
    assert pil_open(path).mode.startswith("I")
    li = read_image(path)
    assert li.was_gray and li.bit_depth == 16
    assert np.array_equal(as16(li.rgb[:, :, 0]), src)
    assert np.array_equal(li.rgb[:, :, 0], li.rgb[:, :, 2])

    out = write_image(tmp_path / "out.png", li.rgb, like=li)
    back = read_cv2(out)
    assert back.dtype == np.uint16 and back.ndim == 2  # still gray, still 16 bits
    assert np.array_equal(back, src)


def test_16bit_gray_alpha_png_is_gray(tmp_path):
    h, w = 5, 7
    la = ((np.arange(h * w * 2).reshape(h, w, 2) * 1000 + 3) % 65536).astype(">u2")
    rows = np.zeros((h, 1 + w * 4), np.uint8)
    rows[:, 1:] = la.view(np.uint8).reshape(h, -1)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows.tobytes()))
    path = tmp_path / "la16.png"
    path.write_bytes(data + png_chunk(b"IEND", b""))
    li = read_image(path)
    assert li.was_gray and li.bit_depth == 16
    assert np.array_equal(as16(li.rgb[:, :, 0]), la[:, :, 0].astype(np.uint16))
    assert np.array_equal(as16(li.alpha), la[:, :, 1].astype(np.uint16))
    out = write_image(tmp_path / "out.png", li.rgb, li.alpha, like=li)
    back = read_cv2(out)  # OpenCV cannot write gray+alpha: RGBA, values intact
    assert np.array_equal(back[:, :, 0], la[:, :, 0]) and np.array_equal(back[:, :, 3], la[:, :, 1])


def test_8bit_image_like_16bit_source_as_jpeg_is_8bit(tmp_path):
    li = read_image(save_cv2(tmp_path / "in.png", gradient16(6, 6)))
    out = write_image(tmp_path / "out.jpg", li.rgb, like=li)
    assert pil_open(out).format == "JPEG"


# --------------------------------------------------------------------------- orientation, ICC, EXIF


def test_exif_orientation_6_reads_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    src = np.zeros((20, 40, 3), np.uint8)
    src[:, :20] = (255, 0, 0)  # left half red, right half blue (stored orientation)
    src[:, 20:] = (0, 0, 255)
    path = save_pil(tmp_path / "rot.jpg", src, exif=exif.tobytes(), quality=95)
    li = read_image(path)
    assert li.rgb.shape == (40, 20, 3)  # rotated 90 degrees clockwise: height and width swap
    top, bottom = as8(li.rgb[2, 10]), as8(li.rgb[-3, 10])
    assert top[0] > 200 and top[2] < 60  # red ends up on top
    assert bottom[2] > 200 and bottom[0] < 60

    kept = Image.Exif()
    kept.load(li.exif)
    assert 0x0112 not in kept and kept[0x010F] == "TestCam"

    out = write_image(tmp_path / "out.jpg", li.rgb, like=li)
    written = pil_open(out)
    assert written.size == (20, 40)
    assert written.getexif().get(0x0112, 1) == 1 and written.getexif()[0x010F] == "TestCam"


def test_tiff_layout_tags_are_not_carried_as_exif(tmp_path):
    path = save_pil(tmp_path / "in.tif", noise(6, 7), tiffinfo={271: "ScanCo", 274: 3})
    li = read_image(path)
    assert li.rgb.shape == (6, 7, 3)
    kept = Image.Exif()
    kept.load(li.exif)
    assert kept[271] == "ScanCo"
    assert not {256, 257, 273, 274, 279} & set(kept)
    out = write_image(tmp_path / "out.jpg", li.rgb, like=li)
    assert pil_open(out).getexif()[271] == "ScanCo"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    src = noise(5, 8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save_pil(tmp_path / "o.png", src, exif=exif.tobytes())
    expected = np.array(ImageOps.exif_transpose(pil_open(path)).convert("RGB"))
    assert np.array_equal(as8(read_image(path).rgb), expected)


def test_orientation_applies_to_16bit_and_alpha(tmp_path):
    src = np.dstack([gradient16(4, 6), gradient16(4, 6)[:, :, 0]])
    path = save_cv2(tmp_path / "o16.png", src)
    exif = Image.Exif()
    exif[0x0112] = 8
    body = exif.tobytes()[6:]  # eXIf holds the TIFF structure without the "Exif\0\0" prefix
    data = path.read_bytes()
    path.write_bytes(data[:33] + png_chunk(b"eXIf", body) + data[33:])
    li = read_image(path)
    assert li.bit_depth == 16 and li.rgb.shape == (6, 4, 3)
    assert np.array_equal(as16(li.rgb), np.rot90(src[:, :, :3], 1))
    assert np.array_equal(as16(li.alpha), np.rot90(src[:, :, 3], 1))


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_survives_8bit_read_write(tmp_path, ext):
    icc = srgb_icc()
    path = save_pil(tmp_path / f"in{ext}", noise(16, 16), icc_profile=icc)
    li = read_image(path)
    assert li.icc_profile == icc
    out = write_image(tmp_path / f"out{ext}", li.rgb, like=li)
    assert pil_open(out).info.get("icc_profile") == icc


def test_icc_profile_and_exif_survive_16bit_png(tmp_path):
    icc = srgb_icc()
    src = gradient16(6, 5)
    path = save_cv2(tmp_path / "in.png", src)
    exif = Image.Exif()
    exif[0x010F] = "Cam16"
    data = path.read_bytes()
    extra = png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc)) + png_chunk(b"eXIf", exif.tobytes()[6:])
    path.write_bytes(data[:33] + extra + data[33:])
    li = read_image(path)
    assert li.icc_profile == icc and li.bit_depth == 16

    out = write_image(tmp_path / "out.png", li.rgb, like=li)
    data = out.read_bytes()
    assert png_chunk_types(data)[:3] == [b"IHDR", b"iCCP", b"eXIf"]
    written = pil_open(out)
    assert written.info["icc_profile"] == icc
    assert written.getexif()[0x010F] == "Cam16"
    assert np.array_equal(read_cv2(out), src)  # chunk insertion left the pixels intact


def test_gray_result_keeps_gray_icc_but_colour_result_drops_it(tmp_path):
    gray_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # not RGB
    li = read_image(save_pil(tmp_path / "in.png", noise(8, 8), icc_profile=srgb_icc()))
    li.icc_profile = gray_icc
    out = write_image(tmp_path / "out.png", li.rgb, like=li)
    assert "icc_profile" not in pil_open(out).info  # would mislabel RGB pixels


# --------------------------------------------------------------------------- modes


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(path, quality=95)
    li = read_image(path)
    assert li.rgb.shape == (8, 16, 3) and li.alpha is None and not li.was_gray
    r, g, b = as8(li.rgb[4, 8]).astype(int)
    assert r > 220 and g < 40 and b < 40
    assert any("CMYK" in note for note in li.notes)


def test_palette_png_with_transparency(tmp_path):
    im = Image.new("P", (6, 4), 1)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 2)
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)
    li = read_image(path)
    assert li.alpha is not None
    assert li.alpha[0, 0] == 0.0 and np.all(np.delete(li.alpha.ravel(), 0) == 1.0)
    assert np.array_equal(as8(li.rgb[0, 1]), [0, 255, 0]) and np.array_equal(as8(li.rgb[1, 1]), [255, 0, 0])


def test_palette_png_without_transparency_has_no_alpha(tmp_path):
    im = Image.fromarray(noise(6, 6)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    li = read_image(save_pil(tmp_path / "pal.png", im))
    assert li.alpha is None
    assert np.array_equal(as8(li.rgb), np.array(im.convert("RGB")))


def test_la_png(tmp_path):
    src = noise(5, 6, 2)
    li = read_image(save_pil(tmp_path / "la.png", Image.fromarray(src)))
    assert li.was_gray and li.bit_depth == 8
    assert np.array_equal(as8(li.rgb[:, :, 1]), src[:, :, 0])
    assert np.array_equal(as8(li.alpha), src[:, :, 1])
    out = write_image(tmp_path / "out.png", li.rgb, li.alpha, like=li)
    back = pil_open(out)
    assert back.mode == "LA" and np.array_equal(np.array(back), src)


@pytest.mark.parametrize("mode", ["1", "L"])
def test_bilevel_and_gray(tmp_path, mode):
    im = Image.fromarray(noise(6, 9, 0)).convert(mode)
    li = read_image(save_pil(tmp_path / "g.png", im))
    assert li.was_gray and li.alpha is None
    assert np.array_equal(as8(li.rgb[:, :, 0]), np.array(im.convert("L")))


def test_float_tiff(tmp_path):
    src = RNG.random((4, 5), dtype=np.float32)
    li = read_image(save_pil(tmp_path / "f.tif", Image.fromarray(src)))
    assert li.was_gray and li.bit_depth == 16
    assert np.allclose(li.rgb[:, :, 0], src)


def test_animated_gif_uses_first_frame_with_note(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    li = read_image(path)
    assert li.format == "GIF"
    assert np.array_equal(as8(li.rgb[0, 0]), [255, 0, 0])
    assert li.notes == ["animated image: only the first frame was used"]


def test_animated_webp_uses_first_frame_with_note(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(0, 0, 255), (255, 0, 0)]]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    li = read_image(path)
    assert np.array_equal(as8(li.rgb[0, 0]), [0, 0, 255]) and li.notes


@pytest.mark.parametrize("ext", sorted(IMAGE_EXTENSIONS))
def test_every_listed_extension_reads(tmp_path, ext):
    src = np.zeros((6, 6, 3), np.uint8)
    src[:, :3] = (200, 30, 30)
    path = save_pil(tmp_path / f"x{ext}", src)
    li = read_image(path)
    assert li.format == pil_open(path).format
    assert np.array_equal(as8(li.rgb), np.array(pil_open(path).convert("RGB")))


# --------------------------------------------------------------------------- refusals


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


BAD_FILES = {
    "empty.png": (lambda: b"", "empty file"),
    "notes.png": (lambda: b"shopping list: eggs, milk\n" * 20, "not an image file (cannot identify image)"),
    "cut.png": (lambda: _png_bytes(noise(64, 64))[:6000], "truncated"),
    "cut.jpg": (lambda: _jpeg_bytes(noise(64, 64))[:3000], "truncated"),
    "huge.png": (lambda: png_with_size(_png_bytes(noise(4, 4)), 60000, 60000), "too large"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_refused_with_one_line_naming_the_file(tmp_path, name):
    make, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(PixmendError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "\n" not in message
    assert info.value.__cause__ is None  # no chained decoder traceback


def test_oversized_header_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(_png_bytes(noise(40, 50)))
    loaded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(1))
    with pytest.raises(PixmendError, match=r"big\.png: image too large \(50x40 = 2,000 pixels; the limit is 1,999\)"):
        read_image(path, max_pixels=1999)
    assert loaded == []
    assert DEFAULT_MAX_PIXELS == 100_000_000


def test_pillow_bomb_check_gives_our_message(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_size(_png_bytes(noise(4, 4)), 60000, 60000))
    with pytest.raises(PixmendError) as info:
        read_image(path)
    assert str(info.value) == f"{path}: image too large (3,600,000,000 pixels; the limit is 100,000,000)"


@pytest.mark.parametrize(
    "exc", [struct.error("unpack requires a buffer"), zlib.error("bad"), ValueError("x"), EOFError(), MemoryError()]
)
def test_no_raw_exception_escapes(tmp_path, monkeypatch, exc):
    import pixmend.io as pio

    def explode(*args, **kwargs):
        raise exc

    monkeypatch.setattr(pio, "_pil_to_arrays", explode)
    path = save_pil(tmp_path / "ok.png", noise(4, 4))
    with pytest.raises(PixmendError) as info:
        read_image(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_corrupt_header_fields_are_refused(tmp_path):
    data = bytearray(save_pil(tmp_path / "ok.bmp", noise(4, 4)).read_bytes())
    data[30:34] = struct.pack("<I", 117)  # unknown BMP compression
    path = tmp_path / "bad.bmp"
    path.write_bytes(bytes(data))
    with pytest.raises(PixmendError, match=r"bad\.bmp: cannot decode image \(Unsupported BMP compression"):
        read_image(path)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(PixmendError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(PixmendError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions as non-root")
def test_unreadable_file_is_refused(tmp_path):
    path = save_pil(tmp_path / "locked.png", noise(4, 4))
    path.chmod(0)
    try:
        with pytest.raises(PixmendError, match="locked.png: cannot read"):
            read_image(path)
    finally:
        path.chmod(0o644)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=2000), flips=st.lists(st.integers(0, 1999), max_size=4))
def test_damaged_files_raise_only_pixmend_errors(tmp_path, cut, flips):
    data = bytearray(_png_bytes(noise(16, 16)) if cut % 2 else _jpeg_bytes(noise(16, 16)))
    for pos in flips:
        data[pos % len(data)] ^= 0x5A
    path = tmp_path / "damaged.img"
    path.write_bytes(bytes(data[: max(1, len(data) - cut)]))
    try:
        li = read_image(path)
    except PixmendError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
    else:
        assert li.rgb.dtype == np.float32 and li.rgb.ndim == 3


def test_reading_never_modifies_the_input(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save_pil(tmp_path / "in.jpg", noise(10, 12), exif=exif.tobytes(), icc_profile=srgb_icc())
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    read_image(path)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jpg"]


# --------------------------------------------------------------------------- writing


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path):
    rgb = noise(5, 5) / 255.0
    out = write_image(tmp_path / "sub" / "dir" / "out.png", rgb)  # parents created
    assert [p.name for p in out.parent.iterdir()] == ["out.png"]  # no temp files left
    if os.name == "posix":
        assert stat.S_IMODE(out.stat().st_mode) != 0o600  # not mkstemp's private mode

    before = out.read_bytes()
    with pytest.raises(PixmendError, match=r"out\.png: exists \(use --overwrite\)"):
        write_image(out, np.zeros((5, 5, 3)))
    assert out.read_bytes() == before

    write_image(out, np.zeros((5, 5, 3)), overwrite=True)
    assert np.array_equal(np.array(pil_open(out)), np.zeros((5, 5, 3), np.uint8))
    assert [p.name for p in out.parent.iterdir()] == ["out.png"]


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, exc):
    def broken_replace(src, dst):
        raise exc

    monkeypatch.setattr(os, "replace", broken_replace)
    expected = PixmendError if isinstance(exc, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        write_image(tmp_path / "out.png", np.zeros((4, 4, 3)))
    if expected is PixmendError:
        assert str(info.value) == f"{tmp_path / 'out.png'}: cannot write (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_format_selection(tmp_path):
    rgb, alpha = noise(6, 6) / 255.0, np.linspace(0, 1, 36).reshape(6, 6)
    li = from_array_or_pil(noise(6, 6))
    li.format = "WEBP"
    # fmt wins and fixes the extension
    out = write_image(tmp_path / "a.png", rgb, fmt="jpg")
    assert out == tmp_path / "a.jpg" and pil_open(out).format == "JPEG"
    assert not (tmp_path / "a.png").exists()
    # the extension decides when there is no fmt
    assert pil_open(write_image(tmp_path / "b.tiff", rgb, like=li)).format == "TIFF"
    # an unknown extension falls back on the source's format
    assert pil_open(write_image(tmp_path / "c.out", rgb, like=li)).format == "WEBP"
    with pytest.raises(PixmendError, match="unknown image extension"):
        write_image(tmp_path / "d.xyz", rgb)
    with pytest.raises(PixmendError, match="cannot write format"):
        write_image(tmp_path / "e.png", rgb, fmt="PSD")
    # alpha where the format has it, dropped (not composited) where it does not
    assert pil_open(write_image(tmp_path / "f.webp", rgb, alpha)).mode == "RGBA"
    jpg = pil_open(write_image(tmp_path / "g.jpg", rgb, alpha))
    assert jpg.mode == "RGB"
    assert pil_open(write_image(tmp_path / "h.bmp", rgb, alpha)).mode == "RGB"


def test_write_rounding_and_clipping(tmp_path):
    rgb = np.array([[[-0.5, 0.6 / 255, 1.7], [np.nan, 0.998, 0.49 / 255]]], np.float64)
    original = rgb.copy()
    out = write_image(tmp_path / "ok.png", rgb)
    assert np.array(pil_open(out)).tolist() == [[[0, 1, 255], [0, 254, 0]]]
    assert np.array_equal(rgb, original, equal_nan=True)  # the caller's array is untouched
    assert np.array(pil_open(write_image(tmp_path / "u16.png", np.full((2, 2, 3), 65535, np.uint16)))).min() == 255


def test_gif_output_keeps_binary_transparency(tmp_path):
    rgb = np.zeros((4, 4, 3))
    rgb[:, :, 0] = 1.0
    alpha = np.ones((4, 4))
    alpha[0, 0] = 0.0
    li = read_image(write_image(tmp_path / "x.gif", rgb, alpha))
    assert np.array_equal(li.alpha, alpha) and np.array_equal(li.rgb[1, 1], [1.0, 0.0, 0.0])


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp", ".gif"])
def test_gray_alpha_keeps_alpha_in_every_alpha_format(tmp_path, ext):
    src = noise(5, 6, 2)
    src[:, :, 1] = np.where(src[:, :, 1] > 127, 255, 0)  # GIF only has on/off transparency
    li = from_array_or_pil(src)
    back = read_image(write_image(tmp_path / f"x{ext}", li.rgb, li.alpha, like=li))
    assert np.array_equal(as8(back.alpha), src[:, :, 1])


def test_gray_source_with_colour_result_is_written_rgb(tmp_path):
    li = read_image(save_pil(tmp_path / "g.png", noise(4, 4, 0)))
    tinted = li.rgb.copy()
    tinted[:, :, 0] = 1.0
    assert pil_open(write_image(tmp_path / "c.png", tinted, like=li)).mode == "RGB"
    assert pil_open(write_image(tmp_path / "g2.png", li.rgb, like=li)).mode == "L"


def test_write_rejects_bad_shapes(tmp_path):
    with pytest.raises(PixmendError, match=r"expected RGB pixels shaped \(H, W, 3\)"):
        write_image(tmp_path / "x.png", np.zeros((3, 4, 4, 5)))
    with pytest.raises(PixmendError, match="alpha shaped"):
        write_image(tmp_path / "x.png", np.zeros((3, 4, 3)), alpha=np.zeros((4, 3)))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- API conversions


def test_from_array_or_pil_uint8_uint16_float_gray():
    u8 = noise(3, 4)
    li = from_array_or_pil(u8)
    assert isinstance(li, LoadedImage) and li.bit_depth == 8 and li.path is None
    assert np.array_equal(as8(li.rgb), u8) and li.alpha is None and not li.was_gray

    u16 = gradient16(3, 4)
    li = from_array_or_pil(u16)
    assert li.bit_depth == 16 and np.array_equal(as16(li.rgb), u16)

    f = RNG.random((3, 4, 4), dtype=np.float32)
    li = from_array_or_pil(f)
    assert np.array_equal(li.rgb, f[:, :, :3]) and np.array_equal(li.alpha, f[:, :, 3])

    g = noise(3, 4, 0)
    li = from_array_or_pil(g)
    assert li.was_gray and li.rgb.shape == (3, 4, 3) and np.array_equal(as8(li.rgb[:, :, 2]), g)


def test_from_array_or_pil_pil_images():
    src = noise(5, 4, 4)
    li = from_array_or_pil(Image.fromarray(src))
    assert np.array_equal(as8(li.rgb), src[:, :, :3]) and np.array_equal(as8(li.alpha), src[:, :, 3])
    li = from_array_or_pil(Image.fromarray(gradient16(5, 4)[:, :, 0]))
    assert li.bit_depth == 16 and li.was_gray


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 4, 5)), "expected an array shaped"),
        (np.zeros((0, 4, 3)), "empty array"),
        (np.full((2, 2, 3), 255.0), r"float values must be in \[0, 1\]"),
        (np.full((2, 2), 70000, np.int64), "integer values must be in"),
        ("photo.png", "expected a PIL image or a numpy array"),
    ],
)
def test_from_array_or_pil_refuses_bad_input(bad, match):
    with pytest.raises(PixmendError, match=match):
        from_array_or_pil(bad)


def test_to_pil():
    rgb = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    im = to_pil(rgb)
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (0, 128, 255)
    im = to_pil(rgb, np.array([[0.25]]))
    assert im.mode == "RGBA" and im.getpixel((0, 0)) == (0, 128, 255, 64)


# --------------------------------------------------------------------------- inputs and outputs


def test_collect_inputs(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for name in ["b.JPG", "a.png", "c.webp", "notes.txt", ".hidden.png", "nested/d.png"]:
        (folder / name).write_bytes(b"x")
    loose = tmp_path / "scan.dat"
    loose.write_bytes(b"x")
    got, problems = collect_inputs([str(loose), folder, folder / "a.png"])
    assert got == [loose, folder / "a.png", folder / "b.JPG", folder / "c.webp"]  # a.png only once
    assert problems == []

    # bad paths are reported, and the good ones still come back
    (folder / "nested" / "d.png").unlink()
    got, problems = collect_inputs([tmp_path / "missing.png", folder / "a.png", folder / "nested"])
    assert got == [folder / "a.png"]
    assert [str(e) for e in problems] == [
        f"{tmp_path / 'missing.png'}: no such file or folder",
        f"{folder / 'nested'}: no image files in folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"]
    with pytest.raises(PixmendError, match="no input images"):
        collect_inputs([])


def test_plan_outputs_single_file(tmp_path):
    src = tmp_path / "in" / "cat.png"
    src.parent.mkdir()
    src.write_bytes(b"x")
    assert plan_outputs([src], tmp_path / "result.jpg", single_file=True) == [(src, tmp_path / "result.jpg")]
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    assert plan_outputs([src], outdir, single_file=True) == [(src, outdir / "cat.png")]
    new_dir = str(tmp_path / "fresh") + os.sep
    assert plan_outputs([src], new_dir, single_file=True) == [(src, tmp_path / "fresh" / "cat.png")]
    with pytest.raises(PixmendError, match="replace its input"):
        plan_outputs([src], src.parent, single_file=True)


def test_plan_outputs_folder(tmp_path):
    a, b = tmp_path / "x" / "one.png", tmp_path / "y" / "two.jpg"
    out = tmp_path / "out" / "deeper"
    assert plan_outputs([a, b], out, single_file=False) == [(a, out / "one.png"), (b, out / "two.jpg")]
    assert out.is_dir()

    clash = tmp_path / "y" / "one.png"
    with pytest.raises(PixmendError, match="one.png"):
        plan_outputs([a, clash], out, single_file=False)

    a.parent.mkdir()
    a.write_bytes(b"x")
    with pytest.raises(PixmendError, match="replace its input"):
        plan_outputs([a], a.parent, single_file=False)

    afile = tmp_path / "file.png"
    afile.write_bytes(b"x")
    with pytest.raises(PixmendError, match="not a folder"):
        plan_outputs([a, b], afile, single_file=False)
