"""The ``certledger`` command line.

Sub-commands live in their own modules and are imported only when used, so that
``certledger log …`` does not pay for the web stack and a missing optional part does
not break the rest. Every :class:`~ledger.errors.LedgerError` becomes a one-line
``Error: …`` message and exit status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from ledger import __version__
from ledger.errors import LedgerError

__all__ = ["cli", "main"]

# name -> ("module" or "module:attribute" of a click command or group, help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "consortium": (
        "certledger.cli.consortium",
        "Create, change, sign and verify the consortium trust policy.",
    ),
    "demo": ("certledger.cli.demo", "Run the whole system offline, step by step: policy to QR to attacks."),
    "import": (
        "certledger.cli.importer:import_",
        "Issue a department's existing register (CSV) through its node.",
    ),
    "log": ("certledger.cli.log", "Operate on a department's log database: audit, checkpoints, proofs."),
    "node": (
        "certledger.cli.node",
        "Set up and run a department's node: public log, witness, policy, alerts.",
    ),
    "present": (
        "certledger.cli.present",
        "Make the QR text and images of a credential, fully or selectively.",
    ),
    "qr": ("certledger.cli.qr", "Read certificate QR codes from images."),
    "verifier": (
        "certledger.cli.verifier",
        "Run the verification service: HTTP API, web page and consortium page.",
    ),
    "verify": (
        "certledger.cli.verify",
        "Verify a presented certificate against the replica of every member's log.",
    ),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module_name, _, attribute = _COMMANDS[cmd_name][0].partition(":")
            module = importlib.import_module(module_name)
            command = getattr(module, attribute or cmd_name)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][1]) for name in sorted(_COMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LedgerError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="certledger")
def cli() -> None:
    """certledger: an e-certificate mutual-recognition ledger.

    Departments append signed, hash-chained certificate statements to their own
    logs; every member witnesses the others; anyone verifies a QR-coded certificate
    offline.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="certledger")
