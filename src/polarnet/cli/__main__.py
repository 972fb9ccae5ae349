"""``python -m polarnet.cli``: the ``polarnet`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
