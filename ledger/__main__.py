"""``python -m ledger`` runs the certledger command line."""

from ledger.cli import main

main()
