"""Image I/O shared by every pixmend task.

Everything inside pixmend works on float32 RGB in [0, 1] plus an optional float32
alpha plane.  This module is the only place that knows about file formats:

* ``read_image`` turns any file Pillow can open into a ``LoadedImage`` (upright,
  16-bit precision kept, ICC/EXIF remembered) or raises a one-line ``PixmendError``;
  it never lets a decoder exception escape and never writes to the input.
* ``write_image`` writes a result atomically (temp file + fsync + ``os.replace``),
  carrying the source's alpha, bit depth, ICC profile and EXIF where the format allows.
* ``collect_inputs`` / ``plan_outputs`` turn command-line paths into (input, output) pairs.

OpenCV is used only for 16-bit colour images, which Pillow reduces to 8 bits; it is
imported lazily so the rest works without it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import PixmendError, UsageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "LoadedImage",
    "read_image",
    "from_array_or_pil",
    "to_pil",
    "write_image",
    "collect_inputs",
    "plan_outputs",
]

DEFAULT_MAX_PIXELS = 100_000_000
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}

# A truncated file must be an error, never a silently grey-padded image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_ORIENTATION_TAG = 0x0112
_GRAY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}

# Output format by extension, and what each output format can carry.
_EXT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".gif": "GIF",
}
_FORMAT_EXT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "MPO": "JPEG"}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "GIF"}
_ICC_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}
_EXIF_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}
_16BIT_FORMATS = {"PNG", "TIFF"}
_GRAY_ALPHA_FORMATS = {"PNG", "TIFF"}  # OpenCV (16-bit) and Pillow's GIF cannot write gray+alpha
_JPEG_MAX_EXIF = 65_000  # one APP1 segment; Pillow refuses larger EXIF blocks

# TIFF layout tags that Pillow's getexif() returns for TIFF sources: they describe
# the source file's strips, not the picture, so they must not be copied to outputs.
_TIFF_LAYOUT_TAGS = {
    256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325,
    330, 338, 339, 347, 34675,
}


@dataclass
class LoadedImage:
    """A decoded image plus what is needed to write a faithful result back."""

    path: Path | None
    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1], upright
    alpha: np.ndarray | None  # float32 (H, W) in [0, 1] or None
    bit_depth: int  # 8 or 16
    format: str  # Pillow format name of the source ("PNG", "JPEG", ...)
    icc_profile: bytes | None
    exif: bytes | None  # Orientation removed: the pixels are already upright
    was_gray: bool
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), Pillow's order."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


# --------------------------------------------------------------------------- reading


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file, or raise a one-line PixmendError naming the file.

    The size is checked from the header before any pixels are decoded, so a
    decompression bomb costs nothing.  The file is opened read-only.
    """
    path = Path(path)
    name = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise PixmendError(f"{name}: no such file") from None
    except OSError as exc:
        raise PixmendError(f"{name}: cannot read ({_reason(exc)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise PixmendError(f"{name}: is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise PixmendError(f"{name}: not a regular file")
    if st.st_size == 0:
        raise PixmendError(f"{name}: empty file")
    try:
        with open(path, "rb") as fh:
            return _decode(fh, path, name, max_pixels)
    except PixmendError:
        raise
    except OSError as exc:  # open() itself failed (permissions, I/O error)
        raise PixmendError(f"{name}: cannot read ({_reason(exc)})") from None


def from_array_or_pil(obj: Any) -> LoadedImage:
    """Wrap a PIL image or a numpy array as a LoadedImage (Python API convenience).

    Arrays: (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4), channels last;
    uint8 and uint16 are scaled by their range, floats must already be in [0, 1].
    PIL images go through the same conversion as files (EXIF orientation applied).
    """
    if isinstance(obj, Image.Image):
        label = str(getattr(obj, "filename", "") or "image")
        try:
            return _from_pil(obj, path=None, name=label, max_pixels=None)
        except PixmendError:
            raise
        except Exception as exc:  # e.g. a lazily opened, truncated file
            raise PixmendError(f"{label}: cannot decode image ({_describe(exc)})") from None
    if not isinstance(obj, np.ndarray) and not hasattr(obj, "__array__"):
        raise PixmendError(f"image: expected a PIL image or a numpy array, got {type(obj).__name__}")
    arr = np.asarray(obj)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise PixmendError(
            f"image: expected an array shaped (H, W) or (H, W, C) with C in 1..4, got {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise PixmendError(f"image: empty array {arr.shape}")
    data, bit_depth = _array_to_float(arr, "image")
    channels = data.shape[2]
    was_gray = channels in (1, 2)
    color = data[:, :, :1] if was_gray else data[:, :, :3]
    rgb = np.repeat(color, 3, axis=2) if was_gray else color
    alpha = data[:, :, -1] if channels in (2, 4) else None
    return LoadedImage(
        path=None,
        rgb=np.ascontiguousarray(rgb, dtype=np.float32),
        alpha=None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32),
        bit_depth=bit_depth,
        format="PNG",
        icc_profile=None,
        exif=None,
        was_gray=was_gray,
        notes=[],
    )


def _decode(fh, path: Path, name: str, max_pixels: int) -> LoadedImage:
    """Open from an already opened file, turning every failure into PixmendError."""
    _allow_in_pillow(max_pixels)
    try:
        with warnings.catch_warnings():
            # We apply our own limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fh, formats=_readable_formats())
            return _from_pil(im, path=path, name=name, max_pixels=max_pixels, fh=fh)
    except PixmendError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's check fired first: same message as ours
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels; " if found else ""
        raise PixmendError(f"{name}: image too large ({size}the limit is {max_pixels:,})") from None
    except UnidentifiedImageError:
        raise PixmendError(f"{name}: not an image file (cannot identify image)") from None
    except MemoryError:
        raise PixmendError(f"{name}: not enough memory to decode the image") from None
    except Exception as exc:  # OSError, SyntaxError, ValueError, struct.error, zlib.error, EOFError...
        raise PixmendError(f"{name}: cannot decode image ({_describe(exc)})") from None


def _from_pil(im: Image.Image, path: Path | None, name: str, max_pixels: int | None, fh=None) -> LoadedImage:
    """Shared conversion from an opened (maybe not yet loaded) PIL image."""
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise PixmendError(
            f"{name}: image too large ({width}x{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,})"
        )
    fmt = _FORMAT_ALIASES.get(im.format or "", im.format or "PNG")
    notes: list[str] = []
    if _is_animated(im):
        what = "multi-page TIFF: only the first page" if fmt == "TIFF" else "animated image: only the first frame"
        notes.append(f"{what} was used")
        im.seek(0)

    try:
        im.load()
    except MemoryError:
        raise
    except Exception as exc:
        raise PixmendError(f"{name}: truncated or corrupt image data ({_describe(exc)})") from None

    icc = im.info.get("icc_profile") or None
    exif_bytes, orientation = _exif_and_orientation(im)

    wide = _decode_16bit_colour(im, fh, fmt, notes) if fh is not None else None
    if wide is not None:
        rgb, alpha, was_gray = wide
        bit_depth = 16
    else:
        rgb, alpha, bit_depth, was_gray = _pil_to_arrays(im, notes)
    if im.mode == "CMYK":
        notes.append("CMYK image converted to RGB without colour management")
        if icc is not None:
            icc = None  # a CMYK profile does not describe the RGB pixels we now hold
            notes.append("its CMYK ICC profile was dropped")

    rgb = _orient(rgb, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)
    return LoadedImage(
        path=path,
        rgb=np.ascontiguousarray(rgb, dtype=np.float32),
        alpha=None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32),
        bit_depth=bit_depth,
        format=fmt,
        icc_profile=icc,
        exif=exif_bytes,
        was_gray=was_gray,
        notes=notes,
    )


