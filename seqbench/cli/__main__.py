"""``python -m seqbench.cli``: the same command line as the ``seqbench`` script."""

import sys

from seqbench.cli import main

sys.exit(main())
