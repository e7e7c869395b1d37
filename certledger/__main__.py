"""``python -m certledger`` runs the certledger command line."""

from certledger.cli import main

main()
