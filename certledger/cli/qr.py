"""``certledger qr``: read QR codes from images."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.credential.presentation import PREFIX, Presentation
from ledger.credential.qr import read_qr_file
from ledger.errors import MalformedError

__all__ = ["qr"]


@click.group(name="qr")
def qr() -> None:
    """Read QR codes from images (photos, screenshots, printouts)."""


@qr.command(name="decode")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--any",
    "any_text",
    is_flag=True,
    help="Print the text of every QR code found, whatever it holds, without checking it.",
)
def decode(image: Path, any_text: bool) -> None:
    """Print the CL1 text of the certificate QR code(s) in IMAGE.

    Each CL1 text found is parsed strictly (prefix, sizes, canonical encoding) before
    it is printed, one per line; signatures are checked by the verifier. Fails when
    the image holds no QR code or no certledger presentation.
    """
    texts = read_qr_file(image)
    if not texts:
        raise MalformedError(f"{image}: no QR code found (try a sharper, larger or less skewed image)")
    if any_text:
        for text in texts:
            click.echo(text)
        return
    ours = [t for t in texts if t.startswith(PREFIX[:2])]
    if not ours:
        raise MalformedError(
            f"{image}: found {len(texts)} QR code(s), but none holds a certledger presentation "
            f"(the first starts with {texts[0][:12]!r})"
        )
    for text in ours:
        Presentation.from_text(text)
        click.echo(text)
