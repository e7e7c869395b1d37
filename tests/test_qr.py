"""QR images: rendering, and reading back screenshots, photos and printouts (made here with Pillow)."""

import io
import random
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

import ledger.credential.qr
from ledger.credential.presentation import check_presentation
from ledger.credential.qr import (
    MAX_IMAGE_PIXELS,
    make_qr,
    read_qr_codes,
    read_qr_file,
    render_png,
    render_svg,
)
from ledger.errors import FileError, MalformedError, TooLargeError
from tests.fixtures.consortium import POLICY, T0, issue_reference

CRED = issue_reference()
FULL = CRED.to_qr_text()
SELECTIVE = CRED.to_qr_text(["uscc", "name", "legal_representative"])


def _png_image(text: str, scale: int) -> Image.Image:
    return Image.open(io.BytesIO(render_png(text, scale=scale))).convert("L")


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def screenshot(text: str) -> bytes:
    """A phone screenshot: status bar, app header, a card with the code, text; resized and JPEG'd."""
    screen = Image.new("RGB", (1080, 2340), (242, 243, 245))
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, 1080, 90), fill=(20, 20, 20))
    draw.text((40, 30), "9:41", fill=(255, 255, 255))
    draw.rectangle((0, 90, 1080, 260), fill=(196, 30, 58))
    draw.text((60, 160), "E-LICENCE WALLET", fill=(255, 255, 255))
    draw.rounded_rectangle((60, 330, 1020, 1500), radius=30, fill=(255, 255, 255))
    qr = _png_image(text, 7)
    screen.paste(qr.convert("RGB"), ((1080 - qr.width) // 2, 380))
    for i in range(6):
        draw.rectangle((120, 1560 + 70 * i, 960 - 90 * (i % 3), 1590 + 70 * i), fill=(200, 200, 205))
    # shared through a chat app: downscaled and recompressed
    small = screen.resize((720, 1560), Image.Resampling.BILINEAR)
    return _jpeg(small, 82)


def photo(text: str, *, angle: float, factor: float, seed: int) -> bytes:
    """A phone photo of a printout: scaled, rotated, a little perspective, noise, blur, uneven light."""
    rng = random.Random(seed)
    qr = _png_image(text, 6)
    paper = Image.new("L", (qr.width + 200, qr.height + 260), 235)
    paper.paste(qr, (100, 120))
    ImageDraw.Draw(paper).rectangle((20, 20, paper.width - 20, 90), fill=120)
    img = paper.resize((int(paper.width * factor), int(paper.height * factor)), Image.Resampling.BILINEAR)
    img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=90)
    w, h = img.size
    skew = [rng.uniform(-0.02, 0.02) * s for s in (w, h, w, h, w, h, w, h)]
    quad = (skew[0], skew[1], skew[2], h + skew[3], w + skew[4], h + skew[5], w + skew[6], skew[7])
    img = img.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC, fillcolor=90)
    img = Image.blend(img, Image.effect_noise(img.size, 40), 0.25)
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    img = ImageEnhance.Contrast(img).enhance(0.7)
    img = Image.blend(img, Image.linear_gradient("L").resize(img.size).rotate(90), 0.2)
    return _jpeg(img, 70)


def test_cl1_text_uses_alphanumeric_mode_at_level_q() -> None:
    for text in (FULL, SELECTIVE):
        qr = make_qr(text)
        assert qr.mode == "alphanumeric" and qr.error == "Q"
    assert make_qr(FULL).version == 16
    assert make_qr(FULL, error="l").version < make_qr(FULL, error="h").version
    # other text falls back to byte mode
    assert make_qr("https://example.gov.cn/x").mode == "byte"


def test_make_qr_errors() -> None:
    with pytest.raises(TooLargeError, match="do not fit in a QR code at error correction level Q"):
        make_qr("A" * 5000)
    with pytest.raises(MalformedError, match="must be one of L, M, Q, H"):
        make_qr(FULL, error="x")
    with pytest.raises(MalformedError, match="non-empty string"):
        make_qr("")
    with pytest.raises(MalformedError, match="scale must be 1 to 100"):
        render_png(FULL, scale=0)