def _pil_to_arrays(im: Image.Image, notes: list[str]):
    """Pillow modes -> (rgb float32 HxWx3, alpha float32 HxW | None, bit_depth, was_gray)."""
    mode = im.mode
    if mode in _GRAY16_MODES:
        gray = np.array(im).astype(np.float32) / 65535.0
        return _gray_to_rgb(gray), None, 16, True
    if mode == "I":  # 32-bit integer gray: 16-bit data in practice
        raw = np.array(im)
        if raw.min() < 0 or raw.max() > 65535:
            notes.append("32-bit integer image clipped to the 16-bit range")
        gray = np.clip(raw, 0, 65535).astype(np.float32) / 65535.0
        return _gray_to_rgb(gray), None, 16, True
    if mode == "F":
        raw = np.nan_to_num(np.array(im, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        peak = float(raw.max()) if raw.size else 0.0
        scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0
        if scale != 1.0:
            notes.append(f"floating-point image scaled from [0, {scale:g}] to [0, 1]")
        return _gray_to_rgb(np.clip(raw / scale, 0.0, 1.0)), None, 16, True

    has_alpha = "A" in mode or "a" in mode or "transparency" in im.info
    if mode in ("1", "L", "LA", "La"):
        arr = np.array(im.convert("LA" if has_alpha else "L"))
        gray = (arr[:, :, 0] if has_alpha else arr).astype(np.float32) / 255.0
        alpha = arr[:, :, 1].astype(np.float32) / 255.0 if has_alpha else None
        return _gray_to_rgb(gray), alpha, 8, True
    arr = np.array(im.convert("RGBA" if has_alpha else "RGB"))
    rgb = arr[:, :, :3].astype(np.float32) / 255.0
    alpha = arr[:, :, 3].astype(np.float32) / 255.0 if has_alpha else None
    return rgb, alpha, 8, False


def _decode_16bit_colour(im: Image.Image, fh, fmt: str, notes: list[str]):
    """Re-decode 16-bit colour PNG/TIFF with OpenCV, since Pillow keeps only 8 bits.

    Returns (rgb, alpha, was_gray), or None when the file is not 16-bit colour or
    OpenCV cannot help (then Pillow's 8-bit decode stands and a note says so).
    """
    if im.mode in _GRAY16_MODES or im.mode in ("I", "F"):
        return None  # Pillow already kept the precision
    was_gray = im.mode in ("L", "LA", "La")
    if fmt == "PNG":
        fh.seek(24)
        depth, colour_type = fh.read(2)  # IHDR: Pillow has checked it is there
        wide = depth == 16
        was_gray = colour_type in (0, 4)  # Pillow reports 16-bit gray+alpha as RGBA
    elif fmt == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        bits = bits if isinstance(bits, tuple) else (bits,)
        wide = bool(bits) and all(b == 16 for b in bits)
    else:
        wide = False
    if not wide:
        return None
    try:
        import cv2
    except ImportError:
        notes.append("16-bit image read at 8-bit precision (install opencv-python to keep 16 bits)")
        return None
    fh.seek(0)
    arr = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.shape[:2] != (im.height, im.width):
        notes.append("16-bit image read at 8-bit precision (OpenCV could not decode it)")
        return None
    data = arr.astype(np.float32) / 65535.0
    if data.ndim == 2:
        data = data[:, :, None]
    channels = data.shape[2]
    if channels <= 2:
        alpha = data[:, :, 1] if channels == 2 else None
        return _gray_to_rgb(data[:, :, 0]), alpha, True
    rgb = data[:, :, 2::-1]  # OpenCV is BGR(A)
    return rgb, (data[:, :, 3] if channels == 4 else None), was_gray


def _is_animated(im: Image.Image) -> bool:
    """True for animations / multi-page files; damage in later frames is not our concern."""
    try:
        return bool(getattr(im, "is_animated", False))
    except Exception:
        return False


def _exif_and_orientation(im: Image.Image) -> tuple[bytes | None, int]:
    """EXIF to carry over (orientation removed) and the orientation to apply."""
    try:
        exif = im.getexif()
        orientation = exif.get(_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF must not make a good picture unreadable
        return None, 1
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    return _clean_exif(exif), orientation


def _clean_exif(exif: Image.Exif | bytes | None) -> bytes | None:
    """EXIF bytes without Orientation or TIFF layout tags; None when nothing is left."""
    if exif is None:
        return None
    try:
        if isinstance(exif, (bytes, bytearray)):
            parsed = Image.Exif()
            parsed.load(bytes(exif))
            exif = parsed
        for tag in [_ORIENTATION_TAG, *_TIFF_LAYOUT_TAGS]:
            exif.pop(tag, None)
        return exif.tobytes() if len(exif) else None
    except Exception:  # unparsable EXIF is dropped rather than copied blindly
        return None


# Pillow's transpose for each EXIF orientation, done on arrays so that the
# 16-bit OpenCV decode and the alpha plane follow the same rule.
_ORIENT_OPS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror left-right
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1],  # mirror top-bottom
    5: lambda a: np.swapaxes(a, 0, 1),  # transpose
    6: lambda a: np.rot90(a, k=-1),  # rotate 90 clockwise
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),  # transverse
    8: lambda a: np.rot90(a, k=1),  # rotate 90 counter-clockwise
}


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Make pixels upright, as PIL.ImageOps.exif_transpose would."""
    return _ORIENT_OPS.get(orientation, _ORIENT_OPS[1])(arr)


def _readable_formats() -> list[str]:
    """Every format Pillow can open except EPS, which would run Ghostscript."""
    Image.init()
    return [f for f in Image.ID if f != "EPS"]


def _allow_in_pillow(max_pixels: int) -> None:
    """Make sure Pillow's own bomb check is not stricter than ours.

    Pillow refuses images over 2 * MAX_IMAGE_PIXELS before we can look at the
    header; when the caller explicitly allows more, raise Pillow's limit to match.
    """
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = int(max_pixels)


# --------------------------------------------------------------------------- writing


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None) -> Image.Image:
    """8-bit RGB (or RGBA when alpha is given) PIL image for the Python API."""
    rgb8 = _quantize(_as_rgb(rgb, "image"), 255, np.uint8)
    if alpha is None:
        return Image.fromarray(rgb8)
    alpha8 = _quantize(_as_alpha(alpha, rgb8.shape[:2], "image"), 255, np.uint8)
    return Image.fromarray(np.dstack([rgb8, alpha8]))


def write_image(
    path: str | Path,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    like: LoadedImage | None = None,
    overwrite: bool = False,
    fmt: str | None = None,
    quality: int = 95,
) -> Path:
    """Encode and write atomically; return the path written.

    Format: ``fmt``, else the extension, else ``like.format``.  When ``fmt`` names
    another format than a known extension, the extension is changed to match and
    the returned path says so.  Alpha is kept for PNG/WebP/TIFF/GIF and dropped for
    JPEG/BMP.  16 bits are kept for PNG/TIFF when ``like.bit_depth == 16``.
    ICC and EXIF come from ``like``.  Gray sources whose result is still gray are
    written as gray.  Known limit: 16-bit TIFF is written without ICC/EXIF.
    """
    path = Path(path)
    fmt_name = _choose_format(path, fmt, like)
    if fmt is not None and path.suffix.lower() in _EXT_FORMATS and _EXT_FORMATS[path.suffix.lower()] != fmt_name:
        path = path.with_suffix(_FORMAT_EXT[fmt_name])
    name = str(path)

    if path.is_dir():
        raise PixmendError(f"{name}: is a folder")
    if path.exists() and not overwrite:
        raise PixmendError(f"{name}: exists (use --overwrite)")

    rgb = _as_rgb(rgb, name)
    if alpha is not None and fmt_name in _ALPHA_FORMATS:
        alpha = _as_alpha(alpha, rgb.shape[:2], name)
    else:
        alpha = None
    sixteen = like is not None and like.bit_depth == 16 and fmt_name in _16BIT_FORMATS
    maxval, dtype = (65535, np.uint16) if sixteen else (255, np.uint8)
    color = _quantize(rgb, maxval, dtype)
    # Gray stays gray, except gray+alpha where only Pillow's PNG/TIFF writers keep the alpha.
    gray_ok = alpha is None or (fmt_name in _GRAY_ALPHA_FORMATS and not sixteen)
    if like is not None and like.was_gray and gray_ok and _is_gray(color):
        color = color[:, :, 0]
    pixels = color if alpha is None else np.dstack([color, _quantize(alpha, maxval, dtype)])

    icc = like.icc_profile if like is not None and fmt_name in _ICC_FORMATS else None
    if icc is not None and _icc_colour_space(icc) != (b"GRAY" if color.ndim == 2 else b"RGB "):
        icc = None  # a profile for another colour space would mislabel the pixels
    exif = _clean_exif(like.exif) if like is not None and fmt_name in _EXIF_FORMATS else None
    if exif is not None and fmt_name == "JPEG" and len(exif) > _JPEG_MAX_EXIF:
        exif = None

    try:
        if sixteen:
            data = _encode_16bit(pixels, fmt_name, icc, exif, name)
        else:
            data = _encode_8bit(pixels, fmt_name, icc, exif, quality)
    except PixmendError:
        raise
    except Exception as exc:  # e.g. WebP's 16383-pixel limit, JPEG's 65500
        raise PixmendError(f"{name}: cannot encode as {fmt_name} ({_describe(exc)})") from None

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data, overwrite)
    except PixmendError:
        raise
    except OSError as exc:
        raise PixmendError(f"{name}: cannot write ({_reason(exc)})") from None
    return path


def _choose_format(path: Path, fmt: str | None, like: LoadedImage | None) -> str:
    """Decide the output format (see write_image)."""
    writable = sorted(_FORMAT_EXT)
    if fmt is not None:
        name = str(fmt).upper().lstrip(".")
        name = _FORMAT_ALIASES.get(name, name)
        if name not in _FORMAT_EXT:
            raise UsageError(f"{path}: cannot write format {fmt!r} (choose from {', '.join(writable)})")
        return name
    by_ext = _EXT_FORMATS.get(path.suffix.lower())
    if by_ext is not None:
        return by_ext
    if like is not None and like.format in _FORMAT_EXT:
        return like.format
    raise PixmendError(
        f"{path}: unknown image extension {path.suffix or '(none)'!r} (use .png, .jpg, .webp, .tif or .bmp)"
    )


def _encode_8bit(pixels: np.ndarray, fmt: str, icc: bytes | None, exif: bytes | None, quality: int) -> bytes:
    """Encode uint8 L/LA/RGB/RGBA pixels with Pillow."""
    im = Image.fromarray(np.ascontiguousarray(pixels))
    options: dict[str, Any] = {}
    if icc is not None:
        options["icc_profile"] = icc
    if exif is not None:
        options["exif"] = exif
    if fmt == "JPEG":
        # 4:4:4 at high quality: chroma subsampling would blur the colours we just fixed.
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        options.update(quality=quality, method=4)
    elif fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def _encode_16bit(pixels: np.ndarray, fmt: str, icc: bytes | None, exif: bytes | None, name: str) -> bytes:
    """Encode uint16 gray/RGB/RGBA with OpenCV; PNG gets iCCP/eXIf chunks added by hand."""
    try:
        import cv2
    except ImportError:
        raise PixmendError(
            f"{name}: writing 16-bit images needs OpenCV (pip install opencv-python-headless)"
        ) from None
    if pixels.ndim == 3:
        pixels = pixels[:, :, [2, 1, 0, 3][: pixels.shape[2]]]  # RGB(A) -> BGR(A)
    ext = ".png" if fmt == "PNG" else ".tiff"
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if fmt == "PNG" else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(pixels), params)
    if not ok:
        raise PixmendError(f"{name}: OpenCV could not encode a 16-bit {fmt}")
    data = buf.tobytes()
    if fmt == "PNG":
        chunks = []
        if icc is not None:
            chunks.append((b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
        if exif is not None:
            chunks.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
        data = _png_insert_chunks(data, chunks)
    return data


def _png_insert_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """Insert ancillary chunks right after IHDR (always the first chunk, 25 bytes)."""
    if not chunks:
        return png
    if png[12:16] != b"IHDR":
        raise ValueError("PNG without IHDR")
    cut = 8 + 25
    extra = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        for kind, body in chunks
    )
    return png[:cut] + extra + png[cut:]


def _atomic_write(path: Path, data: bytes, overwrite: bool) -> None:
    """Write via a hidden temp file in the same folder, fsync, then os.replace.

    Readers never see a half-written file, and any failure (including Ctrl-C)
    removes the temp file.
    """
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)  # mkstemp makes 0600 files; outputs should look normal
        if not overwrite and path.exists():  # appeared while we were encoding
            raise PixmendError(f"{path}: exists (use --overwrite)")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX only)
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- paths


def collect_inputs(inputs: list[str | Path]) -> tuple[list[Path], list[PixmendError]]:
    """Files as given; folders expanded (not recursively, sorted) to their images.

    Hidden files in folders (e.g. macOS "._x.jpg" or our own temp files) are
    skipped.  A path given twice is used once.  A path that does not exist, or a
    folder without images, is returned as a problem and skipped, so a batch can
    go on with the other inputs.  Returns (files, problems).
    """
    if not inputs:
        raise UsageError("no input images given")
    result: list[Path] = []
    problems: list[PixmendError] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            try:
                found = sorted(
                    p
                    for p in path.iterdir()
                    if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
                )
            except OSError as exc:
                problems.append(PixmendError(f"{item}: cannot list folder ({_reason(exc)})"))
                continue
            if not found:
                looked = ", ".join(sorted(IMAGE_EXTENSIONS))
                problems.append(PixmendError(f"{item}: no image files in folder (looked for {looked})"))
                continue
        elif path.exists():
            found = [path]
        else:
            problems.append(PixmendError(f"{item}: no such file or folder"))
            continue
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                result.append(p)
    return result, problems


def plan_outputs(inputs: list[Path], out: str | Path, single_file: bool) -> list[tuple[Path, Path]]:
    """Pair each input with its output path.

    single_file: ``out`` is the output file (or an existing folder / a path ending
    in a separator to put it in).  Otherwise ``out`` is a folder, created here, and
    outputs keep their input's file name.  Refuses name clashes and outputs that
    would replace their own input.
    """
    out_text = str(out)
    out = Path(out)
    inputs = [Path(p) for p in inputs]
    if single_file:
        if len(inputs) != 1:
            raise UsageError(f"expected exactly one input file, got {len(inputs)}")
        src = inputs[0]
        as_folder = out.is_dir() or out_text.endswith(("/", os.sep))
        pairs = [(src, out / src.name if as_folder else out)]
    else:
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: exists and is not a folder (several inputs need an output folder)")
        by_name: dict[str, Path] = {}
        for src in inputs:
            other = by_name.setdefault(src.name.casefold(), src)
            if other is not src:
                raise UsageError(
                    f"{out}: two inputs would both be written as '{src.name}' ({other} and {src}); "
                    "process them separately"
                )
        pairs = [(src, out / src.name) for src in inputs]
    for src, dst in pairs:
        if _same_file(src, dst):
            raise UsageError(f"{dst}: output would replace its input; choose another output")
    folder = pairs[0][1].parent if single_file else out
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PixmendError(f"{folder}: cannot create folder ({_reason(exc)})") from None
    return pairs


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


# --------------------------------------------------------------------------- helpers


def _array_to_float(arr: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Numeric array -> float32 in [0, 1] and the bit depth it implies."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32), 8
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0, 8
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0, 16
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 255:
            return arr.astype(np.float32) / 255.0, 8
        if lo >= 0 and hi <= 65535:
            return arr.astype(np.float32) / 65535.0, 16
        raise PixmendError(f"{name}: integer values must be in 0..65535 (got {lo}..{hi})")
    if np.issubdtype(arr.dtype, np.floating):
        data = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        lo, hi = float(data.min()), float(data.max())
        if lo < -0.01 or hi > 1.01:  # allow a model's tiny overshoot, refuse 0..255 floats
            raise PixmendError(f"{name}: float values must be in [0, 1] (got {lo:g}..{hi:g})")
        return np.clip(data, 0.0, 1.0), 8
    raise PixmendError(f"{name}: unsupported array type {arr.dtype}")


def _as_rgb(rgb: np.ndarray, name: str) -> np.ndarray:
    """Check pixels to write are (H, W, 3) (gray (H, W) accepted).

    Floats are passed through untouched: _quantize clips them, since a model's
    output may overshoot [0, 1] a little.  Integers are scaled by their range.
    """
    arr = np.asarray(rgb)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3) or 0 in arr.shape:
        raise PixmendError(f"{name}: expected RGB pixels shaped (H, W, 3), got {np.shape(rgb)}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = _array_to_float(arr, name)[0]
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def _as_alpha(alpha: np.ndarray, hw: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(alpha)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape != tuple(hw):
        raise PixmendError(f"{name}: alpha shaped {arr.shape} does not match the image {tuple(hw)}")
    return arr if np.issubdtype(arr.dtype, np.floating) else _array_to_float(arr, name)[0]


def _quantize(x: np.ndarray, maxval: int, dtype) -> np.ndarray:
    """Round floats in [0, 1] to integers; NaN -> 0, out of range -> clipped (one temporary)."""
    y = np.multiply(x, maxval, dtype=np.float32)
    np.nan_to_num(y, copy=False, nan=0.0)
    np.rint(y, out=y)
    np.clip(y, 0, maxval, out=y)
    return y.astype(dtype)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _is_gray(color: np.ndarray) -> bool:
    return bool(np.array_equal(color[:, :, 0], color[:, :, 1]) and np.array_equal(color[:, :, 0], color[:, :, 2]))


def _icc_colour_space(profile: bytes) -> bytes:
    """The ICC header's data colour space signature, e.g. b'RGB ' or b'GRAY'."""
    return bytes(profile[16:20]) if len(profile) >= 128 else b""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _describe(exc: BaseException) -> str:
    """A short reason for a decoder exception, never a traceback."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (OSError, SyntaxError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reason(exc: OSError) -> str:
    return exc.strerror or _one_line(exc)
