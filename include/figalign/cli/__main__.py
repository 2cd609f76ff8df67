"""`python -m figalign.cli …`, the same as the `figalign` command."""

import sys

from figalign.cli import main

sys.exit(main())
