"""QR images: PNG and SVG out with segno, QR codes read from images with zxing-cpp.

A ``CL1:`` text uses only the QR alphanumeric character set (Base45's alphabet plus
``CL1:``), so it is encoded in alphanumeric mode: 5.5 bits per character instead of 8
in byte mode. Error correction defaults to level Q (25 % of the code can be damaged),
which keeps a code readable from a scuffed printout or a glare-streaked phone screen.

Reading accepts PNG, JPEG, GIF, BMP and WebP images, capped in file size and in pixels
before any pixel is decoded (the pixel count comes from the image header), and returns
the texts of the QR codes zxing-cpp finds. Decoding costs a few bytes per pixel, so the
pixel cap bounds memory: a larger photo must be scaled down first.
"""

from __future__ import annotations

import io
import os
import warnings

import segno
import zxingcpp
from PIL import Image

from ledger.errors import MalformedError, TooLargeError
from ledger.files import read_capped

__all__ = [
    "DEFAULT_ERROR",
    "IMAGE_FORMATS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "make_qr",
    "read_qr_codes",
    "read_qr_file",
    "render_png",
    "render_svg",
]

#: Default error correction level.
DEFAULT_ERROR = "q"
#: Cap on the size of an image file to scan.
MAX_IMAGE_BYTES = 16 * 1024 * 1024
#: Cap on an image's pixel count, read from its header before decoding: 4096 x 4096
#: (a 12-megapixel phone photo fits; scale larger ones down).
MAX_IMAGE_PIXELS = 4096 * 4096
#: The image formats read (Pillow opens many more, some through outside programs).
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
_LEVELS = frozenset("lmqh")


def make_qr(text: str, *, error: str = DEFAULT_ERROR) -> segno.QRCode:
    """The QR code of ``text`` at error level ``error`` (l, m, q or h), smallest version.

    Text made only of QR alphanumeric characters (every ``CL1:`` text) is encoded in
    alphanumeric mode. TooLargeError if the text does not fit in a QR code.
    """
    if not isinstance(text, str) or not text:
        raise MalformedError("QR text must be a non-empty string")
    level = error.lower() if isinstance(error, str) else ""
    if level not in _LEVELS:
        raise MalformedError(f"QR error correction level must be one of L, M, Q, H, not {error!r}")
    mode = "alphanumeric" if set(text) <= _ALPHANUMERIC else None
    try:
        return segno.make(text, error=level, mode=mode, micro=False, boost_error=False)
    except segno.DataOverflowError:
        raise TooLargeError(
            f"{len(text)} characters do not fit in a QR code at error correction level {level.upper()}"
        ) from None


def render_png(text: str, *, error: str = DEFAULT_ERROR, scale: int = 8, border: int = 4) -> bytes:
    """A black-on-white PNG of the QR code of ``text``; ``scale`` pixels per module."""
    _check_geometry(scale, border)
    out = io.BytesIO()
    make_qr(text, error=error).save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


def render_svg(text: str, *, error: str = DEFAULT_ERROR, scale: int = 8, border: int = 4) -> bytes:
    """An SVG of the QR code of ``text`` (UTF-8 bytes)."""
    _check_geometry(scale, border)
    out = io.BytesIO()
    make_qr(text, error=error).save(out, kind="svg", scale=scale, border=border, title="certledger QR code")
    return out.getvalue()


def _check_geometry(scale: int, border: int) -> None:
    if type(scale) is not int or not 1 <= scale <= 100:
        raise MalformedError("QR scale must be 1 to 100 pixels per module")
    if type(border) is not int or not 0 <= border <= 100:
        raise MalformedError("QR border must be 0 to 100 modules")


def _open(data: bytes) -> Image.Image:
    if len(data) > MAX_IMAGE_BYTES:
        raise TooLargeError(f"image: {len(data)} bytes is over the {MAX_IMAGE_BYTES}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own cap is lower
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
    except Image.DecompressionBombError:
        raise TooLargeError(f"image: over the {MAX_IMAGE_PIXELS}-pixel limit") from None
    except Exception as e:  # Pillow raises many types for unreadable files
        raise MalformedError(f"image: not an image this reader understands ({type(e).__name__})") from None
    _check_pixels(img)
    return img


def _check_pixels(img: Image.Image) -> None:
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise TooLargeError(
            f"image: {w}x{h} pixels is over the {MAX_IMAGE_PIXELS}-pixel limit; scale it down first"
        )


def _grey(img: Image.Image) -> Image.Image:
    try:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            grey, alpha = img.convert("LA").split()  # two bytes a pixel, not four
            out = Image.new("L", img.size, 255)  # transparent parts are white
            out.paste(grey, mask=alpha)
            return out
        return img.convert("L")
    except Exception as e:  # truncated or corrupt pixel data
        raise MalformedError(f"image: cannot decode its pixels ({type(e).__name__})") from None


def read_qr_codes(image: bytes | Image.Image) -> list[str]:
    """The texts of every QR code found in ``image`` (encoded bytes or a Pillow image).

    Returns an empty list when there is none. Raises MalformedError or TooLargeError
    for data that is not a readable image or is too large.
    """
    if isinstance(image, bytes | bytearray | memoryview):
        img = _open(bytes(image))
    elif isinstance(image, Image.Image):
        img = image
        _check_pixels(img)
    else:
        raise MalformedError(f"image: expected image bytes or a Pillow image, not {type(image).__name__}")
    grey = _grey(img)
    try:
        found = zxingcpp.read_barcodes(grey, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    except Exception as e:  # a reader failure is reported, never raised raw
        raise MalformedError(f"image: the QR reader failed ({type(e).__name__}: {e})") from None
    return [b.text for b in found if b.valid]


def read_qr_file(path: str | os.PathLike[str]) -> list[str]:
    """:func:`read_qr_codes` of an image file (at most :data:`MAX_IMAGE_BYTES`)."""
    data = read_capped(path, limit=MAX_IMAGE_BYTES, what="image")
    try:
        return read_qr_codes(data)
    except MalformedError as e:
        raise type(e)(f"{path}: {e}") from None
