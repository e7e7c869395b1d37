"""``python -m certledger`` runs the certledger command line."""

from certledger.cli import main

if __name__ == "__main__":  # not when a worker process (render workers) imports it
    main()
