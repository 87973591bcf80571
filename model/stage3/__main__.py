"""``python -m model.stage3 DATA_DIR --checkpoint CK --out RUN``: see :mod:`model.stage3.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