@pytest.mark.parametrize("text", [FULL, SELECTIVE])
def test_our_png_reads_back(text: str, tmp_path: Path) -> None:
    path = tmp_path / "code.png"
    path.write_bytes(render_png(text))
    assert Image.open(path).format == "PNG"
    assert read_qr_file(path) == [text]
    assert check_presentation(read_qr_file(path)[0], policy=POLICY, now=T0 + 86400).cert_id == CRED.cert_id


def test_small_scale_png_reads_back() -> None:
    assert read_qr_codes(render_png(FULL, scale=2, border=2)) == [FULL]


def test_svg_is_well_formed_and_sized() -> None:
    svg = render_svg(FULL, scale=5)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    size = (make_qr(FULL).version * 4 + 17 + 8) * 5
    assert root.get("width") == str(size) and root.get("height") == str(size)
    assert b"certledger QR code" in svg


@pytest.mark.parametrize("text", [FULL, SELECTIVE])
def test_screenshot_reads(text: str) -> None:
    assert read_qr_codes(screenshot(text)) == [text]


@pytest.mark.parametrize("text", [FULL, SELECTIVE])
@pytest.mark.parametrize(("angle", "factor", "seed"), [(4, 0.73, 1), (-7, 0.61, 2), (9, 1.37, 3)])
def test_photo_like_image_reads(text: str, angle: float, factor: float, seed: int) -> None:
    assert read_qr_codes(photo(text, angle=angle, factor=factor, seed=seed)) == [text]


def test_image_without_a_code() -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), (255, 255, 255)).save(out, "PNG")
    assert read_qr_codes(out.getvalue()) == []


def test_transparent_png_reads() -> None:
    # black modules on a transparent background, as some apps export codes
    grey = _png_image(FULL, 4)
    black = Image.new("L", grey.size, 0)
    img = Image.merge("RGBA", (black, black, black, ImageOps.invert(grey)))
    out = io.BytesIO()
    img.save(out, "PNG")
    assert read_qr_codes(out.getvalue()) == [FULL]


def _png_claiming_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def test_hostile_images() -> None:
    with pytest.raises(TooLargeError, match="pixel limit"):
        read_qr_codes(_png_claiming_size(20000, 20000))  # Pillow's own bomb check
    with pytest.raises(TooLargeError, match="8000x8000 pixels is over the 16777216-pixel limit"):
        read_qr_codes(_png_claiming_size(8000, 8000))
    assert MAX_IMAGE_PIXELS < 8000 * 8000
    with pytest.raises(MalformedError, match="cannot decode its pixels"):
        read_qr_codes(_png_claiming_size(100, 100))  # pixel data is missing
    with pytest.raises(MalformedError, match="not an image this reader understands"):
        read_qr_codes(b"GIF89a" + bytes(50))
    with pytest.raises(MalformedError, match="not an image"):
        read_qr_codes(random.Random(5).randbytes(4000))
    png = render_png(FULL)
    with pytest.raises(MalformedError):
        read_qr_codes(png[: len(png) // 2])
    with pytest.raises(MalformedError, match="expected image bytes or a Pillow image"):
        read_qr_codes("code.png")  # type: ignore[arg-type]


def test_read_qr_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileError, match=r"missing\.png: cannot read the image: No such file"):
        read_qr_file(tmp_path / "missing.png")
    with pytest.raises(FileError, match=r": cannot read the image: Is a directory"):
        read_qr_file(tmp_path)
    big = tmp_path / "big.png"
    big.write_bytes(render_png(FULL))
    monkeypatch.setattr(ledger.credential.qr, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(TooLargeError, match=r"big\.png: the image is larger than the 100-byte limit"):
        read_qr_file(big)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MalformedError, match=f"{bad}: image: not an image"):
        read_qr_file(bad)
