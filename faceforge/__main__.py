"""``python -m faceforge`` (and ``torchrun -m faceforge train ...``) runs the CLI."""

import sys

from faceforge.cli import main

if __name__ == "__main__":
    sys.exit(main())
