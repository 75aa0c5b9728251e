"""`python -m tradeguard.cli`: the same as the `tradeguard` console script."""

import sys

from tradeguard.cli import main

sys.exit(main())
