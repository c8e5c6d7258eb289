"""``python -m cbp``: the command line of :mod:`cbp.cli` (no arguments: the XOR demo)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
