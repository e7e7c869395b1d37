"""``certledger present``: make the QR text (and images) of a credential."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.credential.credential import Credential
from ledger.credential.qr import make_qr, render_png, render_svg
from ledger.files import write_file

__all__ = ["present"]

#: Above this QR version a code shown on a phone screen is hard for another phone to read.
DENSE_VERSION = 25


@click.command(name="present")
@click.argument("credential", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--reveal",
    metavar="NAMES",
    help="Disclose only these claims (names separated by commas, e.g. name,licence_no). "
    "Without it every claim is disclosed.",
)
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Also write the QR code as PNG.")
@click.option("--svg", type=click.Path(dir_okay=False, path_type=Path), help="Also write the QR code as SVG.")
@click.option(
    "--error-level",
    type=click.Choice(["L", "M", "Q", "H"], case_sensitive=False),
    default="Q",
    show_default=True,
    help="QR error correction level of the images.",
)
@click.option(
    "--scale",
    type=click.IntRange(1, 100),
    default=8,
    show_default=True,
    help="Pixels per QR module in the images.",
)
def present(
    *, credential: Path, reveal: str | None, png: Path | None, svg: Path | None, error_level: str, scale: int
) -> None:
    """Print the CL1 QR text of CREDENTIAL (a credential JSON file).

    The text goes to standard output; a summary (what is disclosed, the length and
    the QR version) goes to standard error. A full disclosure can be turned back
    into the credential, so show it only where every claim may be seen: its images
    are written readable by you alone (mode 0600, like the credential file), those
    of a selective disclosure with mode 0644. Existing image files are replaced.

    \b
    Examples:
      certledger present licence.json --png licence.png
      certledger present licence.json --reveal uscc,name --svg for-bank.svg
    """
    cred = Credential.load(credential)
    names = None
    if reveal is not None:
        names = [n.strip() for n in reveal.split(",")]
        if not all(names):
            raise click.BadParameter("give claim names separated by commas", param_hint="--reveal")
    presentation = cred.present(names)
    text = presentation.to_text()
    qr = make_qr(text, error=error_level)
    if presentation.full:
        what = f"full disclosure of {len(cred.schema)} claims"
    else:
        shown = [s.name for s in cred.schema if s.key in presentation.values]
        hidden = len(cred.schema) - len(shown)
        what = f"selective disclosure of {', '.join(shown) or 'no claim'} ({hidden} hidden)"
    click.echo(text)
    click.echo(
        f"{cred.cert_id}: {what}; {len(text)} characters, QR version {qr.version} "
        f"(level {error_level.upper()})",
        err=True,
    )
    if qr.version is not None and int(qr.version) > DENSE_VERSION:
        click.echo(
            f"warning: QR version {qr.version} is dense; show it large, use a lower error level "
            "or disclose fewer claims if phones cannot read it",
            err=True,
        )
    mode = 0o600 if presentation.full else 0o644
    if png is not None:
        write_file(
            png, render_png(text, error=error_level, scale=scale), mode=mode, overwrite=True, what="PNG"
        )
        click.echo(f"wrote {png}", err=True)
    if svg is not None:
        write_file(
            svg, render_svg(text, error=error_level, scale=scale), mode=mode, overwrite=True, what="SVG"
        )
        click.echo(f"wrote {svg}", err=True)
